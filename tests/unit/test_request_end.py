"""In-memory tests for how a request ends when it is not answered in full: the
--max-execution-time deadline (measured from the request's real start, on an injected
clock), and a client that leaves mid-response (logged at debug, one access line)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from harness import Client, parse_responses

from octo.config import Config
from octo.http.cycle import ClientDisconnected, caused_by_disconnect

# The in-memory tests run on both HTTP cores (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("http_core")

GET = b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"


def cfg(**kw: Any) -> Config:
    return Config(app="x:y", **kw)


class FakeClock:
    """ServerState.clock for a test: the time is whatever the test says."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def sleeper(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(30)


async def streamer(scope: Any, receive: Any, send: Any) -> None:
    """Sends the head and a first part, then takes its time over the rest."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    await asyncio.sleep(30)
    await send({"type": "http.response.body", "body": b"rest"})


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG,
             logger: str = "octo.error") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= level]


# -- --max-execution-time ---------------------------------------------------------------------

def test_the_deadline_counts_from_the_real_start_not_the_coarse_clock(run) -> None:
    async def main() -> None:
        client = Client(sleeper, cfg(max_execution_time=1.0))
        client.state.clock = clock = FakeClock(100.0)
        client.state.now = 99.6  # the coarse clock, last refreshed 0.4 s before the request
        client.send(GET)
        await client.settle(5, 0)
        cycle = client.protocol.cycle
        assert cycle is not None and cycle.started_at == 100.0
        assert not cycle.expire(100.6)  # 1.0 s after the stale coarse time: not yet due
        assert not cycle.expire(100.999)
        assert client.take() == b"" and not client.closed
        clock.now = 101.0
        assert cycle.expire(101.0)
        await client.settle()
        assert [r.status for r in parse_responses(client.take())] == [504]
        assert client.closed

    run(main())


def test_an_early_timer_waits_for_the_rest_of_the_limit(run) -> None:
    """A loop timer may fire a little before its time (its clock is coarser than the
    deadline's): it then waits again instead of answering early."""
    async def main() -> None:
        client = Client(sleeper, cfg(max_execution_time=30.0))
        client.state.clock = clock = FakeClock(10.0)
        client.send(GET)
        await client.settle(5, 0)
        cycle = client.protocol.cycle
        assert cycle is not None
        clock.now = 39.99
        cycle._deadline_due()  # the loop timer, 10 ms early by the deadline's clock
        assert client.take() == b"" and cycle.deadline_timer is not None
        assert cycle.deadline_timer.when() - client.loop.time() <= 0.011
        cycle.disarm_deadline()
        assert cycle.task is not None
        cycle.task.cancel()  # leave no pending task behind for the next test
        await client.settle()

    run(main())


def test_the_deadline_fires_on_its_own_timer_never_early(run, caplog) -> None:
    """No worker clock runs here: the request's own timer answers 504, not before the
    limit (measured on the deadline clock from before the request was sent)."""
    async def main() -> None:
        client = Client(sleeper, cfg(max_execution_time=0.2))
        sent = time.monotonic()
        client.send(GET)
        out = b""
        while b"504" not in out and time.monotonic() - sent < 20:
            await asyncio.sleep(0.005)
            out += client.take()
        answered = time.monotonic() - sent
        assert [r.status for r in parse_responses(out)] == [504]
        assert answered >= 0.2, answered
        await client.settle()
        assert not client.state.tasks  # the app was cancelled

    with caplog.at_level(logging.WARNING, logger="octo.error"):
        run(main())
    assert any("exceeded --max-execution-time 0.2s: cancelled, answering 504" in m
               for m in messages(caplog))


def test_a_started_response_past_the_deadline_is_aborted_not_answered_504(run, caplog) -> None:
    async def main() -> None:
        client = Client(streamer, cfg(max_execution_time=1.0))
        client.state.clock = FakeClock(5.0)
        client.send(GET)
        await client.settle(5, 0)
        cycle = client.protocol.cycle
        assert cycle is not None and cycle.head_sent
        assert cycle.expire(6.5)
        await client.settle()
        out = client.take()
        assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"first" in out
        assert b"504" not in out and not out.endswith(b"0\r\n\r\n")  # cut, not completed
        assert client.closed and not client.state.tasks

    with caplog.at_level(logging.INFO):
        run(main())
    warnings = messages(caplog, logging.WARNING)
    assert any("exceeded --max-execution-time 1.0s after its response started: connection "
               "aborted" in m for m in warnings), warnings
    assert not any("504" in m for m in warnings)
    assert messages(caplog, logger="octo.access") == [
        '127.0.0.1:50000 - "GET /slow HTTP/1.1" 200 (aborted: --max-execution-time)']


def test_an_app_that_swallows_the_cancellation_is_not_reported_for_sending(run,
                                                                           caplog) -> None:
    async def stubborn(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await send({"type": "http.response.start", "status": 200, "headers": []})

    async def main() -> None:
        client = Client(stubborn, cfg(max_execution_time=1.0))
        client.state.clock = FakeClock(5.0)
        client.send(GET)
        await client.settle(5, 0)
        cycle = client.protocol.cycle
        assert cycle is not None and cycle.expire(6.0)
        await client.settle()
        assert [r.status for r in parse_responses(client.take())] == [504]

    with caplog.at_level(logging.DEBUG, logger="octo.error"):
        run(main())
    assert messages(caplog, logging.ERROR) == []


# -- a client leaving mid-response --------------------------------------------------------------

def test_a_client_leaving_a_starlette_stream_is_one_access_line_and_no_error(run,
                                                                            caplog) -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def events() -> Any:
        for i in range(100000):
            yield f"data: {i}\n\n"
            await asyncio.sleep(0.001)

    async def stream(request: Any) -> StreamingResponse:
        return StreamingResponse(events(), media_type="text/event-stream")

    escaped: list[BaseException] = []

    async def tracker(scope: Any, receive: Any, send: Any) -> None:
        """What an ASGI error tracker (Sentry's middleware) sees: whatever escapes."""
        try:
            await Starlette(routes=[Route("/events", stream)])(scope, receive, send)
        except BaseException as exc:
            escaped.append(exc)
            raise

    async def main() -> None:
        client = Client(tracker)
        client.send(b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
        for _ in range(20000):  # bounded: a hung stream ends the test
            if b"data: 3" in client.transport.buffer:
                break
            await asyncio.sleep(0.001)
        assert b"data: 3" in client.transport.buffer
        client.leave()
        await client.settle()
        assert not client.state.tasks

    with caplog.at_level(logging.DEBUG):
        run(main())
    assert messages(caplog, logging.ERROR) == []
    assert "Traceback" not in caplog.text
    assert messages(caplog, logger="octo.access") == [
        '127.0.0.1:50000 - "GET /events HTTP/1.1" 200 (client disconnected)']
    # Spec 2.3: Starlette ends the stream on the http.disconnect its listener receives,
    # and nothing escapes the app for a tracker to record (under 2.4 a ClientDisconnect did).
    assert escaped == []
    assert "ASGI app returned mid-response after a disconnect" in messages(caplog)


def test_an_app_that_stops_on_http_disconnect_mid_stream_is_not_an_error(run, caplog) -> None:
    async def polite(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await receive()  # the body
        assert (await receive())["type"] == "http.disconnect"

    async def main() -> None:
        client = Client(polite)
        client.send(GET)
        await client.settle(5, 0)
        client.leave()
        await client.settle()

    with caplog.at_level(logging.DEBUG):
        run(main())
    assert messages(caplog, logging.ERROR) == []
    assert messages(caplog, logger="octo.access") == [
        '127.0.0.1:50000 - "GET /slow HTTP/1.1" 200 (client disconnected)']


def test_a_send_after_the_client_left_is_a_no_op(run, caplog) -> None:
    """ASGI spec 2.3, as declared: an app that finishes its work and sends its last part
    after the client left gets no exception and ends as it would have."""
    results: list[object] = []

    async def main() -> None:
        go_on = asyncio.Event()

        async def finisher(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            await go_on.wait()  # the client leaves meanwhile
            results.append(await send({"type": "http.response.body", "body": b"end"}))
            results.append(scope["asgi"]["spec_version"])

        client = Client(finisher)
        client.send(GET)
        await client.settle(5, 0)
        client.leave()
        await client.settle(5, 0)
        go_on.set()
        await client.settle()
        assert not client.state.tasks

    with caplog.at_level(logging.DEBUG):
        run(main())
    assert results == [None, "2.3"]
    assert messages(caplog, logging.ERROR) == []
    assert "the app sends on after its client left: cancelled" not in messages(caplog)


def test_an_app_that_sends_on_after_the_no_op_is_cancelled(run, caplog) -> None:
    """One that listens to nothing would stream into the void forever (and a no-op send
    that never suspended would starve the loop): its send after the no-op cancels it."""
    ended: list[str] = []

    async def main() -> None:
        resume = asyncio.Event()

        async def deaf(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            await resume.wait()
            sent = 0
            try:
                while True:  # awaits nothing but send
                    await send({"type": "http.response.body", "body": b"x", "more_body": True})
                    sent += 1
            except BaseException as exc:
                ended.append(f"{type(exc).__name__} after {sent}")
                raise

        client = Client(deaf)
        client.send(GET)
        await client.settle(5, 0)
        client.leave()
        await client.settle(5, 0)
        resume.set()
        await client.settle()
        assert not client.state.tasks

    with caplog.at_level(logging.DEBUG):
        run(main())
    assert ended == ["CancelledError after 1"]
    assert messages(caplog, logging.ERROR) == []
    assert "the app sends on after its client left: cancelled" in messages(caplog)
    assert messages(caplog, logger="octo.access") == [
        '127.0.0.1:50000 - "GET /slow HTTP/1.1" 200 (client disconnected)']


def test_a_real_app_error_after_a_disconnect_is_still_an_error(run, caplog) -> None:
    async def buggy(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await receive()
        await receive()  # the disconnect
        raise KeyError("not the client's fault")

    async def main() -> None:
        client = Client(buggy)
        client.send(GET)
        await client.settle(5, 0)
        client.leave()
        await client.settle()

    with caplog.at_level(logging.DEBUG):
        run(main())
    assert any("Exception in ASGI application" in m for m in messages(caplog, logging.ERROR))


def test_a_stream_cancelled_by_the_server_says_so_on_its_access_line(run, caplog) -> None:
    """As at the end of --graceful-timeout: the task is cancelled, then the connection
    closed."""
    async def main() -> None:
        client = Client(streamer)
        client.send(GET)
        await client.settle(5, 0)
        [task] = client.state.tasks
        task.cancel()
        client.transport.close()
        await client.settle()

    with caplog.at_level(logging.INFO):
        run(main())
    assert messages(caplog, logger="octo.access") == [
        '127.0.0.1:50000 - "GET /slow HTTP/1.1" 200 (cancelled)']


class ClientDisconnect(Exception):
    """Named like Starlette's."""


def _raised_from(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException:
            raise exc  # noqa: B904 -- implicit chaining is what frameworks do
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(("exc", "expected"), [
    (ClientDisconnected("gone"), True),
    (BrokenPipeError(), True),
    (ClientDisconnect(), True),
    (_raised_from(RuntimeError("wrapped"), ClientDisconnected("gone")), True),
    (ExceptionGroup("g", [ClientDisconnect(), BrokenPipeError()]), True),
    (RuntimeError("a bug"), False),
    (_raised_from(RuntimeError("a bug"), KeyError("x")), False),
    (ExceptionGroup("g", [ClientDisconnect(), ValueError("a bug")]), False),
])
def test_which_exceptions_count_as_the_client_leaving(exc: BaseException,
                                                      expected: bool) -> None:
    assert caused_by_disconnect(exc) is expected
