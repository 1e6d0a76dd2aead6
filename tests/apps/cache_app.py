"""Cache stampede guard across workers: /report is expensive and cached."""

from __future__ import annotations

import asyncio
import os

import octo

rt = octo.Octo()
counters = rt.table("counters", rows=16, columns={"n": octo.Int})


async def expensive() -> dict[str, int]:
    counters.incr("regenerations", "n")
    await asyncio.sleep(0.2)  # the stampede arrives meanwhile (on a slow machine fewer of
    # it, who then find the value cached: still one regeneration, never a wrong answer)
    return {"built_by": os.getpid()}


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    if scope["path"] == "/report":
        value = await rt.cache.remember("report", 60, expensive)
        body = str(value["built_by"]).encode()
    elif scope["path"] == "/regenerations":
        body = str(counters.get("regenerations", "n") or 0).encode()
    else:
        body = b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


asgi = rt.wrap(app)
