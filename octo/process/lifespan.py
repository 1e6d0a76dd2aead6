"""ASGI lifespan: startup before the first connection, shutdown after the last."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from octo.logs import error_log
from octo.process.exits import EXIT_APP_LOAD_ERROR, EXIT_BOOT_ERROR
from octo.process.importer import AppLoadError, describe
from octo.types import ASGIApp, Message


class LifespanFailure(Exception):
    """Startup (or shutdown) failed; ``str()`` is the reason shown to the user."""


class Lifespan:
    """Drives the app's lifespan coroutine through startup and shutdown."""

    def __init__(self, app: ASGIApp, mode: str) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._startup: asyncio.Future[str | None] | None = None
        self._shutdown: asyncio.Future[str | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._errored = False
        # The app reported the failure itself (lifespan.*.failed; Starlette puts the whole
        # traceback in that message and then re-raises): its exception is not logged again.
        self._reported = False

    async def startup(self) -> None:
        if self.mode == "off":
            return
        loop = asyncio.get_running_loop()
        self._startup = loop.create_future()
        self._shutdown = loop.create_future()
        self._task = loop.create_task(self._main())
        await self._inbox.put({"type": "lifespan.startup"})
        failure = await self._startup
        if failure is not None:
            raise LifespanFailure(failure)

    async def shutdown(self) -> None:
        if self._task is None or not self.supported or self._errored:
            return
        assert self._shutdown is not None
        await self._inbox.put({"type": "lifespan.shutdown"})
        failure = await self._shutdown
        if failure is not None:
            error_log.error("lifespan shutdown failed: %s", failure)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            self._errored = True
            if self._startup is not None and not self._startup.done():
                if self.mode == "auto":
                    error_log.info("ASGI lifespan not supported by the app (%s: %s)",
                                   type(exc).__name__, exc)
                    self.supported = False
                    self._startup.set_result(None)
                else:
                    error_log.error("lifespan startup raised", exc_info=exc)
                    self._startup.set_result(describe(exc))
            elif self._reported:
                error_log.debug("lifespan raised after reporting its failure", exc_info=exc)
            else:
                error_log.error("lifespan raised", exc_info=exc)
                if self._shutdown is not None and not self._shutdown.done():
                    self._shutdown.set_result(describe(exc))
            if not isinstance(exc, Exception):
                raise
        else:
            startup = self._startup
            if startup is not None and not startup.done():
                if self.mode == "auto":
                    self.supported = False
                    startup.set_result(None)
                else:
                    startup.set_result("lifespan app returned before startup completed")
            if self._shutdown is not None and not self._shutdown.done():
                self._shutdown.set_result(None)

    async def _receive(self) -> Message:
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        assert self._startup is not None and self._shutdown is not None
        if kind == "lifespan.startup.complete":
            self._startup.set_result(None)
        elif kind == "lifespan.startup.failed":
            self._reported = True
            self._startup.set_result(message.get("message") or "lifespan.startup.failed")
        elif kind == "lifespan.shutdown.complete":
            self._shutdown.set_result(None)
        elif kind == "lifespan.shutdown.failed":
            self._reported = True
            self._shutdown.set_result(message.get("message") or "lifespan.shutdown.failed")
        else:
            raise RuntimeError(f"unexpected lifespan message {kind!r}")


async def start_app(load: Callable[[], ASGIApp], lifespan_mode: str,
                    debug: bool) -> tuple[ASGIApp, Lifespan] | int:
    """How every worker (HTTP or task) boots: the app *load* returns, then its lifespan
    startup. The app and its lifespan; or, logged, the exit code that tells the master
    why not (an app that cannot be loaded, a failing startup: both stop the server)."""
    try:
        app = load()
    except AppLoadError as exc:
        error_log.error("%s", exc, exc_info=exc if debug else None)
        return EXIT_APP_LOAD_ERROR
    lifespan = Lifespan(app, lifespan_mode)
    try:
        await lifespan.startup()
    except LifespanFailure as exc:
        error_log.error("lifespan startup failed: %s", exc)
        return EXIT_BOOT_ERROR
    return app, lifespan
