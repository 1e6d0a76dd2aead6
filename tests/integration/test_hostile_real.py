"""Hostile clients against a real ``octo serve`` over real sockets: trailers, half-closes,
undecodable paths, log injection, the field/chunk-line limits, slow bodies, clients that
never read, and long pipelines."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Response, parse_responses
from server import ROOT, Server, read_until_closed, run_server

APP = "apps.serving:app"
DJANGO_APP = "apps.django_hostile.asgi:application"
STARLETTE_APP = "apps.starlette_hostile:app"
APP_DIR = ("--app-dir", str(ROOT / "tests"))
CHUNKED_UPLOAD = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.fixture(scope="module")
def srv():
    with run_server(APP, *APP_DIR, "--limit-request-field-size", "1000",
                    "--limit-chunk-extension", "100", "--body-timeout", "2",
                    "--body-min-rate", "100", "--send-timeout", "2") as server:
        yield server


@pytest.fixture(scope="module")
def django() -> Iterator[Server]:
    with run_server(DJANGO_APP, *APP_DIR) as server:
        yield server


@pytest.fixture(scope="module")
def starlette() -> Iterator[Server]:
    with run_server(STARLETTE_APP, *APP_DIR) as server:
        yield server


def connect(server: Server, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=timeout)



def exchange(server: Server, data: bytes, half_close: bool = False) -> bytes:
    with connect(server) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock, reset=True)


# -- item 3 ----------------------------------------------------------------------------------

def test_trailer_fields_do_not_reach_the_app(srv) -> None:
    out = exchange(srv, b"POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        b"Connection: close\r\n\r\n2\r\nhi\r\n0\r\nX-Admin: 1\r\n\r\n")
    [reply] = parse_responses(out)
    assert reply.status == 200 and b"x-admin" not in reply.body
    assert b"(b'host', b'x')" in reply.body


@pytest.mark.parametrize("trailer", [b"Host: evil", b"Cookie: session=1",
                                     b"X-Forwarded-For: 1.2.3.4"])
def test_a_forbidden_trailer_gets_400(srv, trailer: bytes) -> None:
    out = exchange(srv, b"POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"2\r\nhi\r\n0\r\n" + trailer + b"\r\n\r\n")
    assert [r.status for r in parse_responses(out)] == [400]


def chunked_with_trailer(target: bytes, trailer: bytes) -> bytes:
    return (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n" + trailer + b"\r\n\r\n")


def one_reply(out: bytes) -> Response:
    replies = parse_responses(out)
    assert len(replies) == 1, out
    return replies[0]


def test_django_never_sees_trailers_as_request_headers(django: Server) -> None:
    out = exchange(django, chunked_with_trailer(b"/meta", b"X-Admin: 1\r\nX-Role: admin"))
    reply = one_reply(out)
    assert reply.status == 200, out
    seen = json.loads(reply.body)
    assert seen["body"] == 5 and seen["host"] == "x"
    assert "HTTP_X_ADMIN" not in seen["meta"] and "HTTP_X_ROLE" not in seen["meta"], seen


# Framing, routing, authentication and state fields (RFC 9110 section 6.5.1).
FORBIDDEN = [b"Host: evil", b"Content-Length: 5", b"Transfer-Encoding: chunked",
             b"Trailer: X-A", b"Authorization: Basic YWRtaW46YWRtaW4=", b"Cookie: session=1",
             b"X-Forwarded-For: 10.0.0.1", b"Forwarded: for=10.0.0.1", b"Connection: close"]


@pytest.mark.parametrize("trailer", FORBIDDEN, ids=lambda t: t.split(b":")[0].decode())
def test_django_a_forbidden_trailer_gets_400_and_the_view_never_runs(django: Server,
                                                                     trailer: bytes) -> None:
    since = django.log_size()
    out = exchange(django, chunked_with_trailer(b"/meta", trailer))
    assert one_reply(out).status == 400, out
    django.wait_for_log("400 from 127.0.0.1", since=since)  # llhttp refuses some itself
    assert "DJANGO: meta view ran" not in django.log(since)


def test_starlette_request_headers_stay_the_heads(starlette: Server) -> None:
    out = exchange(starlette, chunked_with_trailer(b"/headers", b"X-Admin: 1"))
    reply = one_reply(out)
    assert reply.status == 200, out
    seen = json.loads(reply.body)
    assert seen["body"] == 5
    assert [name for name, _ in seen["headers"]] == ["host", "transfer-encoding", "connection"]


@pytest.mark.parametrize("trailer", [b"Host: evil", b"Content-Length: 0"])
def test_starlette_a_forbidden_trailer_gets_400(starlette: Server, trailer: bytes) -> None:
    out = exchange(starlette, chunked_with_trailer(b"/headers", trailer))
    assert one_reply(out).status == 400, out


# -- item 4 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
    CHUNKED_UPLOAD + b"5\r\nhel",
    CHUNKED_UPLOAD + b"5\r\nhello\r\n",
    CHUNKED_UPLOAD + b"5\r\nhello\r\n1",
    CHUNKED_UPLOAD + b"5\r\nhello\r\n0\r\nX-T: 1",
], ids=["content-length", "chunk-data", "chunk-boundary", "chunk-size-line", "trailers"])
def test_a_half_close_inside_a_body_is_a_disconnect(srv, data: bytes) -> None:
    since = srv.log_size()
    assert exchange(srv, data, half_close=True) == b""
    srv.wait_for_log("ended with http.disconnect", since=since)


@pytest.mark.parametrize("data", [
    b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
    b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
], ids=["content-length", "chunked"])
def test_starlette_sees_a_half_close_inside_a_body_as_a_disconnect(starlette: Server,
                                                                   data: bytes) -> None:
    since = starlette.log_size()
    assert exchange(starlette, data, half_close=True) == b""
    starlette.wait_for_log("STARLETTE: upload ended with ClientDisconnect", since=since)


def test_a_half_close_after_requests_still_gets_every_answer(srv) -> None:
    out = exchange(srv, b"GET /sleep?0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"
                        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nab",
                   half_close=True)
    assert [r.body for r in parse_responses(out)] == [b"slept", b"ok"]


# -- item 5 ----------------------------------------------------------------------------------

def test_invalid_utf8_in_the_path_is_replaced_not_a_500(srv) -> None:
    out = exchange(srv, b"GET /path/%ff%C3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    [reply] = parse_responses(out)
    assert reply.status == 200 and reply.body.decode("utf-8") == "/path/\ufffd\ufffd"


@pytest.mark.parametrize(("target", "name"), [
    (b"/items/%ff", "\ufffd"),
    (b"/items/caf%C3%A9%C3", "caf\u00e9\ufffd"),
    (b"/items/%ED%A0%80", "\ufffd\ufffd\ufffd"),  # an encoded surrogate is not UTF-8
])
def test_starlette_route_with_invalid_utf8_answers_200(starlette: Server, target: bytes,
                                                        name: str) -> None:
    out = exchange(starlette, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n")
    reply = one_reply(out)
    assert reply.status == 200, out
    assert reply.body.decode("utf-8") == f"{name}|{target.decode()}"  # raw_path: the bytes
    assert "Traceback" not in starlette.log()


# -- item 6 ----------------------------------------------------------------------------------

def test_a_crlf_in_the_path_cannot_forge_a_log_line() -> None:
    forged = b"%0d%0a2026-01-01%2000:00:00,000%20[1]%20ERROR%20forged"
    with run_server(APP, *APP_DIR, "--max-execution-time", "1") as server:
        out = exchange(server, b"GET /sleep" + forged + b"?3 HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n")
        assert [r.status for r in parse_responses(out)] == [504]
        log = server.wait_for_log("--max-execution-time")
    assert not re.search(r"^2026-01-01 00:00:00,000 \[1\] ERROR forged", log, re.MULTILINE), log
    assert "/sleep\\x0d\\x0a2026-01-01 00:00:00,000 [1] ERROR forged" in log


def assert_one_line_each(log: str) -> None:
    """No log record of the server spans lines or carries terminal controls."""
    for line in log.splitlines():  # splits at U+2028/U+2029 too, as many log viewers do
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]",
                             line), line
        assert not line.startswith("2026-01-01"), f"forged line: {line!r}"


@pytest.mark.parametrize("forged", [
    b"%e2%80%a82026-01-01%2000:00:00,000%20[1]%20ERROR%20forged",  # U+2028 LINE SEPARATOR
    b"%e2%80%ae%1b[2J",  # a bidi override and a terminal escape
], ids=["line-separator", "bidi-and-escape"])
def test_unicode_separators_and_controls_in_the_path_are_escaped(forged: bytes) -> None:
    with run_server(APP, *APP_DIR, "--max-execution-time", "1") as server:
        out = exchange(server, b"GET /sleep" + forged + b"?3 HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n")
        assert [r.status for r in parse_responses(out)] == [504]
        log = server.wait_for_log("--max-execution-time")
    assert_one_line_each(log)


def test_request_bytes_in_refusal_reasons_are_escaped(srv) -> None:
    since = srv.log_size()
    out = exchange(srv, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x9b[2J"
                        b"\r\n\r\n")
    assert [r.status for r in parse_responses(out)] == [400]
    log = srv.wait_for_log("(only chunked)", since=since)
    assert "chunked\\x9b[2J" in log
    assert_one_line_each(log)


# -- item 7: limits --------------------------------------------------------------------------

def test_one_header_line_over_the_field_size_gets_431(srv) -> None:
    since = srv.log_size()
    out = exchange(srv, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 1000 + b"\r\n\r\n")
    assert [r.status for r in parse_responses(out)] == [431]
    srv.wait_for_log("--limit-request-field-size", since=since)


def test_a_long_chunk_extension_gets_413(srv) -> None:
    since = srv.log_size()
    out = exchange(srv, CHUNKED_UPLOAD + b"5;" + b"x" * 200 + b"\r\nhello\r\n0\r\n\r\n")
    assert [r.status for r in parse_responses(out)] == [413]
    srv.wait_for_log("--limit-chunk-extension", since=since)


# -- item 7: --body-timeout ------------------------------------------------------------------

def test_a_body_trickled_at_a_few_bytes_a_second_is_cut(srv) -> None:
    since = srv.log_size()
    with connect(srv) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        start = time.monotonic()
        out = b""
        sock.settimeout(0.25)
        while time.monotonic() - start < 20:
            try:
                sock.send(b"x")
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            out += chunk
            if not chunk:
                break
    assert [r.status for r in parse_responses(out)] == [408], out
    log = srv.wait_for_log("--body-timeout", since=since)
    assert "ended with http.disconnect" in srv.wait_for_log("ended with", since=since), log


@pytest.mark.parametrize("framing", [b"Content-Length: 1000\r\n\r\n",
                                     b"Transfer-Encoding: chunked\r\n\r\n3e8\r\n"],
                         ids=["content-length", "chunked"])
def test_a_body_byte_then_silence_is_cut_at_the_body_timeout(srv, framing: bytes) -> None:
    """One body byte, then nothing: the next byte would come long after --body-timeout
    (2 s here). The client only waits for the server's answer and close."""
    since = srv.log_size()
    with connect(srv) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\n" + framing + b"x")
        out = read_until_closed(sock, 30, reset=True)
    assert [r.status for r in parse_responses(out)] == [408], out
    log = srv.wait_for_log("--body-timeout 2.0s", since=since)
    assert re.search(r"too slow: [01] bytes in 2\.0s", log), log
    srv.wait_for_log("upload of 1 bytes ended with http.disconnect", since=since)


