"""Raw ASGI apps (no framework) for the scenarios other than hello.

Every app here answers lifespan, then serves each HTTP request the same way, whatever the path:

- ``json_app``: ``json.dumps({"message": "Hello, world!"})`` serialised per request;
- ``body_10k`` / ``body_100k``: a fixed 10 KB / 100 KB ``application/octet-stream`` body;
- ``echo``: the request body read to its end and sent back;
- ``stream``: 10 chunks of 1 KB sent with ``more_body`` (no content-length, so chunked);
- ``sleep_10ms``: ``await asyncio.sleep(0.01)``, then the hello body;
- ``file_100k``: a 100 KB file through ``http.response.pathsend`` where the server advertises
  it in ``scope["extensions"]``, else read and sent as an ordinary body. The
  ``x-sent-with: pathsend|body`` response header says which, for the report.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from bench_lifespan import lifespan

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

KB = 1024
HELLO = b"Hello, world!"
TEXT = [(b"content-type", b"text/plain")]
BINARY = [(b"content-type", b"application/octet-stream")]
FILE_SIZE = 100 * KB
CHUNK = b"x" * KB
CHUNKS = 10


def asgi(handler: Handler) -> Handler:
    """The ASGI app serving HTTP with *handler* and completing lifespan startup/shutdown."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http":
            await handler(scope, receive, send)

    return app



def sized(content_type: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    return [*content_type, (b"content-length", str(length).encode())]


async def respond(send: Send, body: bytes, content_type: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": sized(content_type, len(body))})
    await send({"type": "http.response.body", "body": body})


def fixed(body: bytes, content_type: list[tuple[bytes, bytes]]) -> Handler:
    """A handler answering every request with *body*."""

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, body, content_type)

    return handler


async def _json(scope: Scope, receive: Receive, send: Send) -> None:
    body = json.dumps({"message": "Hello, world!"}).encode()
    await respond(send, body, [(b"content-type", b"application/json")])


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, await read_body(receive), BINARY)


async def _stream(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": BINARY})
    for _ in range(CHUNKS):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _sleep(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.sleep(0.01)
    await respond(send, HELLO, TEXT)


def bench_file(size: int) -> Path:
    """A file of *size* bytes in the temp directory, written once (atomically) and reused."""
    data = bytes(i % 251 for i in range(size))
    name = f"octo-bench-{size}-{hashlib.sha256(data).hexdigest()[:12]}.bin"
    path = Path(tempfile.gettempdir()) / name
    if not path.is_file() or path.stat().st_size != size:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".octo-bench-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    return path.resolve()


FILE = bench_file(FILE_SIZE)


async def _file(scope: Scope, receive: Receive, send: Send) -> None:
    if "http.response.pathsend" in (scope.get("extensions") or {}):
        headers = [*sized(BINARY, FILE.stat().st_size), (b"x-sent-with", b"pathsend")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(FILE)})
        return
    body = FILE.read_bytes()
    await send({"type": "http.response.start", "status": 200,
                "headers": [*sized(BINARY, len(body)), (b"x-sent-with", b"body")]})
    await send({"type": "http.response.body", "body": body})


json_app = asgi(_json)
body_10k = asgi(fixed(b"x" * (10 * KB), BINARY))
body_100k = asgi(fixed(b"x" * (100 * KB), BINARY))
echo = asgi(_echo)
stream = asgi(_stream)
sleep_10ms = asgi(_sleep)
file_100k = asgi(_file)
