"""In-memory tests for hostile clients: trailers, half-closes, path decoding, log escaping,
the field/chunk-line limits, the body and send timeouts, and pipelined head accounting."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from harness import Client, echo, hello, parse_responses

from octo.config import Config, ConfigError

# Every test here runs on both HTTP cores, pure-Python and compiled.
pytestmark = pytest.mark.usefixtures("http_core")

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
CHUNKED = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def cfg(**kw: Any) -> Config:
    return Config(app="x:y", **kw)


class Recorder:
    """An app that reads the whole body, records what it saw, then answers."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.headers_after_body: list[list[tuple[bytes, bytes]]] = []
        self.messages: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        while True:
            message = await receive()
            self.messages.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        self.headers_after_body.append(list(scope["headers"]))
        if self.messages[-1] == "http.disconnect":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def statuses(client: Client) -> list[int]:
    return [r.status for r in parse_responses(client.take())]


# -- item 3: trailers -------------------------------------------------------------------------

def test_trailers_never_join_the_request_headers(run) -> None:
    app = Recorder()

    async def main() -> None:
        client = Client(app)
        client.send(CHUNKED + b"2\r\nhi\r\n")
        await client.settle(5, 0)
        client.send(b"0\r\nX-Admin: 1\r\nX-Role: admin\r\n\r\n")
        await client.settle()
        assert statuses(client) == [200]
        assert app.headers_after_body == [[(b"host", b"a"), (b"transfer-encoding", b"chunked")]]

    run(main())


# (llhttp itself refuses Content-Length and Transfer-Encoding in a trailer.)
@pytest.mark.parametrize("field", [b"Host", b"Cookie", b"Authorization", b"X-Forwarded-For",
                                   b"Trailer", b"Connection"])
def test_a_forbidden_trailer_is_400_and_the_app_sees_a_disconnect(run, field: bytes) -> None:
    app = Recorder()

    async def main() -> None:
        client = Client(app)
        client.send(CHUNKED + b"2\r\nhi\r\n")
        await client.settle(5, 0)
        client.send(b"0\r\n" + field + b": 1\r\n\r\n")
        await client.settle()
        assert statuses(client) == [400]
        assert client.closed
        assert app.messages[-1] == "http.disconnect"

    run(main())


# -- item 4: the client half-closes -----------------------------------------------------------

@pytest.mark.parametrize("head, part", [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", b"abc"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", b""),
    (CHUNKED, b"5\r\nhel"),
    (CHUNKED, b"5\r\nhello\r\n"),
    (CHUNKED, b"5\r\nhello\r\n0\r\nX-T: 1"),
])
def test_eof_inside_a_body_is_a_disconnect_and_a_close(run, caplog, head: bytes,
                                                       part: bytes) -> None:
    app = Recorder()

    async def main() -> None:
        client = Client(app)
        client.send(head + part)
        await client.settle(5, 0)
        assert app.messages in ([], ["http.request"])  # waiting for the rest
        with caplog.at_level(logging.INFO, logger="octo"):
            await client.half_close()
            await client.settle()
        assert app.messages[-1] == "http.disconnect"
        assert client.closed
        assert client.take() == b""
        # The app returned without a response, as it should after a disconnect: no error.
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

    run(main())


