"""A Starlette app whose requests end early: slow ones for --max-execution-time, streams and
a file a client can leave (server-sent events, a large file) or stop reading."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.responses import FileResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


async def sleep(request: Any) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("s", "1")))
    return PlainTextResponse("slept")


async def _first_then_slow() -> AsyncIterator[bytes]:
    yield b"first part\n"
    await asyncio.sleep(60)
    yield b"too late\n"


async def stream_slow(request: Any) -> StreamingResponse:
    return StreamingResponse(_first_then_slow(), media_type="text/plain")


async def _ticks() -> AsyncIterator[str]:
    for i in range(1_000_000):  # bounded: about 15 minutes at most
        yield f"data: {i}\n\n"
        await asyncio.sleep(0.001)


async def events(request: Any) -> StreamingResponse:
    return StreamingResponse(_ticks(), media_type="text/event-stream")


async def _big_parts() -> AsyncIterator[bytes]:
    part = b"x" * 65536
    for _ in range(100_000):  # 6.5 GB at most: far more than any socket buffer holds
        yield part


async def big(request: Any) -> StreamingResponse:
    return StreamingResponse(_big_parts(), media_type="application/octet-stream")


async def file(request: Any) -> FileResponse:
    return FileResponse(os.environ["OCTO_TEST_FILE"])  # sent with http.response.pathsend


app = Starlette(routes=[Route("/sleep", sleep), Route("/stream-slow", stream_slow),
                        Route("/events", events), Route("/big", big), Route("/file", file)])
