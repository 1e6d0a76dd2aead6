"""Write-side backpressure shared by the HTTP and WebSocket protocols."""

from __future__ import annotations

import asyncio


class WriteFlow:
    """Tracks the transport's pause_writing/resume_writing; ``wait()`` blocks a sender
    while the transport's buffer is above its high-water mark."""

    __slots__ = ("loop", "paused", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.wake()

    def wake(self) -> None:
        """Release a waiting sender (also when the connection is lost)."""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        if self.paused:
            if self.waiter is None:
                self.waiter = self.loop.create_future()
            await self.waiter