def test_eof_answers_the_complete_request_and_cuts_the_next(run) -> None:
    app = Recorder()

    async def main() -> None:
        client = Client(app)
        client.send(b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok"
                    b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc")
        await client.settle(5, 0)
        await client.half_close()
        await client.settle()
        assert statuses(client) == [200]
        assert app.messages == ["http.request", "http.request", "http.disconnect"]
        assert client.closed

    run(main())


# -- item 5: percent-decoding -----------------------------------------------------------------

@pytest.mark.parametrize("target, path", [
    (b"/items/%ff", "/items/\ufffd"), (b"/%ED%A0%80", "/\ufffd\ufffd\ufffd"),
    (b"/a%C3", "/a\ufffd"), (b"/caf%C3%A9%80", "/caf\u00e9\ufffd"),
])
def test_invalid_utf8_in_the_path_becomes_replacement_characters(run, target: bytes,
                                                                 path: str) -> None:
    app = Recorder()

    async def main() -> None:
        client = Client(app)
        client.send(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle()
        scope = app.scopes[0]
        assert scope["path"] == path and scope["raw_path"] == target
        scope["path"].encode("utf-8")  # strict: no lone surrogate

    run(main())


# -- item 6: request data in log lines --------------------------------------------------------

def test_max_execution_time_warning_escapes_the_path(run, caplog) -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        client = Client(slow, cfg(max_execution_time=1.0))
        client.send(b"GET /x%0d%0a2026-01-01%20ERROR%20forged HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle(5, 0)
        cycle = client.protocol.cycle
        assert cycle is not None
        with caplog.at_level(logging.WARNING, logger="octo.error"):
            cycle.expire(cycle.started_at + 5)
            await client.settle()
        [record] = [r for r in caplog.records if "max-execution-time" in r.getMessage()]
        message = record.getMessage()
        assert "\r" not in message and "\n" not in message
        assert "/x\\x0d\\x0a2026-01-01 ERROR forged" in message
        assert statuses(client) == [504]

    run(main())


# -- item 7: --limit-request-field-size and --limit-chunk-extension ---------------------------

@pytest.mark.parametrize("value_size, status", [(8190 - 4 - 5, 200), (8190 - 4 - 5 + 1, 431)])
def test_field_size_limit_default_is_8190(run, caplog, value_size: int, status: int) -> None:
    async def main() -> None:
        client = Client(hello)
        with caplog.at_level(logging.INFO, logger="octo.error"):
            client.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * value_size + b"\r\n\r\n")
            await client.settle()
        assert statuses(client) == [status]
        if status == 431:
            assert "--limit-request-field-size" in caplog.text

    run(main())


def test_a_field_line_trickled_in_is_cut_at_the_limit(run) -> None:
    async def main() -> None:
        client = Client(hello, cfg(limit_request_field_size=100))
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        for _ in range(200):
            if client.closed:
                break
            client.send(b"v")
        await client.settle()
        assert statuses(client) == [431]
        assert client.closed

    run(main())


@pytest.mark.parametrize("ext_size, status", [(16384 - 2, 200), (16384 - 1, 413)])
def test_chunk_extension_limit_default_is_16384(run, caplog, ext_size: int, status: int) -> None:
    async def main() -> None:
        client = Client(echo)
        with caplog.at_level(logging.INFO, logger="octo.error"):
            client.send(CHUNKED + b"5;" + b"e" * ext_size + b"\r\nhello\r\n0\r\n\r\n")
            await client.settle()
        assert statuses(client) == [status]
        if status == 413:
            assert "--limit-chunk-extension" in caplog.text

    run(main())


def test_an_endless_chunk_extension_is_cut_at_the_limit(run) -> None:
    app = Recorder()

    async def main() -> None:
        client = Client(app, cfg(limit_chunk_extension=1000))
        client.send(CHUNKED + b"5;x=")
        sent = 0
        while not client.closed and sent < 100_000:
            client.send(b"y" * 100)
            sent += 100
            await asyncio.sleep(0)
        await client.settle()
        assert statuses(client) == [413]
        assert sent <= 1100
        assert app.messages[-1] == "http.disconnect"

    run(main())


def test_chunked_bodies_in_every_read_shape_are_measured_the_same(run) -> None:
    """Big reads, pipelined behind bodies of both framings: no false refusal."""
    body = b"".join(b"%x;n=%d\r\n%s\r\n" % (size, size, b"d" * size) for size in (1, 300, 5000))
    data = (b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\n0\r\n\r\n0\r\n"
            + CHUNKED + body + b"0\r\nX-T: 1\r\n\r\n" + GET + CHUNKED + body + b"0\r\n\r\n")

    async def main() -> None:
        for cut in (len(data), 7, 1000, 4096):
            client = Client(echo, cfg(limit_chunk_extension=11))  # "1388;n=5000"
            for pos in range(0, len(data), cut):
                assert await client.readable()
                client.send(data[pos:pos + cut])
                await asyncio.sleep(0)
            await client.settle()
            replies = parse_responses(client.take())
            assert [r.status for r in replies] == [200] * 4, cut
            assert len(replies[1].body) == 5301 and replies[1].body == replies[3].body

    run(main())


# -- item 7: --body-timeout -------------------------------------------------------------------

SLOW_POST = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"


def body_client(app: Any, **kw: Any) -> Client:
    return Client(app, cfg(body_timeout=10.0, body_min_rate=100.0, **kw))


def test_a_trickled_body_is_cut_with_408(run, caplog) -> None:
    app = Recorder()

    async def main() -> None:
        client = body_client(app)
        now = client.state.now
        client.send(SLOW_POST + b"x")
        await client.settle(5, 0)
        with caplog.at_level(logging.WARNING, logger="octo.error"):
            for second in range(30):  # one byte a second
                client.protocol.tick(now + second)
                if client.closed:
                    break
                client.send(b"x")
            await client.settle()
        assert statuses(client) == [408]
        assert client.closed and app.messages[-1] == "http.disconnect"
        assert 10 <= second <= 11  # the first window that ended short
        assert "--body-timeout" in caplog.text and "--body-min-rate" in caplog.text

    run(main())


def test_a_body_at_the_minimum_rate_is_not_cut(run) -> None:
    async def main() -> None:
        client = body_client(echo)
        now = client.state.now
        client.send(SLOW_POST)
        for second in range(60):
            client.protocol.tick(now + second)
            client.send(b"x" * 100)
        client.send(b"x" * (100000 - 6000))
        await client.settle()
        assert statuses(client) == [200] and not client.closed

    run(main())


def test_time_the_server_is_not_reading_is_not_the_clients(run) -> None:
    release = asyncio.Event()

    async def late_reader(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await echo(scope, receive, send)

    async def main() -> None:
        client = body_client(late_reader)
        now = client.state.now
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 300000\r\n\r\n"
                    + b"x" * 100_000)  # more than the app took: reading pauses
        assert client.transport.reading is False
        for second in range(0, 60, 5):
            client.protocol.tick(now + second)
        assert not client.closed
        release.set()
        await client.settle(20, 0)
        client.send(b"x" * 200_000)
        await client.settle()
        assert statuses(client) == [200]

    run(main())


def test_no_body_timeout_before_the_app_asks_for_a_100_continue_body(run) -> None:
    async def main() -> None:
        client = body_client(lambda scope, receive, send: asyncio.sleep(3600))
        now = client.state.now
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                    b"Content-Length: 10\r\n\r\n")
        await client.settle(5, 0)
        for second in range(0, 60, 5):
            client.protocol.tick(now + second)
        assert not client.closed and client.take() == b""
        for task in client.state.tasks:
            task.cancel()

    run(main())


# -- item 7: --send-timeout -------------------------------------------------------------------

class Streamer:
    """Streams, never listening for the disconnect; records how it was stopped."""

    def __init__(self) -> None:
        self.ended: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536,
                            "more_body": True})
                await asyncio.sleep(0)  # the fake transport never pauses by itself
        except BaseException as exc:
            self.ended.append(type(exc).__name__)
            raise


