"""ASGI apps the integration tests serve through a real ``octo serve`` process."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

BIG_FILE = os.environ.get("OCTO_TEST_FILE", "")


async def _respond(send: Any, status: int, body: bytes, headers: list[Any] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    path = scope["path"]
    if path == "/echo":
        await _respond(send, 200, await _read_body(receive))
    elif path == "/slow":
        await asyncio.sleep(float(scope["query_string"] or b"1"))
        await _respond(send, 200, b"slow done")
    elif path.startswith("/hold"):  # until the file named in the query exists: in flight
        await _hold(scope["query_string"].decode())
        await _respond(send, 200, b"held")
    elif path == "/stream-until-disconnect":
        await _stream_until_disconnect(receive, send)
    elif path == "/file":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": BIG_FILE})
    elif path == "/state":
        await _respond(send, 200, repr(sorted(scope.get("state", {}).items())).encode())
    elif path == "/scope":
        shown = f"{scope['scheme']} {scope['client'][0] if scope['client'] else None}"
        await _respond(send, 200, shown.encode())
    elif path == "/headers":  # the request headers once the body is read (trailers!)
        await _read_body(receive)
        await _respond(send, 200, repr(scope["headers"]).encode())
    elif path == "/upload":  # how reading the body ended
        await _upload(receive, send)
    elif path.startswith("/path/"):  # the decoded path, strictly encoded (as frameworks do)
        await _respond(send, 200, path.encode("utf-8"))
    elif path.startswith("/sleep"):
        await asyncio.sleep(float(scope["query_string"] or b"1"))
        await _respond(send, 200, b"slept")
    elif path == "/stream-forever":
        await _stream_forever(send)
    elif path == "/crash":
        raise RuntimeError("deliberate crash for the test")
    elif path == "/gc-frozen":
        import gc

        await _respond(send, 200, str(gc.get_freeze_count()).encode())
    else:
        await _respond(send, 200, b"hello", [(b"content-type", b"text/plain")])


async def _hold(release: str) -> None:
    """Announce the hold in the log (the test waits for that line), then wait, without
    blocking the loop, until *release* exists; at most a minute, so a test cannot hang."""
    print("APP: holding", file=sys.stderr, flush=True)
    deadline = asyncio.get_running_loop().time() + 60
    # Released from another process, so a file, looked at between short sleeps (the loop
    # stays free); a stat of a local file is fast enough not to matter on the loop.
    while (not os.path.exists(release)  # noqa: ASYNC110, ASYNC240
           and asyncio.get_running_loop().time() < deadline):
        await asyncio.sleep(0.01)


async def _stream_until_disconnect(receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    waiter = asyncio.ensure_future(receive())
    waiter2 = asyncio.ensure_future(receive())  # the second receive reports the disconnect
    try:
        while not waiter2.done():
            await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
            await asyncio.sleep(0.01)
    except OSError:
        print("APP: send raised after disconnect", file=sys.stderr, flush=True)
    message = await waiter2
    await waiter
    print(f"APP: saw {message['type']}", file=sys.stderr, flush=True)


async def _upload(receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    print(f"APP: upload of {size} bytes ended with {message['type']}", file=sys.stderr,
          flush=True)
    if message["type"] == "http.request":
        await _respond(send, 200, b"%d" % size)


async def _stream_forever(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        while True:
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
    except BaseException as exc:  # it never listens: cancelled once it sends on
        print(f"APP: stream stopped: {type(exc).__name__}", file=sys.stderr, flush=True)
        raise


async def _lifespan(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    scope["state"]["booted"] = True
    print("APP: lifespan startup", file=sys.stderr, flush=True)
    await send({"type": "lifespan.startup.complete"})
    await receive()
    print("APP: lifespan shutdown", file=sys.stderr, flush=True)
    await send({"type": "lifespan.shutdown.complete"})


def create_app() -> Any:
    """For ``--factory``."""
    return app
