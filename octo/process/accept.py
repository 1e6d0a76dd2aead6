"""Balanced accepting on a listening socket shared by several workers.

With one shared socket, the worker that wakes first accepts every pending connection, so a
burst of connections lands on one or two workers. Here each worker accepts itself, one
connection per wake-up, and holds back while it has more open connections than the least
loaded worker (counts live in shared memory). Only siblings that beat recently count (see
``SlotWriter.fair_to_accept``): a worker whose loop is blocked accepts nothing, so nobody
waits for it. Holding back is also bounded (MAX_HOLDS), for the second it takes a blocked
sibling's beat to go stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable

from octo.logs import error_log

SLACK = 1  # connections above the least loaded worker before holding back
HOLD = 0.002  # seconds to step aside before looking again
MAX_HOLDS = 10  # then accept anyway (a sibling may have blocked since its last beat)


class BalancedAcceptor:
    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 factory: Callable[[], asyncio.Protocol], ctx: ssl.SSLContext | None,
                 fair: Callable[[int], bool]) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.ctx = ctx
        self.fair = fair
        self.holds = 0
        self.reading = False
        self.closed = False
        self.pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._watch()

    def close(self) -> None:
        self.closed = True
        self._unwatch()

    def _watch(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.loop.add_reader(self.sock.fileno(), self._readable)

    def _unwatch(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.sock.fileno())

    def _readable(self) -> None:
        if not self.fair(SLACK) and self.holds < MAX_HOLDS:
            self.holds += 1
            self._unwatch()
            self.loop.call_later(HOLD, self._watch)
            return
        self.holds = 0
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            error_log.warning("accept() failed: %s", exc)
            return
        task = attach(self.loop, conn, self.factory, self.ctx)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)


Factory = Callable[[], asyncio.Protocol]


def attach(loop: asyncio.AbstractEventLoop, conn: socket.socket, factory: Factory,
           ctx: ssl.SSLContext | None) -> asyncio.Task[None]:
    """Hand an accepted connection to a protocol from *factory* (through TLS with *ctx*)."""
    conn.setblocking(False)
    if conn.family != socket.AF_UNIX:
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return loop.create_task(_attach(loop, conn, factory, ctx))


async def _attach(loop: asyncio.AbstractEventLoop, conn: socket.socket, factory: Factory,
                  ctx: ssl.SSLContext | None) -> None:
    try:
        await loop.connect_accepted_socket(factory, conn, ssl=ctx)
    except (OSError, ssl.SSLError) as exc:
        error_log.debug("connection setup failed: %s", exc)
        conn.close()


def accept_queued(loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Factory,
                  ctx: ssl.SSLContext | None, limit: int) -> set[asyncio.Task[None]]:
    """Accept the connections already queued on *sock* (at most *limit*) and attach them:
    a worker does this just before it closes a listening socket, so connections the kernel
    queued there are served (with ``connection: close``) rather than reset."""
    tasks: set[asyncio.Task[None]] = set()
    for _ in range(limit):
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:  # closed meanwhile, or out of descriptors
            error_log.debug("accept() while closing: %s", exc)
            break
        tasks.add(attach(loop, conn, factory, ctx))
    return tasks
