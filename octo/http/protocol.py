"""asyncio glue for HTTP/1.1: feeds httptools, admits requests, and runs their cycles."""

from __future__ import annotations

import asyncio
import errno
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import unquote

import httptools

from octo.config import Config, TrustedProxies
from octo.http.access import AccessLog
from octo.http.errors import ClientDisconnected, FileShrank
from octo.http.response import error_body, simple_response
from octo.http.states import STEPS, Conn, Event, next_state
from octo.http.static import StaticFiles
from octo.logs import access_log, error_log, escape, peer
from octo.stats import clock, request_start_age
from octo.types import ASGIApp, Scope

# The core modules (octo.http.core.CORE_MODULES) import each other relatively: the same
# sources are also compiled as the package octo._ccore.
from . import quickhead, taskreg, validate
from .chunks import ChunkMeter
from .counters import RequestStats, bucket
from .cycle import CycleHost, RequestCycle
from .flow import WriteFlow
from .request_id import RequestIds
from .validate import RequestError

# Names from modules that are not compiled, bound Final: compiled code reads a Final from a
# C variable, any other module-level name from the module's dict (130 instructions a use;
# the request path used ten, callgrind).
_STEPS: Final = STEPS
_LOWERED: Final = quickhead.LOWERED
_parse_simple: Final = quickhead.scanner()
_plain_target: Final = quickhead.target_checker()
_clock: Final = clock
_Task: Final = asyncio.Task

# The connection states and events as module constants, the same members (``CLOSED is
# Conn.CLOSED``): compiled, a Final name is a C static, where ``Conn.CLOSED`` costs a
# module-dict lookup and an attribute lookup on the enum class (~300 instructions on 3.11,
# whose EnumType has a __getattr__ hook). A dozen of them ran per request.
IDLE: Final = Conn.IDLE
HEAD: Final = Conn.HEAD
ACTIVE: Final = Conn.ACTIVE
CLOSING: Final = Conn.CLOSING
UPGRADED: Final = Conn.UPGRADED
CLOSED: Final = Conn.CLOSED
ON_BYTES: Final = Event.BYTES
ON_HEAD_DONE: Final = Event.HEAD_DONE
ON_KEEP_ALIVE: Final = Event.KEEP_ALIVE
ON_PIPELINED: Final = Event.PIPELINED
# The request path's transitions from the state each one usually starts in, read off the
# table once: a C constant where ``_STEPS[state][event]`` is two dict lookups (each
# transition 270 instructions, three a request, callgrind). Other states look it up.
_IDLE_ON_BYTES: Final = STEPS[Conn.IDLE][Event.BYTES]
_HEAD_ON_HEAD_DONE: Final = STEPS[Conn.HEAD][Event.HEAD_DONE]
_ACTIVE_ON_KEEP_ALIVE: Final = STEPS[Conn.ACTIVE][Event.KEEP_ALIVE]
ON_LAST_RESPONSE: Final = Event.LAST_RESPONSE
ON_SHUTDOWN: Final = Event.SHUTDOWN
ON_UPGRADE: Final = Event.UPGRADE
ON_TIMEOUT: Final = Event.TIMEOUT
ON_REJECT: Final = Event.REJECT
ON_LOST: Final = Event.LOST
ON_EOF: Final = Event.EOF

HIGH_WATER: Final = 64 * 1024
SHUTDOWN_IDLE_GRACE: Final = 1.0  # seconds an idle connection may linger once the server stops
# The ends of well-formed request lines.
_GET: Final = b"GET"
_HTTP11_END: Final = b" HTTP/1.1\r\n"
_HTTP10_END: Final = b" HTTP/1.0\r\n"
_CRLF: Final = b"\r\n"
_SP: Final = 0x20
_HTAB: Final = 0x09
_CR: Final = 0x0D
_LF: Final = 0x0A
EAGER: Final = sys.version_info >= (3, 12)  # Task(eager_start=True): no loop round trip per request
# Spec 2.3, as uvicorn declares: under 2.4, send() after a disconnect raises, and Starlette
# re-raises that out of the app as ClientDisconnect, so every ASGI error tracker records an
# event per client that closes a stream early. Under 2.3 the send is a no-op and Starlette
# ends its stream on the http.disconnect its listener receives.
ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
PATHSEND: dict[str, Any] = {"http.response.pathsend": {}}
# Every HTTP scope's keys, in order; _scope fills in the values of each request.
_SCOPE: Final[dict[str, Any]] = {
    "type": "http", "asgi": ASGI_VERSION, "http_version": "1.1", "server": None,
    "client": None, "scheme": "http", "method": "GET", "root_path": "", "path": "/",
    "raw_path": b"/", "query_string": b"", "headers": [], "extensions": PATHSEND,
}
TASK_NAME: Final = "octo-request"
# An int: bytes' ``in`` tries a bytes operand as an int first, raising (and clearing) a
# TypeError each time (about 2,000 instructions a request).
PERCENT: Final = ord("%")
_QUERY: Final = ord("?")
_FRAGMENT: Final = ord("#")


class _Refused(Exception):
    """A request found bad after the read that carried it was parsed."""

    def __init__(self, error: RequestError, cycle: RequestCycle) -> None:
        super().__init__(error.reason)
        self.error = error
        self.cycle = cycle


