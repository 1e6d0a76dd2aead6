"""Tables, the cache and task workers, for attacks by another local user.

With ``OCTO_TEST_GATE`` set, the worker imports this module (and so opens its tables) only
once that file exists: the test plants files at the server's predictable paths first.
"""

from __future__ import annotations

import os
import time

import octo

_gate = os.environ.get("OCTO_TEST_GATE")
if _gate:
    _deadline = time.monotonic() + 30
    while not os.path.exists(_gate):
        if time.monotonic() > _deadline:
            raise RuntimeError(f"the test never opened {_gate}")
        time.sleep(0.01)

rt = octo.Octo(cache_rows=16, cache_value_size=256)
hits = rt.table("hits", rows=64, columns={"count": octo.Int})
links = rt.table("links", rows=64, columns={"count": octo.Int})
rt.cache  # noqa: B018 - opened now, before the first request, like the other tables


def whoami() -> int:
    return os.getpid()


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hits":
        body = str(hits.get("total", "count") or 0)
    elif path == "/incr":
        body = str(hits.incr("total", "count"))
    elif path == "/links":
        body = str(links.incr("total", "count"))
    elif path == "/cache":
        body = repr(rt.cache.get("report", "miss"))
    elif path == "/task":
        body = str(await rt.tasks.run(whoami, timeout=20))
    else:
        body = "ok"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body.encode()})


asgi = rt.wrap(app)