def test_a_body_above_the_minimum_rate_is_not_cut(srv) -> None:
    with connect(srv) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n"
                     b"Connection: close\r\n\r\n")
        for _ in range(30):  # 1000 bytes/s for 3 s: over two --body-timeout windows
            sock.sendall(b"x" * 100)
            time.sleep(0.1)
        out = read_until_closed(sock, reset=True)
    assert [(r.status, r.body) for r in parse_responses(out)] == [(200, b"3000")]


# -- item 7: --send-timeout ------------------------------------------------------------------

def _never_read(server: Server, request: bytes, text: str) -> str:
    since = server.log_size()
    with connect(server) as sock:
        # A small receive buffer: the server's side fills sooner.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request)
        log = server.wait_for_log("--send-timeout", timeout=30, since=since)
        assert "took no response bytes" in log
        return server.wait_for_log(text, timeout=10, since=since)


def test_a_client_that_never_reads_a_stream_is_aborted(srv) -> None:
    _never_read(srv, b"GET /stream-forever HTTP/1.1\r\nHost: x\r\n\r\n",
                "APP: stream stopped: CancelledError")


def test_a_client_that_never_reads_a_file_is_aborted(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    with path.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: sendfile still has to push 64 MB
    with run_server(APP, *APP_DIR, "--send-timeout", "2",
                    env={"OCTO_TEST_FILE": str(path)}) as server:
        _never_read(server, b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n", "--send-timeout")
        with connect(server) as probe:  # the worker goes on serving
            probe.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert parse_responses(read_until_closed(probe, reset=True))[0].body == b"hello"
        assert "Traceback" not in server.log()


# -- item 8 ----------------------------------------------------------------------------------

def test_five_thousand_pipelined_gets_in_one_write_are_all_answered(srv) -> None:
    # About 1 MB in one write: the server reads it in reads of far more than 64 KiB that
    # start and end inside heads (it pauses reading while the answers queue up).
    request = (b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: pipelining-test/1.0\r\n"
               b"Accept: text/plain, */*\r\nX-Padding: " + b"p" * 100 + b"\r\n\r\n")
    count = 5_000
    with connect(srv, timeout=60) as sock:
        sender = threading.Thread(target=sock.sendall, args=(request * count,), daemon=True)
        sender.start()
        out = bytearray()
        answered = 0
        while answered < count:
            chunk = sock.recv(1 << 20)
            assert chunk, f"closed after {answered} answers: {bytes(out[-300:])!r}"
            out += chunk
            answered = out.count(b"HTTP/1.1 ")
        sender.join(60)
    assert out.count(b"HTTP/1.1 200 OK") == count
    assert b"HTTP/1.1 431" not in out


def test_no_worker_restarts_or_tracebacks(srv) -> None:
    """Run last in this module: nothing above may have crashed or hung the worker."""
    log = srv.log()
    assert "Traceback" not in log and "died unexpectedly" not in log, log