# What the WebSocket layer is handed an upgrade with: the connection, the request's scope,
# the bytes read past its head.
UpgradeHook = Callable[["HttpProtocol", Scope, bytes], None]


class ServerState:
    """What every connection of one worker shares: config-derived values and live counters."""

    def __init__(self, config: Config, app: ASGIApp, loop: asyncio.AbstractEventLoop,
                 lifespan_state: dict[str, Any] | None = None,
                 upgrade_handler: UpgradeHook | None = None) -> None:
        self.config = config
        self.app = app
        self.loop = loop
        taskreg.install()  # every request's Task enters the registry (see taskreg)
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
        self.limit_field = config.limit_request_field_size
        self.head_check = min(self.limit_head, self.limit_field)  # one test per request
        self.limit_chunk_line = config.limit_chunk_extension
        # A read no longer than this cannot hold a chunk-size or trailer line over a limit.
        self.short_read = min(self.limit_chunk_line + 2, self.limit_field)
        self.limit_body = config.limit_request_body
        self.body_timeout = config.body_timeout
        self.body_min_rate = config.body_min_rate
        self.body_min_bytes = max(1, int(config.body_min_rate * config.body_timeout))
        self.send_timeout = config.send_timeout
        self.keep_alive_timeout = config.timeout_keep_alive
        self.header_timeout = config.header_timeout
        self.scheme = "https" if config.is_ssl else "http"
        # The WebSocket layer's hook (None: upgrades are served as plain HTTP); the lazy
        # hook octo.ws gives replaces itself with the real one on the first upgrade.
        self.upgrade_handler = upgrade_handler
        self.websockets: set[Any] = set()  # upgraded connections (for shutdown)
        self.access_log = access_log.isEnabledFor(20)
        self.request_id_header: bytes | None = None
        self.request_ids: RequestIds | None = None
        if config.request_id:
            self.request_id_header = config.request_id_header.lower().encode("latin-1")
            self.request_ids = RequestIds()
        self.echo_request_id = config.echo_request_id and self.request_ids is not None
        self.access = AccessLog(config.access_log_format, config.access_log_json,
                                self.request_id_header, config.log_config is not None)
        mounts = config.static_mounts()
        self.static = StaticFiles(mounts, config.static_max_age) if mounts else None
        # One startswith() per request decides whether it is a static file: () when none.
        self.static_prefixes = self.static.prefixes if self.static is not None else ()
        self.on_connections: Any = None  # called with the open-connection count on changes
        # Deadlines use this coarse clock, refreshed by the worker tick: one fewer call per
        # request, and deadlines only need to be right to within a tick.
        self.now = loop.time()
        # --max-execution-time is measured from each request's real start on this clock
        # (read only when the limit is set); tests replace it.
        self.max_execution_time = config.max_execution_time
        self.clock = time.monotonic


