"""Container, sandbox, events and the wrapped app, in memory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from harness import Client, parse_responses

import octo
from octo.runtime.container import Container, ContainerError, ScopeError
from octo.runtime.sandbox import Operation, enter, leave


class Settings:
    def __init__(self) -> None:
        self.name = "prod"


class Client_:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class Session:
    instances = 0

    def __init__(self, client: Client_) -> None:
        Session.instances += 1
        self.client = client
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Report:
    def __init__(self, session: Session) -> None:
        self.session = session


async def in_operation(coro_fn: Any) -> Any:
    op = Operation("request")
    token = enter(op)
    try:
        return await coro_fn(), op
    finally:
        leave(token)


def test_lifetimes_and_injection(run) -> None:
    c = Container()
    c.singleton(Settings)
    c.singleton(Client_)
    c.scoped(Session)
    c.transient(Report)

    async def main() -> None:
        (a, b, r1, r2), op = await in_operation(lambda: asyncio.gather(
            c.resolve(Session), c.resolve(Session), c.resolve(Report), c.resolve(Report)))
        assert a is b and r1 is not r2 and r1.session is a
        assert a.client is await c.resolve(Client_)
        (other,), _ = await in_operation(lambda: asyncio.gather(c.resolve(Session)))
        assert other is not a and other.client is a.client

    run(main())


def test_scoped_disposal_and_singleton_disposal(run) -> None:
    c = Container()
    c.singleton(Settings)
    c.singleton(Client_)
    c.scoped(Session)
    rt = octo.Octo()
    rt.container = c

    async def main() -> None:
        session, op = await in_operation(lambda: c.resolve(Session))
        await rt.finish(op)
        assert session.closed
        client = await c.resolve(Client_)
        await c.shutdown()
        assert client.closed

    run(main())


def test_generator_factories_dispose_in_reverse_order(run) -> None:
    log: list[str] = []

    def make_settings() -> Iterator[Settings]:
        log.append("open settings")
        yield Settings()
        log.append("close settings")

    async def make_client(settings: Settings) -> AsyncIterator[Client_]:
        log.append("open client")
        yield Client_(settings)
        log.append("close client")

    c = Container()
    c.scoped(Settings, make_settings)
    c.scoped(Client_, make_client)
    rt = octo.Octo()
    rt.container = c

    async def main() -> None:
        _, op = await in_operation(lambda: c.resolve(Client_))
        await rt.finish(op)

    run(main())
    assert log == ["open settings", "open client", "close client", "close settings"]


def test_singleton_depending_on_scoped_is_refused_naming_both(run) -> None:
    c = Container()
    c.singleton(Settings)
    c.singleton(Client_)
    c.scoped(Session)
    c.singleton(Report)  # deliberately leaky: a worker-wide Report holding one request's session

    async def main() -> None:
        with pytest.raises(ScopeError, match="singleton Report depends on scoped Session"):
            await in_operation(lambda: c.resolve(Report))

    run(main())


def test_unbound_and_unresolvable_are_named(run) -> None:
    c = Container()

    class Needs:
        def __init__(self, thing: Settings) -> None:
            pass

    c.transient(Needs)

    async def main() -> None:
        with pytest.raises(ContainerError, match="Settings is not bound"):
            await c.resolve(Settings)
        with pytest.raises(ContainerError, match="parameter 'thing'"):
            await c.resolve(Needs)
        c.scoped(Settings)
        with pytest.raises(ScopeError, match="outside a request"):
            await c.resolve(Settings)

    run(main())


def test_async_singleton_built_once_under_concurrency(run) -> None:
    built: list[int] = []

    async def slow_settings() -> Settings:
        built.append(1)
        await asyncio.sleep(0.01)
        return Settings()

    c = Container()
    c.singleton(Settings, slow_settings)

    async def main() -> None:
        results = await asyncio.gather(*(c.resolve(Settings) for _ in range(20)))
        assert len({id(r) for r in results}) == 1

    run(main())
    assert built == [1]


def test_flush_forgets_singletons_after_each_operation(run) -> None:
    rt = octo.Octo()
    rt.container.singleton(Settings)
    rt.container.flush(Settings)

    async def main() -> None:
        first, op = await in_operation(lambda: rt.container.resolve(Settings))
        await rt.finish(op)
        second = await rt.container.resolve(Settings)
        assert first is not second

    run(main())


# -- the wrapped app ----------------------------------------------------------------------

def make_runtime(events: list[str]) -> octo.Octo:
    rt = octo.Octo()
    rt.container.singleton(Settings)
    rt.container.singleton(Client_)
    rt.container.scoped(Session)
    rt.container.warm(Client_)
    for kind in (octo.WorkerStarting, octo.RequestReceived, octo.RequestHandled,
                 octo.RequestTerminated, octo.OperationTerminated, octo.WorkerErrorOccurred,
                 octo.WorkerStopping):
        rt.listen(kind, lambda e, k=kind: events.append(k.__name__))
    return rt


async def endpoint(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    if scope["path"] == "/wait-disconnect":
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    session = await octo.resolve(Session)
    again = await octo.resolve(Session)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body",
                "body": f"{id(session)} {session is again}".encode()})


def test_events_in_order_for_success_error_and_disconnect(run, caplog) -> None:
    events: list[str] = []
    app = make_runtime(events).wrap(endpoint)

    async def main() -> None:
        client = Client(app)
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle()
        assert parse_responses(client.take())[0].body.endswith(b" True")
        client.send(b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle()
        gone = Client(app)
        gone.send(b"GET /wait-disconnect HTTP/1.1\r\nHost: a\r\n\r\n")
        await gone.settle(5, 0)
        gone.transport.close()
        await gone.settle()

    with caplog.at_level(logging.ERROR):
        run(main())
    request = ["RequestReceived", "RequestHandled", "RequestTerminated", "OperationTerminated"]
    failed = ["RequestReceived", "WorkerErrorOccurred", "RequestTerminated",
              "OperationTerminated"]
    assert events == ["WorkerStarting", *request, *failed, *request]


def test_listener_that_raises_does_not_break_the_request(run, caplog) -> None:
    rt = octo.Octo()
    rt.container.scoped(Settings)

    def bad(event: Any) -> None:
        raise ValueError("listener bug")

    rt.listen(octo.RequestReceived, bad)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        client = Client(rt.wrap(app))
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle()
        assert parse_responses(client.take())[0].status == 204

    run(main())
    assert "listener bug" in caplog.text


def test_concurrent_requests_never_share_scoped_objects(run) -> None:
    rt = octo.Octo()
    rt.container.scoped(Settings)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        mine = await octo.resolve(Settings)
        mine.name = scope["path"]
        await asyncio.sleep(0.001)  # let the other requests run in between
        assert (await octo.resolve(Settings)) is mine
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": mine.name.encode()})

    async def main() -> None:
        wrapped = rt.wrap(app)
        clients = [Client(wrapped) for _ in range(50)]
        for i, client in enumerate(clients):
            client.send(b"GET /user-%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
        for client in clients:
            await client.settle()
        for i, client in enumerate(clients):
            assert parse_responses(client.take())[0].body == b"/user-%d" % i

    run(main())


def test_lifespan_boots_warm_singletons_before_serving(run) -> None:
    order: list[str] = []

    async def slow_client(settings: Settings) -> Client_:
        order.append("warm start")
        await asyncio.sleep(0.05)
        order.append("warm done")
        return Client_(settings)

    rt = octo.Octo()
    rt.container.singleton(Settings)
    rt.container.singleton(Client_, slow_client)
    rt.container.warm(Client_)

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "no lifespan here"
        order.append("request")
        await octo.resolve(Client_)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        from octo.process.lifespan import Lifespan

        app = rt.wrap(plain)
        lifespan = Lifespan(app, "on")
        await lifespan.startup()
        order.append("listening")
        client = Client(app)
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle()
        await lifespan.shutdown()

    run(main())
    assert order == ["warm start", "warm done", "listening", "request"]


def test_leak_detector_names_growing_global_and_changed_singleton_attribute(
        run, caplog, monkeypatch, tmp_path) -> None:
    import sys

    (tmp_path / "leaky_app.py").write_text(
        "import octo\n"
        "SEEN = []\n"
        "class Reports:\n"
        "    def __init__(self):\n"
        "        self.last_user = None\n"
        "rt = octo.Octo()\n"
        "rt.container.singleton(Reports)\n"
        "async def app(scope, receive, send):\n"
        "    SEEN.append(scope['path'])\n"
        "    (await octo.resolve(Reports)).last_user = scope['path']\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b''})\n")
    monkeypatch.setenv("OCTO_DETECT_LEAKS", "1")
    monkeypatch.setenv("OCTO_APP_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    import leaky_app

    app = leaky_app.rt.wrap(leaky_app.app)

    async def main() -> None:
        client = Client(app)
        for path in (b"/a", b"/b", b"/c"):
            client.send(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path)
            await client.settle()

    with caplog.at_level(logging.WARNING):
        run(main())
    sys.modules.pop("leaky_app", None)
    assert "global leaky_app.SEEN grew from 1 to 2 items" in caplog.text
    assert "singleton Reports attribute 'last_user' changed" in caplog.text
    assert caplog.text.count("leaky_app.SEEN") == 1  # warned once


def test_gc_threshold_collects_once_rss_grew(run, monkeypatch) -> None:
    import gc

    import psutil

    monkeypatch.setenv("OCTO_GC_THRESHOLD", "1")  # MB
    rt = octo.Octo()
    rss = iter([100 << 20, 100 << 20, (100 << 20) + (512 << 10), 102 << 20, 100 << 20])

    class FakeProcess:
        def memory_info(self) -> Any:
            return type("M", (), {"rss": next(rss)})()

    collected: list[int] = []
    monkeypatch.setattr(psutil, "Process", FakeProcess)
    monkeypatch.setattr(gc, "collect", lambda: collected.append(1) or 0)

    async def main() -> None:
        for _ in range(3):  # baseline, +0, +0.5 MB: no collection
            await rt.finish(Operation("request"))
        assert collected == []
        await rt.finish(Operation("request"))  # +2 MB: collect (then re-measure)
        assert collected == [1]

    run(main())
