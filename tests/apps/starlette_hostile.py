"""A Starlette app for the hostile-client tests: what a real framework makes of trailers,
undecodable paths and cut bodies."""

from __future__ import annotations

import sys

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


async def headers_after_body(request: Request) -> Response:
    """The request headers as Starlette shows them once the body is read."""
    body = await request.body()
    return JSONResponse({"body": len(body),
                         "headers": [[k, v] for k, v in request.headers.items()]})


async def item(request: Request) -> Response:
    """A str path parameter, answered as text (Starlette encodes it as UTF-8)."""
    name: str = request.path_params["name"]
    return PlainTextResponse(f"{name}|{request.scope['raw_path'].decode('latin-1')}")


async def upload(request: Request) -> Response:
    try:
        body = await request.body()
    except ClientDisconnect:
        print("STARLETTE: upload ended with ClientDisconnect", file=sys.stderr, flush=True)
        raise
    return PlainTextResponse(str(len(body)))


app = Starlette(routes=[
    Route("/", lambda request: PlainTextResponse("ok")),
    Route("/headers", headers_after_body, methods=["POST"]),
    Route("/items/{name}", item),
    Route("/upload", upload, methods=["POST"]),
])
