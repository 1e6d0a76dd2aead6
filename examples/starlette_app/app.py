"""A small but real Starlette app for octo.

Run it from the repository root with::

    octo serve examples.starlette_app.app:app

Routes:

- ``GET /``                 plain text greeting
- ``GET /json``             a JSON document
- ``POST /echo``            answers with the request body (and its content type)
- ``GET /stream``           a StreamingResponse of a few chunks, sent as they are produced
- ``GET /items/{item_id}``  an int path parameter (``/items/abc`` is a 404)
- ``GET /state``            what the lifespan put into the app state, read via ``request.state``
- ``GET /client``           the peer address the server reports (shows keep-alive reuse)
- ``GET /error``            raises ``RuntimeError``: a 500, and a traceback in the server log
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

STREAM_CHUNKS = [b"chunk-0\n", b"chunk-1\n", b"chunk-2\n", b"chunk-3\n"]
STREAM_DELAY = 0.05  # seconds between chunks, so a client sees them arrive one by one
ERROR_MESSAGE = "boom: deliberate failure in /error"


def _say(message: str) -> None:
    print(f"starlette_app: {message}", file=sys.stderr, flush=True)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """Startup puts values into the lifespan state; every request sees a copy of it."""
    _say("startup")
    yield {"started": True, "started_at": time.time()}
    _say("shutdown")


async def homepage(request: Request) -> Response:
    return PlainTextResponse("Hello from Starlette on octo!")


async def json_doc(request: Request) -> Response:
    return JSONResponse({"framework": "starlette", "numbers": [1, 2, 3], "ok": True})


async def echo(request: Request) -> Response:
    body = await request.body()
    media_type = request.headers.get("content-type", "application/octet-stream")
    return Response(body, media_type=media_type)


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for index, chunk in enumerate(STREAM_CHUNKS):
            if index:
                await asyncio.sleep(STREAM_DELAY)
            yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


async def item(request: Request) -> Response:
    item_id: int = request.path_params["item_id"]
    return JSONResponse({"item_id": item_id, "double": item_id * 2})


async def state(request: Request) -> Response:
    return JSONResponse({
        "started": getattr(request.state, "started", False),
        "started_at": getattr(request.state, "started_at", None),
    })


async def client(request: Request) -> Response:
    peer = request.client
    return JSONResponse({"host": peer.host if peer else None, "port": peer.port if peer else None})


async def error(request: Request) -> Response:
    raise RuntimeError(ERROR_MESSAGE)


routes = [
    Route("/", homepage),
    Route("/json", json_doc),
    Route("/echo", echo, methods=["POST"]),
    Route("/stream", stream),
    Route("/items/{item_id:int}", item),
    Route("/state", state),
    Route("/client", client),
    Route("/error", error),
]

app = Starlette(routes=routes, lifespan=lifespan)
