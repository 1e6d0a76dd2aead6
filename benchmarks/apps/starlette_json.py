"""Starlette app with one JSON route: ``GET /json`` -> ``{"message": "Hello, world!"}``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def json_route(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Hello, world!"})


app = Starlette(routes=[Route("/json", json_route)])
