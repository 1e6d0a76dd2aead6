"""Many concurrent requests without a throughput floor.

``asyncio.gather`` over thousands of requests with one overall timeout (or a client pool
smaller than the number in flight, with its pool timeout) fails on a slow machine although
nothing is wrong: it measures speed. :func:`bounded_gather` keeps at most *limit* calls in
flight, each with its own generous deadline, so a slow machine takes longer and still
passes, while a wrong answer or a hung request still fails::

    replies = asyncio.run(bounded_gather([lambda: client.get("/")] * 100, limit=8))
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

PER_CALL_TIMEOUT = 30.0  # one request; only a hung request ever gets near it


async def bounded_gather(calls: Sequence[Callable[[], Awaitable[T]]], limit: int,
                         per_call_timeout: float = PER_CALL_TIMEOUT) -> list[T]:
    """Await every ``call()``, at most *limit* at once; results in the order of *calls*."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await asyncio.wait_for(call(), per_call_timeout)

    return await asyncio.gather(*(one(call) for call in calls))
