"""A plain ASGI app with an endpoint that blocks its worker's event loop.

``/block`` writes ``blocked-<pid>`` in the directory named by ``OCTO_TEST_MARKERS`` and then
holds the loop (``time.sleep`` in an async handler, as a careless app would) until a file
``release`` appears there (or 60 s pass, so a broken test cannot leave a worker stuck for
ever). Every other path answers with the worker's pid.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_AT_MOST = 60.0


def markers() -> Path:
    return Path(os.environ["OCTO_TEST_MARKERS"])


def block_loop() -> None:
    """Hold this worker's event loop until the test writes the release marker."""
    directory = markers()
    (directory / f"blocked-{os.getpid()}").write_text("")
    release = directory / "release"
    deadline = time.monotonic() + HOLD_AT_MOST
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # on purpose: a blocking call in an async handler


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    if scope["path"] == "/block":
        block_loop()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
