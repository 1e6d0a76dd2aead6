"""The ``--metrics HOST:PORT`` listener: ``/metrics``, ``/livez``, ``/readyz`` and ``/``.

Served by the master from its own loop, not a thread: the master forks workers, and a
thread that holds a lock (the logging module's, the allocator's) at the instant of a fork
leaves that lock held forever in the child. A thread would also read the supervision state
(the workers, their slots) while the loop changes it. The loop already wakes on the control
socket; the metrics sockets join it, all non-blocking, and each pass does a bounded amount of
work for them, so a client cannot hold up supervision:

* a request head is at most :data:`MAX_REQUEST` bytes (431 beyond it, then close);
* a connection gets :data:`EXCHANGE_TIMEOUT` seconds for its whole exchange, request and
  response, then is closed (a client that sends nothing, or stops reading);
* at most :data:`MAX_CONNECTIONS` are open; one more closes the oldest (which, under a flood
  of idle connections, is one of them, so a real scrape or probe still gets in);
* a connection is answered once and closed (HTTP/1.0 style, ``Connection: close``): a
  half-closed client still gets its answer, and nothing is kept between requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import socket
import time
from typing import Protocol

from octo.config import Config
from octo.logs import error_log
from octo.master.dashboard import PAGE, POLICY

MAX_REQUEST = 8192  # bytes of request head
EXCHANGE_TIMEOUT = 5.0  # seconds a connection may take for its request and our answer
MAX_CONNECTIONS = 32
ACCEPT_PER_PASS = 16
READ_SIZE = 4096
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 431: "Request Header Fields Too Large",
           503: "Service Unavailable"}
TEXT = "text/plain; charset=utf-8"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
HTML = "text/html; charset=utf-8"
JSON = "application/json"


class MetricsSource(Protocol):
    """What the listener asks the arbiter."""

    def metrics_text(self) -> str: ...
    def dashboard_json(self) -> str: ...
    def livez(self) -> tuple[bool, str]: ...
    def readyz(self) -> tuple[bool, str]: ...


@dataclasses.dataclass(slots=True)
class Exchange:
    """One metrics connection: what it sent so far, what is left to send to it."""

    sock: socket.socket
    deadline: float
    received: bytes = b""
    out: bytes = b""
    answered: bool = False


class MetricsServer:
    """The listener and its open connections; the arbiter's loop drives it."""

    def __init__(self, config: Config, source: MetricsSource) -> None:
        self.source = source
        spec = config.metrics
        host, port = config.metrics_address()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise SystemExit(f"octo: cannot bind --metrics {spec}: {exc.strerror}") from None
        sock.setblocking(False)
        self.sock = sock
        self.exchanges: dict[int, Exchange] = {}
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        error_log.info("metrics on %s/metrics (and /livez, /readyz, a dashboard at /)",
                       self.url)

    # -- what the loop waits on ----------------------------------------------------------

    def readers(self) -> list[socket.socket]:
        return [self.sock, *(ex.sock for ex in self.exchanges.values() if not ex.answered)]

    def writers(self) -> list[socket.socket]:
        return [ex.sock for ex in self.exchanges.values() if ex.out]

    def next_deadline(self) -> float:
        """When the loop must look again (to close a connection that is too slow), inf if
        none is open."""
        return min((ex.deadline for ex in self.exchanges.values()), default=float("inf"))

    def handle(self, readable: set[int], writable: set[int], now: float | None = None) -> None:
        """Serve what the loop found ready (file descriptors), then expire the slow."""
        now = time.monotonic() if now is None else now
        if self.sock.fileno() in readable:
            self._accept(now)
        for fd, exchange in list(self.exchanges.items()):
            if fd in readable and not exchange.answered:
                self._read(exchange)
            if fd in writable and exchange.out:
                self._write(exchange)
        self.expire(now)

    def expire(self, now: float) -> None:
        for exchange in list(self.exchanges.values()):
            if now >= exchange.deadline:
                error_log.debug("metrics: closing a connection that did not finish within "
                                "%.0f s", EXCHANGE_TIMEOUT)
                self._close(exchange)

    # -- one connection ----------------------------------------------------------------------

    def _accept(self, now: float) -> None:
        for _ in range(ACCEPT_PER_PASS):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: try again next pass
                error_log.warning("metrics: accept failed: %s", exc)
                return
            conn.setblocking(False)
            if len(self.exchanges) >= MAX_CONNECTIONS:
                oldest = min(self.exchanges.values(), key=lambda ex: ex.deadline)
                self._close(oldest)
            self.exchanges[conn.fileno()] = Exchange(conn, now + EXCHANGE_TIMEOUT)

    def _read(self, exchange: Exchange) -> None:
        try:
            data = exchange.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(exchange)
            return
        if not data:  # closed (or half-closed) before a whole request: nothing to answer
            self._close(exchange)
            return
        exchange.received += data
        head_end = exchange.received.find(b"\r\n\r\n")
        if head_end < 0:
            head_end = exchange.received.find(b"\n\n")
        if head_end < 0:
            if len(exchange.received) > MAX_REQUEST:
                self._answer(exchange, 431, TEXT, "request head too large\n", False)
            return
        if head_end > MAX_REQUEST:
            self._answer(exchange, 431, TEXT, "request head too large\n", False)
            return
        self._respond(exchange, exchange.received[:head_end])

    def _respond(self, exchange: Exchange, head: bytes) -> None:
        line = head.split(b"\n", 1)[0].strip()
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._answer(exchange, 400, TEXT, "bad request\n", False)
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            self._answer(exchange, 405, TEXT, "only GET and HEAD\n", False)
            return
        status, kind, body = self.route(target)
        self._answer(exchange, status, kind, body, method == b"HEAD")

    def route(self, target: bytes) -> tuple[int, str, str]:
        """(status, content type, body) for a GET of *target*."""
        if target == b"/metrics":
            return 200, PROMETHEUS, self.source.metrics_text()
        if target in (b"/livez", b"/readyz"):
            ok, why = self.source.livez() if target == b"/livez" else self.source.readyz()
            return (200 if ok else 503), TEXT, why + "\n"
        if target == b"/":
            return 200, HTML, PAGE
        if target == b"/dashboard.json":
            return 200, JSON, self.source.dashboard_json()
        return 404, TEXT, "not found: try /, /metrics, /livez or /readyz\n"

    def _answer(self, exchange: Exchange, status: int, kind: str, body: str,
                head_only: bool) -> None:
        data = body.encode()
        head = (f"HTTP/1.0 {status} {REASONS.get(status, 'Unknown')}\r\n"
                f"Content-Type: {kind}\r\nContent-Length: {len(data)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n"
                f"X-Content-Type-Options: nosniff\r\nContent-Security-Policy: {POLICY}\r\n"
                "\r\n").encode()
        exchange.answered = True
        exchange.out = head if head_only else head + data
        self._write(exchange)

    def _write(self, exchange: Exchange) -> None:
        try:
            sent = exchange.sock.send(exchange.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                error_log.debug("metrics: send failed: %s", exc)
            self._close(exchange)
            return
        exchange.out = exchange.out[sent:]
        if not exchange.out:
            with contextlib.suppress(OSError):
                exchange.sock.shutdown(socket.SHUT_WR)
            self._close(exchange)

    def _close(self, exchange: Exchange) -> None:
        self.exchanges.pop(exchange.sock.fileno(), None)
        exchange.sock.close()

    def close(self) -> None:
        """At the master's exit, and in a forked worker (which must not hold them)."""
        for exchange in list(self.exchanges.values()):
            self._close(exchange)
        self.sock.close()
