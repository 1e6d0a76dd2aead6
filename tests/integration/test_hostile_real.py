"""Hostile clients against a real ``octo serve`` over real sockets: trailers, half-closes,
undecodable paths, log injection, the field/chunk-line limits, slow bodies, clients that
never read, and long pipelines."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest
from harness import parse_responses
from server import ROOT, Server, run_server

APP = "apps.serving:app"
APP_DIR = ("--app-dir", str(ROOT / "tests"))
CHUNKED_UPLOAD = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.fixture(scope="module")
def srv():
    with run_server(APP, *APP_DIR, "--limit-request-field-size", "1000",
                    "--limit-chunk-extension", "100", "--body-timeout", "2",
                    "--body-min-rate", "100", "--send-timeout", "2") as server:
        yield server


def connect(server: Server, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=timeout)


def read_until_closed(sock: socket.socket, limit: float = 10.0) -> bytes:
    """Everything until the server closes; fails the test if it does not within *limit*."""
    sock.settimeout(limit)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"connection still open after {limit}s; got "
                                 f"{out[:300]!r}") from None
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def exchange(server: Server, data: bytes, half_close: bool = False) -> bytes:
    with connect(server) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock)


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


# -- item 4 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
    CHUNKED_UPLOAD + b"5\r\nhel",
    CHUNKED_UPLOAD + b"5\r\nhello\r\n",
], ids=["content-length", "chunk-data", "chunk-boundary"])
def test_a_half_close_inside_a_body_is_a_disconnect(srv, data: bytes) -> None:
    since = srv.log_size()
    assert exchange(srv, data, half_close=True) == b""
    srv.wait_for_log("ended with http.disconnect", since=since)


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


def test_a_body_above_the_minimum_rate_is_not_cut(srv) -> None:
    with connect(srv) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n"
                     b"Connection: close\r\n\r\n")
        for _ in range(30):  # 1000 bytes/s for 3 s: over two --body-timeout windows
            sock.sendall(b"x" * 100)
            time.sleep(0.1)
        out = read_until_closed(sock)
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
                "APP: stream stopped: ClientDisconnected")


def test_a_client_that_never_reads_a_file_is_aborted(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    with path.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: sendfile still has to push 64 MB
    with run_server(APP, *APP_DIR, "--send-timeout", "2",
                    env={"OCTO_TEST_FILE": str(path)}) as server:
        _never_read(server, b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n", "--send-timeout")
        with connect(server) as probe:  # the worker goes on serving
            probe.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert parse_responses(read_until_closed(probe))[0].body == b"hello"
        assert "Traceback" not in server.log()


# -- item 8 ----------------------------------------------------------------------------------

def test_twenty_thousand_pipelined_gets_are_all_answered(srv) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    count = 20_000
    with connect(srv, timeout=30) as sock:
        sender = threading.Thread(target=sock.sendall, args=(request * count,), daemon=True)
        sender.start()
        out = bytearray()
        answered = 0
        while answered < count:
            chunk = sock.recv(1 << 20)
            assert chunk, f"closed after {answered} answers: {bytes(out[-300:])!r}"
            out += chunk
            answered = out.count(b"HTTP/1.1 ")
        sender.join(10)
    assert out.count(b"HTTP/1.1 200 OK") == count
    assert b"431" not in out.split(b"\r\n", 1)[0]


def test_no_worker_restarts_or_tracebacks(srv) -> None:
    """Run last in this module: nothing above may have crashed or hung the worker."""
    log = srv.log()
    assert "Traceback" not in log and "died unexpectedly" not in log, log
