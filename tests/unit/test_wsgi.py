"""In-memory tests of serving a WSGI app (octo.wsgi): detection, the PEP 3333 environ,
request bodies, responses (lists, Django's HttpResponse, streams, write(), exc_info),
close() on every path, through the real HTTP protocol on a fake transport."""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from harness import Client, parse_responses

from octo.config import Config, ConfigError
from octo.process.importer import AppLoadError
from octo.process.worker import as_asgi
from octo.wsgi import SPOOL_LIMIT, WSGIAdapter, looks_like_wsgi

WAIT = 60.0  # only ends a hung test

Environ = dict[str, Any]


def hello(environ: Environ, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello ", b"wsgi"]


def exchange(run: Any, app: Any, request: bytes, config: Config | None = None,
             threads: int = 1) -> bytes:
    async def main() -> bytes:
        client = Client(WSGIAdapter(app, threads), config)
        client.send(request)
        await client.settle()
        return client.take()

    return run(main())  # type: ignore[no-any-return]


# -- detection ---------------------------------------------------------------------------------

class WSGIClass:
    def __call__(self, environ: Environ, start_response: Any) -> list[bytes]:
        return hello(environ, start_response)


class ASGIClass:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class ASGI2:
    def __init__(self, scope: Any) -> None:
        self.scope = scope


async def asgi3(scope: Any, receive: Any, send: Any) -> None:
    pass


def test_wsgi_apps_are_told_from_asgi_ones() -> None:
    django = pytest.importorskip("django.core.handlers.wsgi")
    assert looks_like_wsgi(hello) and looks_like_wsgi(WSGIClass())
    assert looks_like_wsgi(django.WSGIHandler)is False  # the class, not an instance
    assert not looks_like_wsgi(asgi3) and not looks_like_wsgi(ASGIClass())
    assert not looks_like_wsgi(ASGI2) and not looks_like_wsgi("not callable")
    assert not looks_like_wsgi(lambda scope: None)


def test_interface_auto_serves_each_kind_as_it_is() -> None:
    cfg = Config(app="m:a")
    assert isinstance(as_asgi(hello, cfg), WSGIAdapter)
    assert as_asgi(asgi3, cfg) is asgi3
    assert as_asgi(ASGI2, cfg) is not ASGI2  # wrapped into ASGI 3
    assert as_asgi(hello, Config(app="m:a", interface="asgi3")) is hello
    adapter = as_asgi(hello, Config(app="m:a", interface="wsgi", threads=4))
    assert isinstance(adapter, WSGIAdapter) and adapter.threads == 4


def test_interface_wsgi_refuses_an_asgi_app_in_one_line() -> None:
    with pytest.raises(AppLoadError, match=r"--interface wsgi: m:a is not a WSGI app"):
        as_asgi(asgi3, Config(app="m:a", interface="wsgi"))


def test_bad_interface_and_thread_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="--interface .rsgi.: choose auto, asgi3, asgi2 or wsgi"):
        Config(app="m:a", interface="rsgi")
    with pytest.raises(ConfigError, match="threads must be at least 1"):
        Config(app="m:a", threads=0)


# -- the environ -------------------------------------------------------------------------------

