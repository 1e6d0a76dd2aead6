"""WebSocket apps for the real-client tests."""

from __future__ import annotations

from typing import Any


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain http"})
        return
    path = scope["path"]
    await receive()  # websocket.connect
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/custom-deny":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "websocket.http.response.body", "body": b"no entry"})
        return
    subprotocol = "chat" if "chat" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol,
                "headers": [(b"x-hello", b"world")]})
    if path == "/close-4000":
        await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            print(f"APP: disconnect {message['code']}", flush=True)
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
