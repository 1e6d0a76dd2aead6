from __future__ import annotations

from typing import Any

import pytest

from octo.process.lifespan import Lifespan, LifespanFailure


def lifespan_app(events: list[str], fail: str | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        message = await receive()
        assert message["type"] == "lifespan.startup"
        events.append("startup")
        scope["state"]["db"] = "connected"
        if fail == "startup":
            await send({"type": "lifespan.startup.failed", "message": "no database"})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        events.append("shutdown")
        await send({"type": "lifespan.shutdown.complete"})
    return app


def test_startup_state_and_shutdown(run) -> None:
    events: list[str] = []

    async def main() -> None:
        lifespan = Lifespan(lifespan_app(events), "auto")
        await lifespan.startup()
        assert lifespan.state == {"db": "connected"} and lifespan.supported
        await lifespan.shutdown()

    run(main())
    assert events == ["startup", "shutdown"]


def test_startup_failure_message(run) -> None:
    async def main() -> None:
        with pytest.raises(LifespanFailure, match="no database"):
            await Lifespan(lifespan_app([], fail="startup"), "on").startup()

    run(main())


async def http_only(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http", "only http"


def test_auto_mode_tolerates_apps_without_lifespan(run) -> None:
    async def main() -> None:
        lifespan = Lifespan(http_only, "auto")
        await lifespan.startup()
        assert not lifespan.supported
        await lifespan.shutdown()

    run(main())


def test_on_mode_requires_lifespan(run) -> None:
    async def main() -> None:
        with pytest.raises(LifespanFailure, match="only http"):
            await Lifespan(http_only, "on").startup()

    run(main())


def test_off_mode_never_calls_app(run) -> None:
    async def main() -> None:
        lifespan = Lifespan(lifespan_app([]), "off")
        await lifespan.startup()
        await lifespan.shutdown()
        assert not lifespan.supported

    run(main())