def test_the_environ_follows_pep_3333(run) -> None:
    seen: list[Environ] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        seen.append(dict(environ, body=environ["wsgi.input"].read()))
        return hello(environ, start_response)

    request = (b"POST /a%20b/%2F/%ff?x=1&y=%20 HTTP/1.1\r\nHost: example:8080\r\n"
               b"Content-Type: text/plain\r\nContent-Length: 4\r\nX-Thing: one\r\n"
               b"X-Thing: two\r\nCookie: a=1\r\nCookie: b=2\r\nX_Forwarded_For: 6.6.6.6\r\n"
               b"\r\nbody")
    out = exchange(run, app, request, Config(app="x:y", root_path="/root"))
    assert parse_responses(out)[0].body == b"hello wsgi"
    [env] = seen
    assert env["REQUEST_METHOD"] == "POST" and env["SCRIPT_NAME"] == "/root"
    # Percent-decoded bytes as latin-1, an encoded slash kept apart from none.
    assert env["PATH_INFO"] == "/a b///\xff" and env["QUERY_STRING"] == "x=1&y=%20"
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "4"
    assert "HTTP_CONTENT_TYPE" not in env and env["HTTP_HOST"] == "example:8080"
    assert env["HTTP_X_THING"] == "one,two" and env["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_FORWARDED_FOR" not in env  # X_Forwarded_For is dropped, not mapped
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"] == "50000"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == (1, 0) and env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is True and env["wsgi.run_once"] is False
    assert env["body"] == b"body"


def test_a_chunked_body_and_a_large_one_reach_wsgi_input(run) -> None:
    seen: list[tuple[bytes, bool]] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        seen.append((stream.read(), isinstance(stream, io.BytesIO)))
        return hello(environ, start_response)

    exchange(run, app, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    big = b"z" * (SPOOL_LIMIT + 10)
    exchange(run, app, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s"
             % (len(big), big))
    assert seen == [(b"abcde", True), (big, False)]  # the large one was spooled


def test_the_request_context_travels_to_the_apps_thread(run) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[tuple[str, bool]] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        seen.append((var.get(), threading.current_thread() is threading.main_thread()))
        return hello(environ, start_response)

    adapter = WSGIAdapter(app)

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        var.set("request value")
        await adapter(scope, receive, send)

    async def main() -> None:
        client = Client(outer)
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle()

    run(main())
    assert seen == [("request value", False)]


# -- responses ---------------------------------------------------------------------------------

def test_a_list_response_is_one_write_with_its_length(run) -> None:
    [response] = parse_responses(exchange(run, hello, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert response.status == 200 and response.body == b"hello wsgi"
    assert response.header(b"content-length") == b"10"
    assert response.header(b"content-type") == b"text/plain"


def test_a_stream_is_sent_as_it_comes_and_closed(run) -> None:
    closed = threading.Event()

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("201 Created", [("X-A", "b")])
        try:
            yield b"one,"
            yield b""  # an empty part is no chunk (it would end the body)
            yield b"two"
        finally:
            closed.set()

    out = exchange(run, app, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"transfer-encoding: chunked" in out.lower()
    [response] = parse_responses(out)
    assert response.status == 201 and response.body == b"one,two"
    assert closed.wait(WAIT)


def test_write_and_the_iterable_both_count(run) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"written ")
        return [b"returned"]

    [response] = parse_responses(exchange(run, app, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert response.body == b"written returned"


def test_exc_info_before_the_head_replaces_the_response(run) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-Old", "1")])
        try:
            raise ValueError("late")
        except ValueError:
            import sys
            start_response("500 Internal Server Error", [("X-New", "1")], sys.exc_info())
        return [b"error page"]

    [response] = parse_responses(exchange(run, app, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert response.status == 500 and response.body == b"error page"
    assert response.header(b"x-new") == b"1" and response.header(b"x-old") is None


def test_exc_info_after_the_head_went_out_re_raises_and_cuts_the_response(run,
                                                                         caplog) -> None:
    start: list[Any] = []

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start.append(start_response)
        start_response("200 OK", [])
        yield b"half"
        try:
            raise ValueError("too late to say")
        except ValueError:
            import sys
            start_response("500 Internal Server Error", [], sys.exc_info())
        yield b"never"

    async def main() -> bytes:
        client = Client(WSGIAdapter(app))
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle()
        assert client.closed  # half a response went out: only a close is honest
        return client.take()

    with caplog.at_level(logging.ERROR):
        out = run(main())
    assert out.startswith(b"HTTP/1.1 200") and b"half" in out and b"never" not in out
    assert not out.endswith(b"0\r\n\r\n")
    assert "ValueError: too late to say" in caplog.text


def test_a_second_start_response_without_exc_info_is_an_error(run, caplog) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b""]

    with caplog.at_level(logging.ERROR):
        [response] = parse_responses(exchange(run, app, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert response.status == 500
    assert "start_response called a second time" in caplog.text


def test_an_app_that_never_starts_the_response_gets_a_500(run, caplog) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        return [b"no head"]

    with caplog.at_level(logging.ERROR):
        [response] = parse_responses(exchange(run, app, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert response.status == 500
    assert "returned without calling start_response" in caplog.text


def test_an_app_error_is_a_logged_500_and_its_iterable_closed(run, caplog) -> None:
    closed = threading.Event()

    class Failing:
        def __init__(self) -> None:
            self.parts = iter([b"x"])

        def __iter__(self) -> Iterator[bytes]:
            raise KeyError("broken iterable")

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: Any) -> Failing:
        start_response("200 OK", [])
        return Failing()

    with caplog.at_level(logging.ERROR):
        [response] = parse_responses(exchange(run, app, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert response.status == 500
    assert "KeyError: 'broken iterable'" in caplog.text
    assert closed.wait(WAIT)


def test_a_client_leaving_a_stream_closes_the_iterable(run) -> None:
    closed = threading.Event()
    produced: list[int] = []

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        try:
            for i in range(10**6):
                produced.append(i)
                yield b"part %d\n" % i
        finally:
            closed.set()

    async def main() -> None:
        client = Client(WSGIAdapter(app))
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        deadline = asyncio.get_running_loop().time() + WAIT
        while b"part 2" not in client.transport.buffer:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.001)
        client.leave()
        await client.settle()
        assert not client.state.tasks

    run(main())
    assert closed.wait(WAIT)
    assert len(produced) < 10**6


def test_the_adapter_completes_the_lifespan(run) -> None:
    sent: list[str] = []

    async def main() -> None:
        queue = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> Any:
            return next(queue)

        async def send(message: Any) -> None:
            sent.append(message["type"])

        await WSGIAdapter(hello)({"type": "lifespan"}, receive, send)

    run(main())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_django_project_is_served_through_its_wsgi_handler(run) -> None:
    pytest.importorskip("django")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from apps.django_wsgi.wsgi import application

    out = exchange(run, application, b"GET /json HTTP/1.1\r\nHost: a\r\n\r\n"
                                     b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n")
    first, second = parse_responses(out)
    assert first.status == 200 and first.body == b'{"hello": "world"}'
    assert second.status == 404
