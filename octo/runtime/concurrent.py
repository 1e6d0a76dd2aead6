"""``octo.concurrently``: run several callables at once and get their results in order.

Coroutine functions run as tasks on the current event loop; plain functions run in a
bounded thread pool so they cannot stall the loop. Each runs in a copy of the caller's
context, so the request's sandbox scope (and any contextvar) is visible inside. The first
exception cancels the others and is re-raised as it was; a timeout cancels what is left and
raises ``TaskTimeout`` naming it.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, overload

T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")

THREADS = 32
_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    # A forked child inherits the pool object but none of its threads: work handed to it
    # would never run. The child starts its own pool on first use instead.
    global _pool
    _pool = None


def shutdown_pool() -> None:
    """Stop the thread pool of plain-function callables (it restarts on next use)."""
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)


os.register_at_fork(after_in_child=_forget_pool)


class TaskTimeout(TimeoutError):
    """Callables (``concurrently``) or a task (``rt.tasks.run``) did not finish in time;
    ``pending`` names them, ``timeout`` is the limit in seconds."""

    def __init__(self, pending: list[str], timeout: float, message: str | None = None) -> None:
        super().__init__(message or f"{len(pending)} of the callables did not finish within "
                         f"{timeout}s: " + ", ".join(pending))
        self.pending = pending
        self.timeout = timeout

    def __reduce__(self) -> tuple[Any, ...]:
        # A task worker sends it back pickled: rebuild it from all three arguments.
        return (type(self), (self.pending, self.timeout, str(self)))


Fn = Callable[[], Awaitable[T1]] | Callable[[], T1]


@overload
async def concurrently(*, timeout: float | None = None,
                       in_workers: bool = False) -> tuple[()]: ...
@overload
async def concurrently(f1: Fn[T1], /, *, timeout: float | None = None,
                       in_workers: bool = False) -> tuple[T1]: ...
@overload
async def concurrently(f1: Fn[T1], f2: Fn[T2], /, *, timeout: float | None = None,
                       in_workers: bool = False) -> tuple[T1, T2]: ...
@overload
async def concurrently(f1: Fn[T1], f2: Fn[T2], f3: Fn[T3], /, *,
                       timeout: float | None = None,
                       in_workers: bool = False) -> tuple[T1, T2, T3]: ...
@overload
async def concurrently(f1: Fn[T1], f2: Fn[T2], f3: Fn[T3], f4: Fn[T4], /, *,
                       timeout: float | None = None,
                       in_workers: bool = False) -> tuple[T1, T2, T3, T4]: ...
@overload
async def concurrently(f1: Fn[T1], f2: Fn[T2], f3: Fn[T3], f4: Fn[T4], f5: Fn[T5], /, *,
                       timeout: float | None = None,
                       in_workers: bool = False) -> tuple[T1, T2, T3, T4, T5]: ...
@overload
async def concurrently(*fns: Fn[Any], timeout: float | None = None,
                       in_workers: bool = False) -> tuple[Any, ...]: ...


async def concurrently(*fns: Fn[Any], timeout: float | None = None,
                       in_workers: bool = False) -> tuple[Any, ...]:
    """With ``in_workers=True`` each (picklable) callable runs in a task worker process:
    true parallelism for CPU-bound work (``octo serve --task-workers N``)."""
    if not fns:
        return ()
    loop = asyncio.get_running_loop()
    if in_workers:
        from octo.runtime.tasks import Tasks

        runner = Tasks()
        # The task workers are told the deadline too: a plain function still running at
        # the timeout gets its task worker replaced rather than running on.
        futures: list[asyncio.Future[Any]] = [
            loop.create_task(runner.run(fn, timeout=timeout)) for fn in fns]
    else:
        futures = [_start(loop, fn) for fn in fns]
    try:
        await _wait_all(futures, timeout, fns)
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()
        # Let cancelled coroutines unwind before returning (threads cannot be stopped).
        children = [f for f in futures if isinstance(f, asyncio.Task)]
        if children:
            await asyncio.gather(*children, return_exceptions=True)
    return tuple(fut.result() for fut in futures)


def _start(loop: asyncio.AbstractEventLoop, fn: Fn[Any]) -> asyncio.Future[Any]:
    ctx = contextvars.copy_context()
    if inspect.iscoroutinefunction(fn):
        return loop.create_task(fn(), context=ctx)
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="octo-concurrently")
    return loop.run_in_executor(_pool, ctx.run, _call_sync, fn)


def _call_sync(fn: Fn[Any]) -> Any:
    result = fn()
    if inspect.isawaitable(result):
        raise TypeError(f"{_name(fn)} returned an awaitable from a plain function; make it "
                        "an async def")
    return result


async def _wait_all(futures: list[asyncio.Future[Any]], timeout: float | None,
                    fns: tuple[Fn[Any], ...]) -> None:
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    pending = set(futures)
    while pending:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        done, pending = await asyncio.wait(pending, timeout=left,
                                           return_when=asyncio.FIRST_EXCEPTION)
        for fut in done:
            if not fut.cancelled() and fut.exception() is not None:
                raise fut.exception()  # type: ignore[misc]
        if pending and deadline is not None and loop.time() >= deadline:
            names = [_name(fn) for fn, fut in zip(fns, futures, strict=True) if fut in pending]
            assert timeout is not None
            raise TaskTimeout(names, timeout)


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
