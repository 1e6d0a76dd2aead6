"""A tick counted in a shared table: it must run once per server, not once per worker."""

from __future__ import annotations

import os

import octo

rt = octo.Octo()
counts = rt.table("tick_counts", rows=16, columns={"n": octo.Int, "pid": octo.Int})


@rt.tick("count", every=0.2)
async def count() -> None:
    counts.incr("count", "n")
    counts.set("count", {"pid": os.getpid()})


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    row = counts.get("count") or {"n": 0, "pid": 0}
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"{row['n']} {row['pid']}".encode()})


asgi = rt.wrap(app)
