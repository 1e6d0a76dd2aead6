"""A WebSocket echo app for the Autobahn|Testsuite conformance run (scripts/autobahn.sh).

Every WebSocket connection is accepted (no subprotocol) and each message is sent back as it
came: text as text, bytes as bytes, until the client disconnects. Plain HTTP gets a short
200 answer (the integration helper probes ``GET /`` to see that the server is up), and the
lifespan protocol is supported so that servers need not log that it is missing. Serve it with::

    octo serve apps.ws_echo:app --app-dir tests --ws wsproto   # or --ws websockets
    uvicorn apps.ws_echo:app --app-dir tests --ws websockets
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await _echo(receive, send)
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": b"websocket echo\n"})
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def _echo(receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":  # the client went away before the handshake
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message["type"] != "websocket.receive":
            continue
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
