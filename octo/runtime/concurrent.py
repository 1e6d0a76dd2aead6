"""``octo.concurrently``: run several callables at once and get their results in order.

Coroutine functions run as tasks on the current event loop; plain functions run in a
bounded thread pool so they cannot stall the loop. Each runs in a copy of the caller's
context, so the request's sandbox scope (and any contextvar) is visible inside. The first
exception cancels the others and is re-raised as it was; a timeout cancels what is left and
raises ``TaskTimeout`` naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from octo.errors import TaskTimeout
from octo.runtime.inprocess import run_all, settle, shutdown_pool

T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")

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
    if not in_workers:
        return await run_all(fns, timeout)
    from octo.runtime.tasks import Tasks

    runner = Tasks()
    loop = asyncio.get_running_loop()
    # The task workers are told the deadline too: a plain function still running at the
    # timeout gets its task worker replaced rather than running on.
    futures: list[asyncio.Future[Any]] = [
        loop.create_task(runner.run(fn, timeout=timeout)) for fn in fns]
    return await settle(futures, timeout, fns)


__all__ = ["TaskTimeout", "concurrently", "shutdown_pool"]