def test_a_client_that_never_reads_is_aborted(run, caplog) -> None:
    app = Streamer()

    async def main() -> None:
        client = Client(app, cfg(send_timeout=30.0))
        now = client.state.now
        client.send(GET)
        await client.settle(5, 0)
        client.transport.write_buffer = 1 << 20
        client.protocol.pause_writing()  # the buffer is full and the client takes nothing
        await client.settle(5, 0)
        with caplog.at_level(logging.WARNING, logger="octo.error"):
            for second in range(0, 40):
                client.protocol.tick(now + second)
                if client.closed:
                    break
            await client.settle()
        assert client.transport.aborted
        assert 30 < second <= 32
        # Its sends after the abort are no-ops (ASGI spec 2.3); as it sends on, it is
        # cancelled, never handed an exception an error tracker would record.
        assert app.ended == ["CancelledError"]
        assert not client.state.tasks
        assert "--send-timeout" in caplog.text

    run(main())


def test_a_slow_reader_that_makes_progress_is_not_aborted(run) -> None:
    async def main() -> None:
        client = Client(Streamer(), cfg(send_timeout=30.0))
        now = client.state.now
        client.send(GET)
        await client.settle(5, 0)
        client.protocol.pause_writing()
        for second in range(0, 120):
            client.transport.write_buffer = (1 << 20) - second * 100  # it takes a little
            client.protocol.tick(now + second)
        assert not client.closed
        client.transport.close()
        await client.settle()

    run(main())


# -- item 8: pipelined heads ------------------------------------------------------------------

def test_twenty_thousand_pipelined_gets_in_big_reads_are_all_answered(run) -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 20_000

    async def main() -> None:
        client = Client(hello)
        for pos in range(0, len(data), 256 * 1024):  # a uvloop read is up to 256 KiB
            assert await client.readable(100_000), "reading stopped"
            client.send(data[pos:pos + 256 * 1024])
        await client.settle()
        assert statuses(client) == [200] * 20_000
        assert not client.closed

    run(main())


def test_a_pipelined_head_is_counted_from_where_it_starts(run) -> None:
    async def main() -> None:
        client = Client(hello, cfg(limit_request_head=1024))
        first = GET * 50 + b"GET /big HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 900
        client.send(first)  # 1350 + 900 bytes in one read: this head's share is 937
        await client.settle()
        assert await client.readable()
        assert not client.closed
        client.send(b"v" * 100)  # now 1037: over
        await client.settle()
        assert statuses(client) == [200] * 50 + [431]

    run(main())


# -- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"limit_request_field_size": 0}, {"limit_chunk_extension": 0},
                                    {"body_timeout": -1.0}, {"body_min_rate": -1.0},
                                    {"send_timeout": -1.0}])
def test_new_limits_are_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        Config(app="a:b", **kwargs)


def test_zero_turns_the_timeouts_off(run) -> None:
    async def main() -> None:
        client = Client(echo, cfg(body_timeout=0.0, send_timeout=0.0))
        now = client.state.now
        client.send(SLOW_POST)
        client.protocol.pause_writing()
        client.transport.write_buffer = 1 << 20
        for second in range(0, 3600, 60):
            client.protocol.tick(now + second)
        assert not client.closed
        client.transport.close()
        await client.settle()

    run(main())
