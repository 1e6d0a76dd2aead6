"""A Starlette StreamingResponse whose second chunk waits for the client: ``GET
/stream?marker=PATH`` yields ``first``, then ``second`` once PATH exists. A server that
streams delivers the first chunk while the app still waits; one that buffers would deliver
nothing until the marker exists, which the client only creates once it has the first."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

WAIT_LIMIT = 120.0  # only ends a test that hung


async def stream(request: Request) -> Response:
    marker = request.query_params["marker"]

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first\n"
        loop = asyncio.get_running_loop()
        give_up = loop.time() + WAIT_LIMIT
        # Released from another process, so a file, looked at between short sleeps.
        while not os.path.exists(marker) and loop.time() < give_up:  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.01)
        yield b"second\n"

    return StreamingResponse(chunks(), media_type="text/plain")


app = Starlette(routes=[Route("/stream", stream)])
