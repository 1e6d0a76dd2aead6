"""A Starlette app on the octo runtime: scoped per-request services, a warmed singleton,
and (on purpose) a leaky module global for the leak detector to name."""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import octo

EVENTS: list[str] = []  # the per-worker event log the tests read back
VISITS: list[str] = []  # deliberately leaky: grows with every /leak request


class Settings:
    def __init__(self) -> None:
        self.pid = os.getpid()
        EVENTS.append("warm Settings")


class CurrentUser:
    """Request-scoped: built from this request's header, never shared."""

    def __init__(self) -> None:
        op = octo.current_operation()
        assert op is not None and op.scope is not None
        headers = dict(op.scope["headers"])
        self.name = headers.get(b"x-user", b"anonymous").decode()


class Greeter:
    def __init__(self, user: CurrentUser, settings: Settings) -> None:
        self.user = user
        self.settings = settings

    def greet(self) -> str:
        return f"hello {self.user.name}"


rt = octo.Octo()
rt.container.singleton(Settings)
rt.container.scoped(CurrentUser)
rt.container.scoped(Greeter)
rt.container.warm(Settings)
rt.listen(octo.WorkerStarting, lambda e: EVENTS.append("WorkerStarting"))
rt.listen(octo.RequestTerminated, lambda e: EVENTS.append(f"terminated {e.status}"))


async def whoami(request: Request) -> JSONResponse:
    greeter = await octo.resolve(Greeter)
    await asyncio.sleep(0.001)  # interleave with other users' requests
    user = await octo.resolve(CurrentUser)
    return JSONResponse({"greeting": greeter.greet(), "user": user.name,
                         "same": user is greeter.user, "pid": os.getpid()})


async def leak(request: Request) -> PlainTextResponse:
    VISITS.append(request.url.path)
    return PlainTextResponse(str(len(VISITS)))


async def events(request: Request) -> JSONResponse:
    return JSONResponse(EVENTS[:3])


app = Starlette(routes=[Route("/whoami", whoami), Route("/leak", leak),
                        Route("/events", events)])
asgi = rt.wrap(app)
