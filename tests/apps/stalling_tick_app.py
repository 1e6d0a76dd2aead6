"""A tick that blocks its worker's event loop for longer than the tick leader's lease.

Each run appends ``start <pid>`` and ``end <pid>`` lines to the file named by
``OCTO_TEST_TICK_FILE`` (one ``write`` each, with O_APPEND, so the lines of all workers
come in the order they happened). Between the two it holds the loop with ``time.sleep``
(an async tick calling blocking code, as a careless app would): for
``OCTO_TEST_TICK_STALL`` seconds, or, when that is ``hold``, until a file named
``release`` appears next to the log (60 s at most, so a broken test leaves no worker stuck).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import octo

HOLD_AT_MOST = 60.0
LOG = Path(os.environ.get("OCTO_TEST_TICK_FILE", "ticks.log"))
STALL = os.environ.get("OCTO_TEST_TICK_STALL", "1.6")

rt = octo.Octo()


def record(event: str) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{event} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def stall() -> None:
    if STALL != "hold":
        time.sleep(float(STALL))
        return
    release = LOG.parent / "release"
    deadline = time.monotonic() + HOLD_AT_MOST
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


@rt.tick("stall", every=0.2, immediate=True)
async def stalling() -> None:
    record("start")
    stall()  # on purpose on the loop: the leader stops renewing its lease meanwhile
    record("end")


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


asgi = rt.wrap(app)
