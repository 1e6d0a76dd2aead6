"""A Starlette app under Sentry's ASGI middleware, its events written to a file
(``OCTO_TEST_EVENTS``, one JSON line per event: the exception type) instead of sent.

``GET /stream`` streams ``first`` and then more, slowly, for a client to leave;
``GET /file`` sends ``OCTO_TEST_FILE`` (a FileResponse: octo's zero-copy pathsend) for a
client to leave; ``GET /boom`` raises, so a test can tell the tracker records what it
should."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware
from sentry_sdk.transport import Transport
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

EVENTS = os.environ["OCTO_TEST_EVENTS"]


class FileTransport(Transport):
    def capture_envelope(self, envelope: Any) -> None:
        for item in envelope.items:
            if item.type not in ("event", "error"):
                continue
            values = (item.payload.json.get("exception") or {}).get("values") or [{}]
            with open(EVENTS, "a") as out:
                out.write(json.dumps({"type": values[-1].get("type")}) + "\n")


sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=FileTransport,
                traces_sample_rate=0, default_integrations=True)


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first\n"
        for _ in range(100_000):  # about 17 minutes: the client leaves long before
            await asyncio.sleep(0.01)
            yield b"x" * 1000 + b"\n"

    return StreamingResponse(chunks(), media_type="text/plain")


async def file(request: Request) -> Response:
    return FileResponse(os.environ["OCTO_TEST_FILE"])


async def boom(request: Request) -> Response:
    raise ZeroDivisionError("a real error")


app = SentryAsgiMiddleware(Starlette(routes=[Route("/stream", stream), Route("/file", file),
                                            Route("/boom", boom)]))
