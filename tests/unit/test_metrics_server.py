"""The --metrics listener in memory: real loopback sockets, driven pass by pass as the
master's loop drives it, with a fake arbiter behind it."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from octo.config import Config
from octo.master import metrics
from octo.master.metrics import MAX_CONNECTIONS, MAX_REQUEST, MetricsServer


class Source:
    ready = True

    def metrics_text(self) -> str:
        return "# TYPE octo_up gauge\nocto_up 1\n"

    def livez(self) -> tuple[bool, str]:
        return True, "live"

    def readyz(self) -> tuple[bool, str]:
        return self.ready, "ready" if self.ready else "not ready: draining"


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    srv = MetricsServer(Config(metrics="127.0.0.1:0"), Source())
    try:
        yield srv
    finally:
        srv.close()


def drive(srv: MetricsServer, seconds: float = 0.2, now: float | None = None) -> None:
    """Passes of the master's loop for *seconds* (poll, then handle)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        poller = select.poll()
        for sock in srv.readers():
            poller.register(sock, select.POLLIN)
        for sock in srv.writers():
            poller.register(sock, select.POLLOUT)
        events = poller.poll(20)
        srv.handle({fd for fd, m in events if m & (select.POLLIN | select.POLLHUP)},
                   {fd for fd, m in events if m & select.POLLOUT}, now)


def connect(srv: MetricsServer) -> socket.socket:
    sock = socket.create_connection(srv.sock.getsockname()[:2], timeout=10)
    return sock


def ask(srv: MetricsServer, request: bytes) -> bytes:
    sock = connect(srv)
    with sock:
        sock.sendall(request)
        return read_all(srv, sock)


def read_all(srv: MetricsServer, sock: socket.socket) -> bytes:
    sock.setblocking(False)
    out = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        drive(srv, 0.05)
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            continue
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"no end of the answer: {out!r}")


def test_routes(server: MetricsServer) -> None:
    reply = ask(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n") and reply.endswith(b"octo_up 1\n")
    assert b"text/plain; version=0.0.4" in reply and b"Connection: close" in reply
    assert ask(server, b"GET /livez HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")
    server.source.ready = False  # type: ignore[attr-defined]
    reply = ask(server, b"GET /readyz?verbose HTTP/1.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 503") and reply.endswith(b"draining\n")
    assert ask(server, b"GET /nope HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 404")
    assert ask(server, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 405")
    assert ask(server, b"garbage\r\n\r\n").startswith(b"HTTP/1.0 400")
    head = ask(server, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert head.endswith(b"\r\n\r\n") and b"octo_up" not in head


def test_a_huge_request_gets_431_and_is_closed(server: MetricsServer) -> None:
    sock = connect(server)
    with sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (2 * MAX_REQUEST))
        assert read_all(server, sock).startswith(b"HTTP/1.0 431")
    assert not server.exchanges


def test_a_silent_client_is_closed_at_the_deadline(server: MetricsServer) -> None:
    sock = connect(server)
    with sock:
        drive(server, 0.1)
        assert len(server.exchanges) == 1
        drive(server, 0.05, now=time.monotonic() + metrics.EXCHANGE_TIMEOUT + 1)
        assert not server.exchanges
        sock.settimeout(10)
        assert sock.recv(10) == b""  # closed, unanswered


def test_a_half_closed_client_still_gets_its_answer(server: MetricsServer) -> None:
    sock = connect(server)
    with sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(server, sock).startswith(b"HTTP/1.0 200")


def test_a_flood_of_idle_connections_leaves_room_for_a_scrape(server: MetricsServer) -> None:
    idle = [connect(server) for _ in range(MAX_CONNECTIONS + 8)]
    try:
        drive(server, 0.3)
        assert len(server.exchanges) <= MAX_CONNECTIONS
        reply = ask(server, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert reply.startswith(b"HTTP/1.0 200")
    finally:
        for sock in idle:
            sock.close()
