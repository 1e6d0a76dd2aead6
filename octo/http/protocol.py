"""asyncio glue for HTTP/1.1: feeds httptools, admits requests, and runs their cycles."""

from __future__ import annotations

import asyncio
import errno
import os
import sys
from bisect import bisect_left
from collections import deque
from typing import Any
from urllib.parse import unquote

import httptools

from octo.config import TrustedProxies
from octo.http import validate
from octo.http.cycle import ASGIApp, ClientDisconnected, RequestCycle, Scope
from octo.http.flow import WriteFlow
from octo.http.response import error_body, simple_response
from octo.http.states import TRANSITIONS, Conn, Event, next_state
from octo.http.validate import RequestError
from octo.logs import access_log, error_log, format_access
from octo.stats import BOUNDS, RequestStats, clock, request_start_age

HIGH_WATER = 64 * 1024
SHUTDOWN_IDLE_GRACE = 1.0  # seconds an idle connection may linger once the server stops
_VERSIONS = (b" HTTP/1.1\r\n", b" HTTP/1.0\r\n")
EAGER = sys.version_info >= (3, 12)  # Task(eager_start=True): no loop round trip per request
ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
PATHSEND: dict[str, Any] = {"http.response.pathsend": {}}
TASK_NAME = "octo-request"


class ServerState:
    """What every connection of one worker shares: config-derived values and live counters."""

    def __init__(self, config: Any, app: ASGIApp, loop: asyncio.AbstractEventLoop,
                 lifespan_state: dict[str, Any] | None = None) -> None:
        self.config = config
        self.app = app
        self.loop = loop
        self.lifespan_state = lifespan_state
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.requests = 0
        self.stats = RequestStats()  # for --metrics: read by the worker's heartbeat
        self.stopping = False
        self.server_header = config.server_header
        self.root_path = config.root_path
        self.trusted = config.trusted_proxies() if config.proxy_headers else None
        self.limit_concurrency = config.limit_concurrency
        self.limit_line = config.limit_request_line
        self.limit_fields = config.limit_request_fields
        self.limit_head = config.limit_request_head
        self.limit_body = config.limit_request_body
        self.keep_alive_timeout = config.timeout_keep_alive
        self.header_timeout = config.header_timeout
        self.scheme = "https" if config.is_ssl else "http"
        self.upgrade_handler: Any = None  # set by the WebSocket layer
        self.websockets: set[Any] = set()  # upgraded connections (for shutdown)
        self.access_log = access_log.isEnabledFor(20)
        self.on_connections: Any = None  # called with the open-connection count on changes
        # Deadlines use this coarse clock, refreshed by the worker tick: one fewer call per
        # request, and deadlines only need to be right to within a tick.
        self.now = loop.time()


