"""Workers incrementing one shared table row."""

from __future__ import annotations

import octo

rt = octo.Octo()
hits = rt.table("hits", rows=64, columns={"count": octo.Int})


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    if scope["path"] == "/incr":
        value = hits.incr("total", "count")
    else:
        value = hits.get("total", "count") or 0
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(value).encode()})


asgi = rt.wrap(app)
