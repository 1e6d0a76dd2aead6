"""Reports what its worker was handed: the ``OCTO_*`` variables in its environment, and the
runtime settings octo.Octo and its tasks and ticks read (given as flags to octo serve)."""

from __future__ import annotations

import json
import os
from typing import Any

import octo
from octo.runtime import tasks, tick

rt = octo.Octo()


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps({
        "env": sorted(name for name in os.environ if name.startswith("OCTO_")),
        "leaks": rt.leaks is not None,
        "gc_threshold": rt.gc_threshold,
        "graceful_timeout": tasks.graceful_timeout(),
        "redis_url": tick.redis_url(),
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


app = rt.wrap(_app)