class HttpProtocol(asyncio.Protocol):
    """One client connection. State changes go through ``states.TRANSITIONS``."""

    __slots__ = (
        "server", "loop", "parser", "transport", "state", "deadline", "client", "sockname",
        "scheme", "trusted_peer", "url", "headers", "head_size", "line", "line_pending",
        "cycle", "reading", "queue", "to_start", "deferred_error", "read_paused",
        "flow", "eof", "raw_head", "body_received", "in_message",
        "in_head", "completed",
    )

    def __init__(self, server: ServerState) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.state = Conn.IDLE
        self.deadline = 0.0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = self.raw_head = self.body_received = 0
        self.line = b""
        self.line_pending = False
        self.cycle: RequestCycle | None = None  # the request whose app is running
        self.reading: RequestCycle | None = None  # the request whose body is arriving
        self.queue: deque[RequestCycle] = deque()  # pipelined requests, in order
        self.to_start: RequestCycle | None = None
        self.deferred_error: RequestError | None = None
        self.read_paused = self.eof = False
        # Where the parser is, independent of the connection state: a read can end in the
        # middle of the next pipelined request while the previous one is still answered.
        self.in_message = self.in_head = False
        self.completed = 0  # messages parsed so far
        self.flow = WriteFlow(self.loop)

    # -- transport callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        server = self.server
        server.connections.add(self)
        if server.on_connections is not None:
            server.on_connections(len(server.connections))
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.sockname = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        self.scheme = server.scheme
        trusted = server.trusted
        self.trusted_peer = trusted is not None and trusted.trusts(
            self.client[0] if self.client else None)
        self.deadline = server.now + server.keep_alive_timeout
        if server.stopping:
            self._transition(Event.SHUTDOWN)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = next_state(self.state, Event.LOST)
        server = self.server
        server.connections.discard(self)
        if server.on_connections is not None and not server.stopping:
            server.on_connections(len(server.connections))
        for cycle in (self.cycle, self.reading, *self.queue):
            if cycle is not None:
                cycle.lose()
        self.queue.clear()
        self.flow.wake()

    def eof_received(self) -> bool | None:
        # A client may half-close after its request; keep the socket to write the answer.
        if self.cycle is not None:
            self.eof = True
            return True
        return None

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    @property
    def write_paused(self) -> bool:
        return self.flow.paused

    async def drain(self) -> None:
        if self.state is not Conn.CLOSED:
            await self.flow.wait()

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is Conn.IDLE:
            self.state = TRANSITIONS[state, Event.BYTES]
            self.deadline = self.server.now + self.server.header_timeout
        elif state is Conn.CLOSED or state is Conn.UPGRADED:
            return
        if not self.in_message and not self.line_pending:
            # The read starts at a request boundary. Common case first: a whole,
            # well-spaced request line.
            end = data.find(b"\n")
            if not (end > 0 and data.count(b" ", 0, end) == 2
                    and data.startswith(_VERSIONS, end - 10, end + 1)):
                self.line = b""
                self.line_pending = True
        if self.line_pending:
            self._check_line(data)
            if self.state is Conn.CLOSED:
                return
        head_before = self.in_head
        completed = self.completed
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_upgrade(data[exc.args[0]:] if exc.args else b"")
        except RequestError as exc:
            self.reject(exc)
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, RequestError):
                self.reject(cause)
            else:
                self.reject(RequestError(400, f"invalid HTTP: {exc}"))
        else:
            if self.in_head and (head_before or completed == self.completed):
                # httptools buffers a partial header itself: bound it by raw bytes. This
                # read was all head unless an earlier request ended inside it (then the
                # head's share is unknown, but bounded by the read size).
                self.raw_head += len(data)
                if self.raw_head > self.server.limit_head:
                    self.reject(RequestError(431, "request head exceeds --limit-request-head"))
        start = self.to_start
        if start is not None:
            self.to_start = None
            if self.state is not Conn.CLOSED:
                self._run(start)

    def _check_line(self, data: bytes) -> None:
        """Validate the raw request line (llhttp tolerates extra spaces); see validate."""
        line = self.line + data if self.line else data
        stripped = line.lstrip(b"\r\n")
        end = stripped.find(b"\n")
        if end == -1:
            self.line = line
            # Only a memory guard: on_url enforces the exact target limit.
            if len(stripped) > self.server.limit_line + 64:
                raise_later = RequestError(414, "request line exceeds --limit-request-line")
                self.line_pending = False
                self.reject(raise_later)
            return
        self.line_pending = False
        self.line = b""
        try:
            validate.check_request_line(stripped[:end + 1])
        except RequestError as exc:
            self.reject(exc)

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_size = self.raw_head = 0
        self.in_message = self.in_head = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if len(self.url) > self.server.limit_line:
            raise RequestError(414, "request target exceeds --limit-request-line")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        headers.append((name.lower(), value.rstrip(b" \t")))  # trailing OWS is not the value
        self.head_size += len(name) + len(value) + 4
        if len(headers) > self.server.limit_fields:
            raise RequestError(431, "more header fields than --limit-request-fields")
        if self.head_size > self.server.limit_head:
            raise RequestError(431, "request head exceeds --limit-request-head")

    def on_headers_complete(self) -> None:
        server = self.server
        parser = self.parser
        version = parser.get_http_version()
        method = parser.get_method()
        url = self.url
        self.in_head = False
        if self.head_size > server.limit_head:
            raise RequestError(431, "request head exceeds --limit-request-head")
        if version != "1.1":
            validate.check_version(version)
        if method == b"CONNECT":
            raise RequestError(501, "CONNECT is not supported")
        if url[:1] != b"/":
            validate.check_target(method, url)
        facts = validate.inspect_headers(self.headers, version == "1.1")
        length = facts.content_length
        if length is not None and length > server.limit_body:
            raise RequestError(413, f"Content-Length {length} exceeds --limit-request-body")
        if self.state is Conn.CLOSED:
            return  # the request line was rejected already
        scope = self._scope(method.decode("ascii"), version, url)
        if facts.forwarded and self.trusted_peer:
            _apply_proxy_headers(scope, self.headers, server.trusted)
        more_body = facts.chunked or bool(length)
        cycle = RequestCycle(self, scope, facts.keep_alive, facts.expect_continue, more_body,
                             method == b"HEAD")
        self.reading = cycle
        self.body_received = 0
        if facts.request_start is not None and self.trusted_peer:
            cycle.request_start = facts.request_start
        server.requests += 1
        self.state = TRANSITIONS[self.state, Event.HEAD_DONE]
        if facts.upgrade is not None and server.upgrade_handler is not None:
            scope["octo.upgrade"] = facts.upgrade
        if self.cycle is None and self.to_start is None:
            self.to_start = cycle
        else:
            cycle.began = clock()  # it waits for the requests before it: see _run
            self.queue.append(cycle)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.reading
        if cycle is None:
            return
        if cycle.body_size + len(body) > HIGH_WATER:
            self._pause_reading()
        cycle.feed(body)
        # Chunked bodies have no declared length: count what arrives against the limit.
        self.body_received += len(body)
        if self.body_received > self.server.limit_body:
            raise RequestError(413, "request body exceeds --limit-request-body")

    def on_message_complete(self) -> None:
        self.in_message = False
        self.completed += 1
        cycle = self.reading
        if cycle is not None:
            self.reading = None
            cycle.end_of_body()

    # -- scope ------------------------------------------------------------------------------

    def _scope(self, method: str, version: str, url: bytes) -> Scope:
        server = self.server
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
            raw_path, _, _ = raw_path.partition(b"#")
        else:
            parsed = httptools.parse_url(url)
            raw_path = parsed.path or b"/"
            query = parsed.query or b""
        path = raw_path.decode("latin-1")
        if b"%" in raw_path:
            path = unquote(path, encoding="utf-8", errors="surrogateescape")
        scope: Scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": version,
            "server": self.sockname,
            "client": self.client,
            "scheme": self.scheme,
            "method": method,
            "root_path": server.root_path,
            "path": server.root_path + path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
            "extensions": PATHSEND,
        }
        if server.lifespan_state is not None:
            scope["state"] = server.lifespan_state.copy()
        return scope

    # -- running requests -------------------------------------------------------------------

    def _run(self, cycle: RequestCycle) -> None:
        server = self.server
        self.cycle = cycle
        limit = server.limit_concurrency
        app = server.app
        if limit is not None and (server.in_flight >= limit or len(server.connections) > limit):
            error_log.warning("--limit-concurrency %d reached: answering 503", limit)
            cycle.keep_alive = False
            app = _service_unavailable
        # For --metrics: the queue wait, from the request's head being parsed to the app
        # call. Most requests start in the read that completed their head (no wait, and no
        # clock read for it); a pipelined one waits for those before it on the connection.
        now = clock()
        stats = server.stats
        waits = stats.wait
        began = cycle.began
        if began:
            waits.counts[bisect_left(BOUNDS, now - began)] += 1
            waits.total += now - began
        else:
            waits.counts[0] += 1
            cycle.began = now
        if cycle.request_start is not None:
            _proxy_wait(stats, cycle.request_start)
        if not server.in_flight:
            stats.busy_since = now
        server.in_flight += 1
        cycle.started_at = server.now
        # A fixed name: the default one is formatted per task ("Task-123"). No done
        # callback either (one more loop round per request): the cycle's ``run`` drops the
        # task from ``server.tasks`` itself, see ``app_done``.
        if EAGER:
            task = asyncio.Task(cycle.run(app), loop=self.loop, name=TASK_NAME,  # type: ignore[call-arg]
                                eager_start=True)
        else:
            task = asyncio.Task(cycle.run(app), loop=self.loop, name=TASK_NAME)
        if not task.done():
            cycle.task = task
            server.tasks.add(task)

    def want_body(self) -> None:
        self._resume_reading()

    def body_consumed(self) -> None:
        if self.read_paused and not self.queue:
            self._resume_reading()

    def app_done(self, cycle: RequestCycle) -> None:
        server = self.server
        server.in_flight -= 1
        now = clock()
        stats = server.stats
        if not server.in_flight:
            stats.busy += now - stats.busy_since
        duration = now - cycle.began
        durations = stats.duration
        durations.counts[bisect_left(BOUNDS, duration)] += 1
        durations.total += duration
        status = cycle.status  # 0: the client left before a response started
        stats.status[status // 100 if 100 <= status < 600 else 0] += 1
        if cycle.task is not None:
            server.tasks.discard(cycle.task)
        if cycle is self.cycle and cycle.complete is False and self.state is not Conn.CLOSED:
            self.transport.close()

    def response_done(self, cycle: RequestCycle) -> None:
        """The last byte of *cycle*'s response is written: reuse or close the connection."""
        if self.server.access_log:
            self._log_access(cycle)
        keep = (cycle.keep_alive and not self.eof and cycle.more_body is False
                and self.deferred_error is None)
        if self.state is Conn.CLOSED:
            return
        if not keep:
            if self.deferred_error is not None and cycle.keep_alive:
                self._write_error(self.deferred_error)
            self._transition(Event.LAST_RESPONSE)
            self.cycle = None
            self.transport.close()
            return
        self.state = TRANSITIONS[self.state, Event.KEEP_ALIVE]
        self.cycle = None
        if self.queue:
            self.state = Conn.ACTIVE
            self.loop.call_soon(self._start_next)
        elif self.in_message:
            # The next request's head already started arriving in an earlier read.
            self.state = TRANSITIONS[self.state, Event.BYTES]
            self.deadline = self.server.now + self.server.header_timeout
            if self.read_paused:
                self._resume_reading()
        else:
            self.deadline = self.server.now + self.server.keep_alive_timeout
            if self.read_paused:
                self._resume_reading()

    def _start_next(self) -> None:
        if self.queue and self.state is not Conn.CLOSED and self.cycle is None:
            self._run(self.queue.popleft())
            if not self.queue:
                self._resume_reading()

    def _log_access(self, cycle: RequestCycle) -> None:
        scope = cycle.scope
        client = scope["client"]
        who = f"{client[0]}:{client[1]}" if client else "-"
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        access_log.info(format_access(who, scope["method"], target, scope["http_version"],
                                      cycle.status))

    # -- errors -----------------------------------------------------------------------------

    def reject(self, exc: RequestError) -> None:
        """Answer a bad or over-limit request with its status, then close."""
        level = 30 if exc.status in (413, 414, 431, 503) else 20
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        error_log.log(level, "%d from %s: %s", exc.status, client, exc.reason)
        self.line_pending = False
        if self.state is Conn.CLOSED:
            return
        pending = self.to_start
        self.to_start = None
        if pending is not None and pending is not self.reading:
            self._run(pending)  # a complete earlier request in the same read is still answered
            if self.closed():
                return
        active = self.cycle
        if active is not None and not active.complete and self.reading is not active:
            # An earlier request is still being answered: finish it, then send the error.
            self.deferred_error = exc
            self._pause_reading()
            self.queue.clear()
            return
        if active is not None and active.started:
            active.lose()
        elif active is not None:
            active.lose()
            self._write_error(exc)
        else:
            self._write_error(exc)
        self.state = next_state(self.state, Event.REJECT)
        self.transport.close()

    def _write_error(self, exc: RequestError) -> None:
        self.server.stats.count_status(exc.status)  # answered by the server, not the app
        self.transport.write(simple_response(exc.status, error_body(exc.status)))

    def send_error(self, cycle: RequestCycle, status: int) -> None:
        """The server answers for the app (500 after an exception, 503 when cancelled)."""
        cycle.started = True
        cycle.status = status
        cycle.keep_alive = False
        cycle.headers = [(b"content-type", b"text/plain; charset=utf-8")]
        cycle._write_body(error_body(status), False)
        cycle._finish()

    def abort(self, cycle: RequestCycle) -> None:
        cycle.flush()  # what the app sent before it failed still goes out before the close
        cycle.lose()
        if self.state is not Conn.CLOSED:
            self.state = next_state(self.state, Event.REJECT)
            self.transport.close()

    def _on_upgrade(self, data: bytes) -> None:
        handler = self.server.upgrade_handler
        cycle = self.to_start
        if handler is None or cycle is None or cycle.scope.get("octo.upgrade") != b"websocket":
            # No WebSocket layer: serve the request as plain HTTP, then close.
            if cycle is not None:
                cycle.keep_alive = False
            return
        self.to_start = None
        self.reading = None
        self._transition(Event.UPGRADE)
        handler(self, cycle.scope, data)

    # -- flow control and lifecycle -----------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.state is not Conn.CLOSED:
            self.read_paused = False
            self.transport.resume_reading()

    def _transition(self, event: Event) -> None:
        self.state = next_state(self.state, event)

    def closed(self) -> bool:
        return self.state is Conn.CLOSED

    def tick(self, now: float) -> None:
        """Called about twice a second by the worker clock: enforce the two deadlines."""
        state = self.state
        if state is Conn.HEAD and now > self.deadline:
            error_log.warning("header read deadline (--header-timeout %ss) passed for %s; "
                              "closing", self.server.header_timeout, self.client)
            self._transition(Event.TIMEOUT)
            self.server.stats.count_status(408)
            self.transport.write(simple_response(408, error_body(408)))
            self.transport.close()
        elif state is Conn.IDLE and (now > self.deadline or (
                self.server.stopping and self._idle_for(now) >= SHUTDOWN_IDLE_GRACE)):
            error_log.debug("closing idle connection from %s", self.client)
            self._transition(Event.TIMEOUT)
            self.transport.close()

    def _idle_for(self, now: float) -> float:
        return now - (self.deadline - float(self.server.keep_alive_timeout))

    def shutdown(self) -> None:
        """Server is stopping: close idle connections, finish the active response first."""
        if self.state is Conn.CLOSED or self.state is Conn.UPGRADED:
            return
        if self.state is Conn.IDLE and self._idle_for(self.server.now) < SHUTDOWN_IDLE_GRACE:
            # A busy keep-alive client may have a request on the wire right now; closing
            # would reset it. Its next response says "connection: close" instead, and the
            # clock closes the connection if it stays idle.
            return
        self._transition(Event.SHUTDOWN)
        if self.closed():
            self.transport.close()
        else:
            for cycle in self.queue:
                cycle.lose()
            self.queue.clear()

    # -- zero-copy file sending ---------------------------------------------------------------

    def can_sendfile(self) -> bool:
        return (self.transport.get_extra_info("sslcontext") is None
                and self.transport.get_write_buffer_size() == 0
                and self.transport.get_extra_info("socket") is not None)

    async def sendfile(self, fd: int, size: int) -> None:
        """os.sendfile() on a duplicate of the socket fd; the transport's buffer is empty."""
        sock = self.transport.get_extra_info("socket")
        out = os.dup(sock.fileno())
        offset = 0
        try:
            while offset < size:
                if self.state is Conn.CLOSED:
                    raise ClientDisconnected("client disconnected during sendfile")
                try:
                    offset += os.sendfile(out, fd, offset, size - offset)
                except BlockingIOError:
                    await self._writable(out)
                except OSError as exc:
                    if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                        # The client's choice, not the app's error: ``send`` raises the
                        # ASGI disconnect (an OSError), logged at debug level.
                        raise ClientDisconnected("client disconnected during sendfile") from exc
                    raise
        finally:
            os.close(out)

    def _writable(self, fd: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.loop.create_future()

        def ready() -> None:
            self.loop.remove_writer(fd)
            if not fut.done():
                fut.set_result(None)

        self.loop.add_writer(fd, ready)
        fut.add_done_callback(lambda _: self.loop.remove_writer(fd))
        return fut


def _apply_proxy_headers(scope: Scope, headers: list[tuple[bytes, bytes]],
                         trusted: TrustedProxies | None) -> None:
    """Trust X-Forwarded-For/Proto from an allowed proxy (``--forwarded-allow-ips``).

    The client is the right-most X-Forwarded-For entry that is not itself a trusted proxy.
    """
    for name, value in headers:
        if name == b"x-forwarded-proto":
            proto = value.decode("latin-1").split(",")[-1].strip().lower()
            if proto in ("http", "https", "ws", "wss"):
                scope["scheme"] = proto
        elif name == b"x-forwarded-for":
            hosts = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
            for host in reversed(hosts):
                if trusted is None or not trusted.trusts(host):
                    scope["client"] = (host, 0)
                    break
            else:
                if hosts:
                    scope["client"] = (hosts[0], 0)


def _proxy_wait(stats: RequestStats, value: bytes) -> None:
    """X-Request-Start of a trusted proxy: the wait since the proxy got the request."""
    age = request_start_age(value)
    if age is not None:
        waits = stats.proxy_wait
        waits.counts[bisect_left(BOUNDS, age)] += 1
        waits.total += age


async def _service_unavailable(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": b"Service Unavailable"})

