"""Callables run at once in this process: coroutine functions as tasks on the running loop,
plain functions in a bounded thread pool, each in a copy of the caller's context.

The engine under ``octo.concurrently`` and under ``rt.tasks.run`` without task workers; it
knows nothing of either, so both depend on it and not on each other.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from octo.errors import TaskTimeout

T = TypeVar("T")
Fn = Callable[[], Awaitable[T]] | Callable[[], T]

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


async def run_all(fns: Sequence[Fn[Any]], timeout: float | None) -> tuple[Any, ...]:
    """Run *fns* at once here; their results in order (see :func:`settle`)."""
    loop = asyncio.get_running_loop()
    return await settle([_start(loop, fn) for fn in fns], timeout, fns)


async def settle(futures: list[asyncio.Future[Any]], timeout: float | None,
                 fns: Sequence[Any]) -> tuple[Any, ...]:
    """The results of *futures* (one per callable of *fns*), in order. The first exception
    cancels the others and is re-raised as it was; past *timeout* what is left is cancelled
    and TaskTimeout names it."""
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
                    fns: Sequence[Any]) -> None:
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
