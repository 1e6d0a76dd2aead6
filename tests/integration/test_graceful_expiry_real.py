"""A stop whose --graceful-timeout runs out, against a real ``octo serve`` (issue 14, item
12): a request held by the app past the grace gets a 503 with ``Connection: close`` and a
log line, not a bare close; a response already streaming is cut."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from harness import parse_responses
from server import ROOT, Server, read_until_closed, run_server

APP = ("apps.serving:app", "--app-dir", str(ROOT / "tests"), "--graceful-timeout", "1")



def hold(server: Server, sock: socket.socket, request: bytes) -> None:
    """Send *request* and wait until the app holds it (its log line)."""
    since = server.log_size()
    sock.sendall(request)
    server.wait_for_log("APP: holding", timeout=30, since=since)


def test_a_request_held_past_the_graceful_timeout_gets_503(tmp_path: Path) -> None:
    never = tmp_path / "never"  # the release marker is never made
    with run_server(*APP) as server:
        with socket.create_connection((server.host, server.port), timeout=30) as sock:
            hold(server, sock, b"GET /hold?%s HTTP/1.1\r\nHost: x\r\n\r\n" % bytes(never)
                 + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a second one, never started
            server.process.send_signal(signal.SIGTERM)
            out = read_until_closed(sock, 30)
        assert server.process.wait(30) == 0
        log = server.log()
    [reply] = parse_responses(out)
    assert reply.status == 503, out
    assert reply.header(b"connection") == b"close"
    assert "GET /hold from 127.0.0.1:" in log
    assert "not answered when --graceful-timeout 1.0s ran out: answering 503" in log


def test_a_response_already_streaming_is_cut_not_answered_twice() -> None:
    with run_server(*APP) as server:
        with socket.create_connection((server.host, server.port), timeout=30) as sock:
            sock.sendall(b"GET /stream-until-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(30)
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 "), first
            server.process.send_signal(signal.SIGTERM)
            rest = b""
            while chunk := sock.recv(65536):  # the app streams until it is cut
                rest += chunk
        assert server.process.wait(30) == 0
        log = server.log()
    assert b"HTTP/1.1 503" not in first + rest
    assert "not answered when" not in log
    assert "graceful timeout: 1 connections still open" in log


def test_the_503_log_line_escapes_the_path(tmp_path: Path) -> None:
    never = tmp_path / "never"
    forged = b"%0d%0a2026-01-01%2000:00:00,000%20[1]%20ERROR%20forged%e2%80%a8x"
    with run_server(*APP) as server:
        with socket.create_connection((server.host, server.port), timeout=30) as sock:
            hold(server, sock, b"GET /hold" + forged + b"?%s HTTP/1.1\r\nHost: x\r\n\r\n"
                 % bytes(never))
            server.process.send_signal(signal.SIGTERM)
            assert parse_responses(read_until_closed(sock, 30))[0].status == 503
        assert server.process.wait(30) == 0
        log = server.log()
    assert "GET /hold\\x0d\\x0a2026-01-01 00:00:00,000 [1] ERROR forged\\u2028x from" in log
    assert not any(line.startswith("2026-01-01") for line in log.splitlines()), log