class HttpProtocol(CycleHost):
    """One client connection (an asyncio protocol). State changes go through
    ``states.TRANSITIONS``; its request cycles reach it through ``CycleHost`` alone.

    Not an ``asyncio.Protocol`` subclass: event loops only call its methods, and a class
    with a Python base would be compiled as a plain Python class (see octo.http.core).
    """

    __slots__ = (
        "server", "loop", "server_header", "parser", "transport", "state", "deadline",
        "client", "sockname", "scheme", "trusted_peer", "url", "headers", "head_size", "line",
        "line_pending", "cycle", "reading", "queue", "to_start", "deferred_error", "read_paused",
        "flow", "eof", "raw_head", "body_received", "in_message",
        "in_head", "completed", "raw_line", "in_fields", "head_tail", "meters", "meter",
        "body_cycle", "body_mark", "body_until", "send_size", "send_since", "file_sent",
        "file_waiter", "echo_request_id", "max_execution_time", "stats", "line_start",
        "scope_base",
    )

    def __init__(self, server: ServerState) -> None:
        self.server = server
        self.loop = server.loop
        self.server_header = server.server_header
        self.echo_request_id = server.request_id_header if server.echo_request_id else None
        self.max_execution_time = server.max_execution_time
        self.stats = server.stats
        self.parser = httptools.HttpRequestParser(self)
        self.state = IDLE
        self.deadline = 0.0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = self.raw_head = self.body_received = 0
        self.line = b""
        self.line_pending = False
        # The read the request line of the message being parsed came in, when the whole
        # line came at its start; else empty (see on_headers_complete).
        self.line_start = b""
        self.scope_base: dict[str, Any] = _SCOPE  # this connection's, from connection_made
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
        # Raw accounting of the head being parsed, for reads that end inside it (the
        # parser holds a partial field line itself): see _measure_head.
        self.raw_line = 0
        self.in_fields = False
        self.head_tail = b""
        # Chunked bodies whose lines are still to be measured (see chunks.ChunkMeter), and
        # the one the parser is in.
        self.meters: list[tuple[ChunkMeter, RequestCycle]] = []
        self.meter: ChunkMeter | None = None
        # --body-timeout and --send-timeout progress marks, kept by tick() alone.
        self.body_cycle: RequestCycle | None = None
        self.body_mark = self.send_size = 0
        self.body_until = self.send_since = 0.0
        self.file_sent: int | None = None  # bytes of a file sent so far, while sendfile runs
        self.file_waiter: asyncio.Future[None] | None = None  # sendfile waiting to write
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
        # What every request's scope on this connection starts from (see _scope).
        base = self.scope_base = _SCOPE.copy()
        base["server"] = self.sockname
        base["client"] = self.client
        base["scheme"] = self.scheme
        base["root_path"] = server.root_path
        trusted = server.trusted
        self.trusted_peer = trusted is not None and trusted.trusts(
            self.client[0] if self.client else None)
        self.deadline = server.now + server.keep_alive_timeout
        if server.stopping:
            self._transition(ON_SHUTDOWN)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = next_state(self.state, ON_LOST)
        server = self.server
        server.connections.discard(self)
        if server.on_connections is not None and not server.stopping:
            server.on_connections(len(server.connections))
        for cycle in (self.cycle, self.reading, *self.queue):
            if cycle is not None:
                cycle.lose()
        self.queue.clear()
        self.flow.wake()
        waiter = self.file_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # sendfile then sees the close

    def eof_received(self) -> bool | None:
        """The client half-closed. Complete requests are still answered (a client may
        half-close after sending them); a message cut short by the EOF never will be: its
        app sees http.disconnect, and the connection closes once nothing is left to say."""
        self.eof = True
        reading = self.reading
        if reading is not None:  # inside a body: it can no longer complete
            self.reading = None
            reading.lose()
            if reading in self.queue:
                self.queue.remove(reading)
        if self.state is CLOSED or self.state is UPGRADED:
            return None
        active = self.cycle
        if active is None or active is reading:
            if active is not None:
                self._transition(ON_EOF)
                self.transport.close()
            return None  # the transport closes itself
        return True  # keep the write side open for the answers

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    # -- CycleHost: what the request cycles may use -------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    @property
    def write_paused(self) -> bool:
        return self.flow.paused

    @property
    def stopping(self) -> bool:
        return self.server.stopping

    async def drain(self) -> None:
        if self.state is not CLOSED:
            await self.flow.wait()

    def clock(self) -> float:
        return self.server.clock()

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is IDLE:
            self.state = _IDLE_ON_BYTES
            self.deadline = self.server.now + self.server.header_timeout
            # Nothing runs or waits, the parser is between messages: a read holding one
            # whole simple head needs no parser (see quickhead).
            if self._simple_request(data):
                return
        elif state is CLOSED or state is UPGRADED:
            return
        if not self.in_message and not self.line_pending:
            # The read starts at a request boundary. Common case first: it holds the
            # whole request line.
            first = data[0]
            if first != _CR and first != _LF and _LF in data:
                self.line_start = data  # on_headers_complete reads the version off it
            else:
                self.line = b""
                self.line_pending = True
        if self.line_pending:
            self._check_line(data)
            if self.state is CLOSED:
                return
        head_before = self.in_head
        completed = self.completed
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_upgrade(data[exc.args[0]:] if exc.args else b"")
        except RequestError as exc:
            self._refuse(exc, data, head_before, completed)
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if not isinstance(cause, RequestError):
                cause = RequestError(400, f"invalid HTTP: {exc}")
            self._refuse(cause, data, head_before, completed)
        else:
            if self.in_head or self.meters:
                self._measure(data, head_before, completed)
        self._start_admitted()

    def _simple_request(self, data: bytes) -> bool:
        """Serve *data* when it is one simple head within every limit; False: it is not,
        and nothing changed."""
        if self.in_message or self.line_pending or self.meters:
            return False
        head = _parse_simple(data)
        if head is None:
            return False
        method, target, fields, size = head
        server = self.server
        # Over a limit: the parser's path reports it, exactly as it would any other head.
        if (len(target) > server.limit_line or len(fields) > server.limit_fields
                or size > server.limit_head):
            return False
        # What on_message_begin and the parser's callbacks would have left.
        self.url = target
        self.headers = fields
        self.head_size = size
        self.raw_head = 0
        self.in_message = self.in_head = True
        try:
            self._head_complete(method, "1.1")
        except RequestError as exc:
            self.reject(exc)
            return True
        self.on_message_complete()
        self._start_admitted()
        return True

    def _start_admitted(self) -> None:
        """Run the request this read admitted, if one is to start now (see
        _head_complete: a request behind others waits in the queue instead)."""
        start = self.to_start
        if start is not None:
            self.to_start = None
            if self.state is not CLOSED:
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

    # -- raw accounting (only for reads that end inside a head or carry chunked framing) ---

    def _measure(self, data: bytes, head_before: bool, completed: int) -> None:
        after = -1
        if self.meters:
            try:
                after = self._measure_chunks(data, head_before, completed)
            except _Refused as refused:
                self.reject(refused.error, refused.cycle)
                return
        if self.in_head:
            try:
                self._measure_head(data, head_before, completed, after)
            except RequestError as exc:
                self.reject(exc)

    def _refuse(self, exc: RequestError, data: bytes, head_before: bool,
                completed: int) -> None:
        """The parser stopped on an error: a chunked body that ended before it in this read
        is measured first (it is not served if it broke a limit)."""
        if self.meters and self.meters[0][1].more_body is False:
            try:
                self._measure_chunks(data, head_before, completed, ended_only=True)
            except _Refused as refused:
                self.reject(refused.error, refused.cycle)
                return
        self.reject(exc)

    def _measure_chunks(self, data: bytes, head_before: bool, completed: int,
                        ended_only: bool = False) -> int:
        """Follow each chunked body this read carried; return where the last one that ended
        here ended if the message being parsed starts right there (-2: at an unknown CRLF
        CRLF), else -1."""
        end = -1
        index = -1  # head_index of the body that ended at *end*
        for meter, cycle in list(self.meters):
            done = meter.reported_done = cycle.more_body is False
            if ended_only and not done:
                break
            if done and not meter.started and len(data) <= self.server.short_read:
                # The whole body came in a read too short to hold a line over a limit.
                self.meters.remove((meter, cycle))
                end, index = -2, meter.head_index  # -2: it ended with CRLF CRLF, somewhere
                continue
            body_now = meter.chunk_body if done else self.body_received
            try:
                if meter.started:
                    end = meter.follow(data, 0, body_now)
                elif meter.head_index == completed:  # the first message of this read
                    end = meter.follow(data, self._head_end(data, 0, head_before), body_now)
                elif end >= 0 and meter.head_index == index + 1:  # right after the last one
                    end = meter.follow(data, self._head_end(data, end, False), body_now)
                else:
                    end = meter.locate(data, max(end, 0), body_now)
            except RequestError as exc:
                raise _Refused(exc, cycle) from None
            if end == -1:
                return -1  # it goes on in the next read
            self.meters.remove((meter, cycle))
            index = meter.head_index
        return end if index + 1 == self.completed else -1

    def _head_end(self, data: bytes, start: int, head_before: bool) -> int:
        """Where the head that starts at *start* (or began in the previous read) ends."""
        if head_before:
            # Its CRLF CRLF may straddle the reads: the previous one's last bytes are kept.
            tail = self.head_tail
            found = (tail + data[:3]).find(b"\r\n\r\n")
            if found != -1:
                return found + 4 - len(tail)
            found = data.find(b"\r\n\r\n")
        else:
            found = data.find(b"\r\n\r\n", _skip_blank_lines(data, start))
        if found == -1:
            raise RequestError(400, "chunked framing could not be followed (head end)")
        return found + 4

    def _measure_head(self, data: bytes, head_before: bool, completed: int,
                      after: int) -> None:
        """The read ended inside a head: bound what httptools holds of it (it buffers a
        partial field line itself). Only this head's bytes count (see _head_start)."""
        size = len(data)
        if head_before and completed == self.completed:  # the whole read is this head's
            self.raw_head += size
            newline = data.rfind(b"\n")
            if newline == -1:
                self.raw_line += size
            else:
                self.raw_line = size - newline - 1
                self.in_fields = True
        else:
            start = self._head_start(data, head_before, completed, after)
            newline = data.rfind(b"\n", max(start, 0))
            if start >= 0:
                self.raw_head = size - start
                self.in_fields = newline != -1
                self.raw_line = size - (newline + 1 if newline != -1 else start)
            else:
                # After the last LF come bytes of this head only, unless that LF ended the
                # head of the previous message, whose body (body_received bytes) follows.
                tail = size - newline - 1
                self.raw_head = max(0, tail - self.body_received)
                self.in_fields = bool(self.headers)  # a whole field: that LF is this head's
                self.raw_line = tail
        self.head_tail = (self.head_tail + data[-3:])[-3:] if size < 3 else data[-3:]
        server = self.server
        if self.raw_head > server.limit_head:
            raise RequestError(431, "request head exceeds --limit-request-head")
        if self.in_fields and self.raw_line + 1 > server.limit_field:
            raise RequestError(431, f"header field of {self.raw_line}+ bytes exceeds "
                                    "--limit-request-field-size")

    def _head_start(self, data: bytes, head_before: bool, completed: int, after: int) -> int:
        """Where the head being parsed began in this read, or -1 when that is not known:
        llhttp gives no offsets, but a message ends where a chunked body ended (*after*),
        or, when it had no body or a chunked one, at the last CRLF CRLF in the read (a head
        in progress holds none)."""
        if completed == self.completed:
            return _skip_blank_lines(data, 0)  # the read began with it
        if after >= 0:
            return _skip_blank_lines(data, after)
        if self.body_received and after != -2:
            return -1  # a Content-Length body ended somewhere before it
        found = data.rfind(b"\r\n\r\n")
        if found != -1:
            return _skip_blank_lines(data, found + 4)
        if head_before:  # the previous head's CRLF CRLF straddles the reads
            tail = self.head_tail
            found = (tail + data[:3]).find(b"\r\n\r\n")
            if found != -1:
                return _skip_blank_lines(data, found + 4 - len(tail))
        return -1

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
        lowered = _LOWERED.get(name)
        name = name.lower() if lowered is None else lowered
        if not self.in_head:
            # A chunked body's trailer field (self.headers is its meter's trailers): refused
            # as it arrives, before the parser reports the end of the body.
            validate.check_trailer(name)
        if value and (value[-1] == _SP or value[-1] == _HTAB):
            value = value.rstrip(b" \t")  # trailing OWS is not the value
        headers.append((name, value))
        self.head_size += len(name) + len(value) + 4
        if len(headers) > self.server.limit_fields:
            raise RequestError(431, "more header fields than --limit-request-fields")
        if self.head_size > self.server.limit_head:
            raise RequestError(431, "request head exceeds --limit-request-head")

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = parser.get_method()
        url = self.url
        version: str | None = None
        line = self.line_start
        if line:
            # The version off the request line this read began with, not the parser's
            # get_http_version(), which formats the string anew (2,300 instructions of
            # the 60k a request cost, callgrind). Found where the parser's method and
            # target end, it also shows the line has no spaces but its two (llhttp
            # tolerates more); a find(), a count() and a startswith() on the read to
            # tell the same cost 3,000.
            self.line_start = b""
            end = len(method) + 1 + len(url)
            tail = line[end:end + 11]
            # Two compares, not a dict lookup: the slice is a new bytes, hashed anew (400).
            if tail == _HTTP11_END:
                version = "1.1"
            elif tail == _HTTP10_END:
                version = "1.0"
            if version is None:  # other spacing, line end or version: the full grammar
                validate.check_request_line(line[:line.find(b"\n") + 1])
        if version is None:
            version = parser.get_http_version()
        self._head_complete(method, version)

    def _head_complete(self, method: bytes, version: str) -> None:
        """The head of a request is read (by the parser or as a simple head): check it and
        make its cycle."""
        server = self.server
        url = self.url
        self.in_head = False
        if self.head_size > server.head_check:
            self._check_head_size()
        if version != "1.1":
            validate.check_version(version)
        if method == b"CONNECT":
            raise RequestError(501, "CONNECT is not supported")
        if url[:1] != b"/":
            validate.check_target(method, url)
        facts = validate.inspect_headers(self.headers, version == "1.1",
                                         server.request_id_header)
        length = facts.content_length
        if length is not None and length > server.limit_body:
            raise RequestError(413, f"Content-Length {length} exceeds --limit-request-body")
        if self.state is CLOSED:
            return  # the request line was rejected already
        request_id = None
        ids = server.request_ids
        if ids is not None:
            incoming = facts.request_id
            request_id = ids.new() if incoming is None else ids.accept(incoming)
        # A compare, not a decode, for the usual method (220 instructions, callgrind).
        name = "GET" if method == _GET else method.decode("ascii")
        scope = self._scope(name, version, url, request_id)
        if facts.forwarded and self.trusted_peer:
            _apply_proxy_headers(scope, self.headers, server.trusted)
        chunked = facts.chunked
        cycle = RequestCycle(self, scope, facts.keep_alive, facts.expect_continue,
                             chunked or bool(length), method == b"HEAD")
        if request_id is not None:
            cycle.request_id = request_id
        if version == "1.0":
            cycle.http10 = True
        if chunked:
            self._start_chunked(cycle)
        self.reading = cycle
        self.body_received = 0
        if facts.request_start is not None and self.trusted_peer:
            cycle.request_start = facts.request_start
        server.requests += 1
        state = self.state
        self.state = _HEAD_ON_HEAD_DONE if state is HEAD else _STEPS[state][ON_HEAD_DONE]
        if facts.upgrade is not None and server.upgrade_handler is not None:
            scope["octo.upgrade"] = facts.upgrade
        if self.cycle is None and self.to_start is None:
            self.to_start = cycle
        else:
            cycle.began = _clock()  # it waits for the requests before it: see _run
            self.queue.append(cycle)
            self._pause_reading()

    def _check_head_size(self) -> None:
        """The head is over the smaller of the two limits: which one, if any, it broke."""
        server = self.server
        if self.head_size > server.limit_head:
            raise RequestError(431, "request head exceeds --limit-request-head")
        for name, value in self.headers:
            # Counted as the line "Name: value\r\n" would be, like gunicorn counts it.
            size = len(name) + len(value) + 4
            if size > server.limit_field:
                raise RequestError(431, f"header field {name[:64].decode('latin-1')} of "
                                        f"{size} bytes exceeds --limit-request-field-size")

    def _start_chunked(self, cycle: RequestCycle) -> None:
        """A chunked body follows: measure its lines, and keep its trailer fields out of
        the request's headers (they arrive through on_header too)."""
        meter = self.meter = ChunkMeter(self.server.limit_chunk_line, self.server.limit_field,
                                        self.completed)
        self.meters.append((meter, cycle))
        self.headers = meter.trailers  # the scope keeps the head's list (see ChunkMeter)

    def on_chunk_header(self) -> None:
        meter = self.meter
        if meter is not None:
            meter.reported_chunks += 1
            meter.chunk_body = self.body_received


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

    def _scope(self, method: str, version: str, url: bytes, request_id: str | None) -> Scope:
        server = self.server
        if url[:1] == b"/" and _plain_target(url):
            raw_path, query = url, b""
            path = url.decode("latin-1")
        else:
            raw_path, query, path = _split_target(url)
        # A copy of the connection's scope, then the request's values: building the dict
        # key by key cost 3,100 instructions, this 1,300 (callgrind). A dict, not a Scope:
        # compiled, its stores are PyDict_SetItem, not the generic protocol.
        scope: dict[str, Any] = self.scope_base.copy()
        # The copy holds GET, 1.1 and an empty query already: a compare is a fifth of a
        # dict store (about 400 instructions a hello request, callgrind).
        if version != "1.1":
            scope["http_version"] = version
        if method != "GET":
            scope["method"] = method
        root_path = server.root_path
        scope["path"] = root_path + path if root_path else path
        scope["raw_path"] = raw_path
        if query:
            scope["query_string"] = query
        scope["headers"] = self.headers
        state = server.lifespan_state
        if state is not None:
            state = scope["state"] = state.copy()
            if request_id is not None:
                state["request_id"] = request_id
        elif request_id is not None:
            scope["state"] = {"request_id": request_id}
        return scope

    # -- running requests -------------------------------------------------------------------

    def _run(self, cycle: RequestCycle) -> None:
        server = self.server
        self.cycle = cycle
        limit = server.limit_concurrency
        app = server.app
        prefixes = server.static_prefixes
        if prefixes and cycle.scope["raw_path"].startswith(prefixes):
            app = server.static  # type: ignore[assignment]
        if limit is not None and (server.in_flight >= limit or len(server.connections) > limit):
            error_log.warning("--limit-concurrency %d reached: answering 503", limit)
            cycle.keep_alive = False
            app = _service_unavailable
        # For --metrics: the queue wait runs from here (or from the queueing of a pipelined
        # request) to the app call, which the cycle measures (see octo.stats.count_wait).
        now = _clock()
        stats = server.stats
        if not cycle.began:
            cycle.began = now
        if cycle.request_start is not None:
            _proxy_wait(stats, cycle.request_start)
        if not server.in_flight:
            stats.busy_since = now
        server.in_flight += 1
        if server.max_execution_time:
            cycle.started_at = server.clock()
        # A fixed name: the default one is formatted per task ("Task-123"). No done
        # callback either (one more loop round per request): the cycle's ``run`` drops the
        # task from ``server.tasks`` itself, see ``app_done``.
        if EAGER:
            # The Task calls the app within its construction: the queue wait ends now,
            # read off this clock reading instead of another in the Task (250
            # instructions on 3.12, callgrind).
            stats.wait.observe(now - cycle.began)
            task = _Task(cycle.run(app, False), loop=self.loop, name=TASK_NAME,  # type: ignore[call-arg,unused-ignore]
                                eager_start=True)
        else:
            task = _Task(cycle.run(app, True), loop=self.loop, name=TASK_NAME)
        if not task.done():
            cycle.task = task
            server.tasks.add(task)
            if server.max_execution_time and not cycle.timed_out:
                cycle.arm_deadline()

    def want_body(self) -> None:
        self._resume_reading()

    def body_consumed(self) -> None:
        if self.read_paused and not self.queue:
            self._resume_reading()

    def app_done(self, cycle: RequestCycle) -> None:
        server = self.server
        server.in_flight -= 1
        if cycle.deadline_timer is not None:
            cycle.disarm_deadline()
        now = _clock()
        stats = server.stats
        if not server.in_flight:
            stats.busy += now - stats.busy_since
        duration = now - cycle.began
        durations = stats.duration
        durations.counts[bucket(duration)] += 1
        durations.total += duration
        status = cycle.status  # 0: the client left before a response started
        stats.status[status // 100 if 100 <= status < 600 else 0] += 1
        if cycle.task is not None:
            server.tasks.discard(cycle.task)
        if not cycle.complete and server.access_log:
            server.access(cycle)  # cut short: the line says why (see RequestCycle.ended)
        if cycle is self.cycle and cycle.complete is False and self.state is not CLOSED:
            self.transport.close()

    def response_done(self, cycle: RequestCycle) -> None:
        """The last byte of *cycle*'s response is written: reuse or close the connection."""
        if self.server.access_log:
            self.server.access(cycle)
        keep = (cycle.keep_alive and not self.eof and cycle.more_body is False
                and self.deferred_error is None)
        if self.state is CLOSED:
            return
        if not keep:
            if self.deferred_error is not None and cycle.keep_alive:
                self._write_error(self.deferred_error)
            self._transition(ON_LAST_RESPONSE)
            self.cycle = None
            self.transport.close()
            return
        state = self.state
        self.state = (_ACTIVE_ON_KEEP_ALIVE if state is ACTIVE
                      else _STEPS[state][ON_KEEP_ALIVE])
        self.cycle = None
        if self.state is CLOSED:  # the server began stopping after this head went out
            self.transport.close()
            return
        if self.queue:
            self.state = _STEPS[self.state][ON_PIPELINED]
            self.loop.call_soon(self._start_next)
        elif self.in_message:
            # The next request's head already started arriving in an earlier read.
            self.state = _STEPS[self.state][ON_BYTES]
            self.deadline = self.server.now + self.server.header_timeout
            if self.read_paused:
                self._resume_reading()
        else:
            self.deadline = self.server.now + self.server.keep_alive_timeout
            if self.read_paused:
                self._resume_reading()

    def _start_next(self) -> None:
        if self.queue and self.state is not CLOSED and self.cycle is None:
            self._run(self.queue.popleft())
            if not self.queue:
                self._resume_reading()

    # -- errors -----------------------------------------------------------------------------

    def reject(self, exc: RequestError, bad: RequestCycle | None = None) -> None:
        """Answer a bad or over-limit request with its status, then close. *bad* is the
        request at fault when it was parsed already (default: the one whose body is being
        read, if any): it is not served; complete requests before it still are."""
        if bad is None:
            bad = self.reading
        level = 30 if exc.status in (413, 414, 431, 503) else 20
        error_log.log(level, "%d from %s: %s", exc.status, peer(self.client), escape(exc.reason))
        self.line_pending = False
        if self.state is CLOSED:
            return
        pending = self.to_start
        self.to_start = None
        if pending is not None and pending is not bad:
            self._run(pending)  # a complete earlier request in the same read is still answered
            if self.closed():
                return
        active = self.cycle
        if active is not None and not active.complete and active is not bad:
            # An earlier request is still being answered: finish it, then send the error.
            self.deferred_error = exc
            self._pause_reading()
            self.queue.clear()
            return
        if active is not None and active.started:
            active.lose(f"rejected: {exc.status}")
        elif active is not None:
            active.lose(f"rejected: {exc.status}")
            self._write_error(exc)
        else:
            self._write_error(exc)
        self.state = next_state(self.state, ON_REJECT)
        self.transport.close()

    def _write_error(self, exc: RequestError) -> None:
        self.server.stats.count_status(exc.status)  # answered by the server, not the app
        self.transport.write(simple_response(exc.status, error_body(exc.status)))

    def abort(self) -> None:
        if self.state is not CLOSED:
            self.state = next_state(self.state, ON_REJECT)
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
        self._transition(ON_UPGRADE)
        handler(self, cycle.scope, data)

    # -- flow control and lifecycle -----------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.state is not CLOSED:
            self.read_paused = False
            self.transport.resume_reading()

    def _transition(self, event: Event) -> None:
        self.state = next_state(self.state, event)

    def closed(self) -> bool:
        return self.state is CLOSED

    def tick(self, now: float) -> None:
        """Called about twice a second by the worker clock: enforce the deadlines. The
        request path never reads the clock; progress is measured here, between ticks."""
        state = self.state
        if state is ACTIVE or state is CLOSING:
            if self.reading is not None and self.server.body_timeout:
                self._check_body(now)
            if (self.flow.paused or self.file_sent is not None) and self.server.send_timeout:
                self._check_send(now)
            else:
                self.send_since = 0.0
        elif state is HEAD and now > self.deadline:
            error_log.warning("header read deadline (--header-timeout %ss) passed for %s; "
                              "closing", self.server.header_timeout, peer(self.client))
            self._transition(ON_TIMEOUT)
            self.server.stats.count_status(408)
            self.transport.write(simple_response(408, error_body(408)))
            self.transport.close()
        elif state is IDLE and (now > self.deadline or (
                self.server.stopping and self._idle_for(now) >= SHUTDOWN_IDLE_GRACE)):
            error_log.debug("closing idle connection from %s", peer(self.client))
            self._transition(ON_TIMEOUT)
            self.transport.close()
        elif state is CLOSED and self.server.send_timeout:
            # Closed by us, but the transport still flushes what the client does not read.
            if self.transport.get_write_buffer_size():
                self._check_send(now)

    def _check_body(self, now: float) -> None:
        """--body-timeout: over each window the body must grow by the --body-min-rate
        share. Time the server is not reading (paused for a slow app or behind pipelined
        requests, or before the app asked for an Expect: 100-continue body) does not count."""
        reading = self.reading
        assert reading is not None
        received = self.body_received
        server = self.server
        if reading is not self.body_cycle or self.read_paused or reading.expect_continue:
            self.body_cycle = reading
            self.body_mark, self.body_until = received, now + server.body_timeout
        elif now >= self.body_until:
            if received - self.body_mark < server.body_min_bytes:
                self._body_too_slow(received - self.body_mark)
            else:
                self.body_mark, self.body_until = received, now + server.body_timeout

    def _body_too_slow(self, got: int) -> None:
        server = self.server
        error_log.warning("request body from %s too slow: %d bytes in %ss (--body-timeout %ss, "
                          "--body-min-rate %s bytes/s); answering 408 and closing",
                          peer(self.client), got, server.body_timeout, server.body_timeout,
                          server.body_min_rate)
        reading = self.reading
        assert reading is not None
        if not reading.started:
            self.transport.write(simple_response(408, error_body(408)))
        for cycle in (self.cycle, reading, *self.queue):
            if cycle is not None:
                cycle.lose("aborted: --body-timeout")
        self.queue.clear()
        self._transition(ON_TIMEOUT)
        self.transport.close()

    def _check_send(self, now: float) -> None:
        """--send-timeout: abort once the client has taken none of the pending response
        bytes for that long (the transport's buffer did not shrink, no file bytes went)."""
        pending = self.transport.get_write_buffer_size() - (self.file_sent or 0)
        if not self.send_since or pending < self.send_size:
            self.send_size, self.send_since = pending, now  # progress (or a first look)
            return
        self.send_size = pending  # bytes the app added since are not the client's progress
        if now - self.send_since <= self.server.send_timeout:
            return
        error_log.warning("client %s took no response bytes for %ss (--send-timeout); "
                          "aborting the connection", peer(self.client), self.server.send_timeout)
        for cycle in (self.cycle, self.reading, *self.queue):
            if cycle is not None:
                cycle.lose("aborted: --send-timeout")
        self.queue.clear()
        if self.state is not CLOSED:
            self._transition(ON_TIMEOUT)
        self.transport.abort()

    def _idle_for(self, now: float) -> float:
        return now - (self.deadline - float(self.server.keep_alive_timeout))

    def shutdown(self) -> None:
        """Server is stopping: close idle connections, finish the active response first."""
        if self.state is CLOSED or self.state is UPGRADED:
            return
        if self.state is IDLE and self._idle_for(self.server.now) < SHUTDOWN_IDLE_GRACE:
            # A busy keep-alive client may have a request on the wire right now; closing
            # would reset it. Its next response says "connection: close" instead, and the
            # clock closes the connection if it stays idle.
            return
        self._transition(ON_SHUTDOWN)
        if self.closed():
            self.transport.close()
        else:
            for cycle in self.queue:
                cycle.lose()
            self.queue.clear()

    def expire(self, why: str) -> None:
        """The stop ran out of time (*why* names the flag): a request whose response has
        not started gets a 503 with ``Connection: close``, logged, rather than a bare close
        (the client can tell it was not served and retry); one whose response started can
        only be cut. Either way the connection closes."""
        if self.state is CLOSED or self.state is UPGRADED:
            return
        cycle = self.cycle
        if cycle is not None and not cycle.started and not cycle.disconnected:
            error_log.warning("%s %s from %s not answered when %s: answering 503 and closing",
                              escape(cycle.scope["method"]), escape(cycle.scope["path"]),
                              peer(self.client), why)
            for queued in self.queue:  # never started: Connection: close tells the client
                queued.lose()
            self.queue.clear()
            cycle.send_error(503)  # its response_done closes the connection
        if not self.closed():  # a response under way is cut (the app sees it)
            self._transition(ON_TIMEOUT)
            self.transport.close()

    # -- zero-copy file sending ---------------------------------------------------------------

    def can_sendfile(self) -> bool:
        return (self.transport.get_extra_info("sslcontext") is None
                and self.transport.get_write_buffer_size() == 0
                and self.transport.get_extra_info("socket") is not None)

    async def sendfile(self, fd: int, offset: int, size: int) -> None:
        """os.sendfile() of *size* bytes of *fd* from *offset*, on a duplicate of the socket
        fd; the transport's buffer is empty. FileShrank if the file ends early."""
        sock = self.transport.get_extra_info("socket")
        out = os.dup(sock.fileno())
        sent = self.file_sent = 0  # progress for --send-timeout (see tick)
        try:
            while sent < size:
                if self.state is CLOSED:
                    raise ClientDisconnected("client disconnected during sendfile")
                try:
                    count = os.sendfile(out, fd, offset + sent, size - sent)
                except BlockingIOError:
                    await self._writable(out)
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                        # The client's choice, not the app's error: ``send`` raises the
                        # ASGI disconnect (an OSError), logged at debug level.
                        raise ClientDisconnected("client disconnected during sendfile") from exc
                    raise
                if count == 0:  # end of file before *size*: it was truncated meanwhile
                    raise FileShrank(sent, size)
                sent += count
                self.file_sent = sent
        finally:
            self.file_sent = None
            os.close(out)

    def _writable(self, fd: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.loop.create_future()
        self.file_waiter = fut

        def ready() -> None:
            self.loop.remove_writer(fd)
            if not fut.done():
                fut.set_result(None)

        def unwatch(_: object) -> None:
            # Not a lambda: typeshed says remove_writer returns bool, uvloop's returns None,
            # and compiled code would check the lambda's inferred bool result.
            self.loop.remove_writer(fd)

        self.loop.add_writer(fd, ready)
        fut.add_done_callback(unwatch)
        return fut


def _split_target(url: bytes) -> tuple[bytes, bytes, str]:
    """raw_path, query_string and path of a target with a query, a fragment, an escape
    or another form than origin-form."""
    if url[:1] == b"/":
        # Tests before each split: a partition is a method call and a tuple (700
        # instructions of a hello request for the two, callgrind).
        raw_path, query = url, b""
        if _QUERY in url:
            raw_path, _, query = url.partition(b"?")
        if _FRAGMENT in raw_path:
            raw_path = raw_path.partition(b"#")[0]
    else:
        # Any on purpose: httptools' stub says path and query are bytes, but they are
        # None when absent, and compiled code would check the stub's type.
        parsed: Any = httptools.parse_url(url)
        raw_path = parsed.path or b"/"
        query = parsed.query or b""
    path = raw_path.decode("latin-1")
    if PERCENT in raw_path:
        # Invalid UTF-8 becomes U+FFFD, as with uvicorn and granian: a lone surrogate
        # in the path breaks apps that encode it. raw_path keeps the bytes.
        path = unquote(path, encoding="utf-8", errors="replace")
    return raw_path, query, path


def _skip_blank_lines(data: bytes, pos: int) -> int:
    """The parser skips CR and LF between messages: where the next one starts."""
    length = len(data)
    while pos < length and data[pos] in _CRLF:
        pos += 1
    return pos


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
        waits.counts[bucket(age)] += 1
        waits.total += age


async def _service_unavailable(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": b"Service Unavailable"})

