"""ASGI app for benchmarks/reload_compare.py: answers its version after a 5 ms await.

The version is read once, when a worker imports this module, from the file named by
RELOAD_APP_VERSION_FILE, so the body shows which code generation served each request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from bench_lifespan import lifespan

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

DELAY = 0.005  # seconds each request stays in flight


def _read_version() -> bytes:
    path = os.environ.get("RELOAD_APP_VERSION_FILE")
    if not path:
        return b"unversioned"
    try:
        return Path(path).read_bytes().strip() or b"unversioned"
    except OSError:
        return b"unreadable"


VERSION = _read_version()
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(VERSION)).encode())]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await asyncio.sleep(DELAY)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": VERSION})
