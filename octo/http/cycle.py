"""One request/response exchange: the ASGI ``receive`` and ``send`` of a single request."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, Final, NoReturn

from octo.http.errors import ClientDisconnected, FileShrank, ProtocolMisuse
from octo.http.response import CONTINUE, error_body
from octo.http.static import FILE_MESSAGE
from octo.logs import error_log, escape
from octo.types import ASGIApp, Message, Receive, Scope, Send

from .counters import RequestStats, count_wait  # core modules: see octo.http.core
from .done import done
from .head import CHUNK_END, PREFIXES, chunk, encoded_headers, head_and_chunk

DISCONNECT: Final[Message] = {"type": "http.disconnect"}
DONE: Final = done()  # what send returns when the message needed no wait
# Files below this size are read and written in one go: a sendfile() round trip costs more.
SENDFILE_MIN: Final = 64 * 1024
# Streamed body parts are held and written together once the app yields to the loop (one
# send() syscall for many small parts); holding more than this writes at once, so the
# transport's flow control still sees what the app produces.
HOLD_MAX: Final = 64 * 1024


def _no_body(status: int) -> bool:
    """204 and 304 responses have no body (compiled: int tests, not a set's)."""
    return status == 204 or status == 304


class CycleHost:
    """What a request cycle may use of the connection it belongs to, and nothing more.

    The connection (``HttpProtocol``) implements it and drives its cycles through their
    public methods; a cycle reaches the connection only through this interface. A base
    class rather than a typing.Protocol so that compiled code calls it directly.
    """

    __slots__ = ()

    loop: asyncio.AbstractEventLoop
    server_header: bool  # send "server: octo"
    # --echo-request-id: the header (lowercase) the request id is echoed in, else None.
    echo_request_id: bytes | None
    max_execution_time: float  # --max-execution-time in seconds; 0: none
    stats: RequestStats  # the worker's request counters (--metrics)

    def write(self, data: bytes) -> None:
        """Hand response bytes to the transport."""
        raise NotImplementedError

    @property
    def write_paused(self) -> bool:
        """The transport's buffer is over its high-water mark: ``drain`` before more."""
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait until the transport takes writes again (or the connection is gone)."""
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        """The server is stopping: the response says ``connection: close``."""
        raise NotImplementedError

    def want_body(self) -> None:
        """The app waits for body bytes: read from the client."""
        raise NotImplementedError

    def body_consumed(self) -> None:
        """The app took the body buffered so far."""
        raise NotImplementedError

    def clock(self) -> float:
        """The clock --max-execution-time is measured on (monotonic seconds)."""
        raise NotImplementedError

    def can_sendfile(self) -> bool:
        raise NotImplementedError

    async def sendfile(self, fd: int, offset: int, size: int) -> None:
        """Send *size* bytes of *fd* from *offset* zero-copy (only when ``can_sendfile()``);
        FileShrank if the file ends first."""
        raise NotImplementedError

    def response_done(self, cycle: RequestCycle) -> None:
        """*cycle*'s last response byte is written."""
        raise NotImplementedError

    def app_done(self, cycle: RequestCycle) -> None:
        """*cycle*'s app returned or raised."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close the connection now: a response cannot be completed."""
        raise NotImplementedError


# Frameworks' own "the client went away" exceptions (Starlette's ClientDisconnect, raised
# from the OSError send() raises, or when receive() reports the disconnect).
_DISCONNECT_NAMES: Final = frozenset(("ClientDisconnect", "ClientDisconnected"))


def caused_by_disconnect(exc: BaseException, depth: int = 0) -> bool:
    """Whether *exc*, raised by the app after its client went away, comes from that: an
    OSError (a write to the closed connection), a framework's ClientDisconnect, one raised
    while handling ``send``'s ClientDisconnected, or a group of only such exceptions."""
    if isinstance(exc, BaseExceptionGroup):
        return depth < 8 and all(caused_by_disconnect(inner, depth + 1)
                                 for inner in exc.exceptions)
    if isinstance(exc, OSError) or type(exc).__name__ in _DISCONNECT_NAMES:
        return True
    seen = 0
    inner = exc.__cause__ or exc.__context__
    while inner is not None and seen < 8:
        if isinstance(inner, ClientDisconnected):
            return True
        inner, seen = inner.__cause__ or inner.__context__, seen + 1
    return False


class RequestCycle:
    """Holds one request's body buffer and response state; created per request."""

    # No __slots__: most fields keep their class default for the whole request, so only the
    # per-request ones are stored (cheaper than initialising twenty slots per request).
    body_size = 0
    waiter: asyncio.Future[None] | None = None
    started = False
    head_sent = False
    complete = False
    disconnected = False
    chunked = False
    body_returned = False
    status = 0
    headers: Any = ()
    remaining: int | None = None
    sent_bytes = 0
    task: asyncio.Task[None] | None = None  # only when the app suspended (not eager-complete)
    held: list[bytes] | None = None  # response bytes not yet handed to the transport
    held_size = 0
    started_at = 0.0  # on ServerState.clock, read only under --max-execution-time
    request_id: str | None = None
    timed_out = False
    swallowed = False  # a send after a disconnect was a no-op (see _swallow)
    silenced = False  # the app was cancelled for sending on after that
    deadline_timer: asyncio.TimerHandle | None = None  # --max-execution-time
    # Why a response that never completed ended, for its access-log line.
    ended: str | None = None
    began = 0.0  # when the request was queued, else its app call (octo.stats.clock)
    request_start: bytes | None = None  # X-Request-Start of a trusted proxy
    http10 = False  # an HTTP/1.0 request (else 1.1): set by the connection

    def __init__(self, conn: CycleHost, scope: Scope, keep_alive: bool,
                 expect_continue: bool, more_body: bool, head: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.more_body = more_body
        self.head = head
        self.body: list[bytes] = []

    # -- fed by the connection -------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self.body.append(chunk)
        self.body_size += len(chunk)
        self.wake()

    def end_of_body(self) -> None:
        self.more_body = False
        if self.waiter is not None:
            self.wake()

    def lose(self, why: str = "client disconnected") -> None:
        if self.ended is None:
            self.ended = why
        self.disconnected = True
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self.waiter = self.conn.loop.create_future()
        await waiter

    # -- ASGI receive ----------------------------------------------------------------------

    async def receive(self) -> Message:
        if self.expect_continue:
            self.expect_continue = False
            if not self.started and not self.disconnected:
                self.conn.write(CONTINUE)
        if self.body_returned or self.complete:
            # The whole body was delivered: the only thing left to report is a disconnect.
            while not self.disconnected and not self.complete:
                await self._wait()
            return DISCONNECT
        while not self.body and self.more_body and not self.disconnected:
            self.conn.want_body()
            await self._wait()
        if self.disconnected and self.more_body:
            return DISCONNECT
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        self.body_size = 0
        self.conn.body_consumed()
        if not self.more_body:
            self.body_returned = True
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    # -- ASGI send -------------------------------------------------------------------------

    def send(self, message: Message) -> Awaitable[None]:
        """ASGI send. A plain call that does the work and returns DONE (see octo.http.done)
        when the message needs no wait, as both of a whole response's do; a coroutine
        for the rest."""
        # A dict (as apps send): compiled, its lookups are dict calls, not the mapping
        # protocol's (600 instructions of a hello request, callgrind).
        fields: dict[str, Any] = message if isinstance(message, dict) else dict(message)
        kind = fields["type"]
        if not isinstance(kind, str):
            raise ProtocolMisuse(f"unexpected ASGI message type {kind!r}")
        # A str from here: compiled, the tests below are string compares, not the generic
        # rich comparison (350 instructions a hello request, callgrind).
        if kind == "http.response.body":
            if not self.started or self.complete or self.disconnected:
                return self._refuse_body()
            more = fields.get("more_body", False)
            self._write_body(fields.get("body", b""), more)
            if not more:
                self._finish()
            elif self.conn.write_paused:
                return self.conn.drain()
        elif kind == "http.response.start":
            if self.started:
                self._misuse("http.response.start sent twice")
            self.started = True
            self.status = fields["status"]
            self.headers = fields.get("headers", ())
        else:
            return self._send_file_message(kind, fields)
        return DONE

    async def _send_file_message(self, kind: str, fields: dict[str, Any]) -> None:
        """send() of a message that sends a file (or of an unknown one)."""
        if kind == "http.response.pathsend":
            if not self.started or self.head_sent:
                self._misuse("http.response.pathsend must follow http.response.start")
            if self.disconnected:
                await self._swallow()
                return
            try:
                await self._pathsend(fields["path"])
            except ClientDisconnected:  # a write failed before the loop reported the loss
                self.lose()
                await self._swallow()
        elif kind == FILE_MESSAGE:  # --static (octo.http.static): an open file's bytes
            if not self.started or self.head_sent:
                raise ProtocolMisuse(f"{FILE_MESSAGE} must follow http.response.start")
            await self._send_file(fields["fd"], fields["offset"], fields["size"])
        else:
            raise ProtocolMisuse(f"unexpected ASGI message type {kind!r}")

    async def _refuse_body(self) -> None:
        if not self.started:
            self._misuse("http.response.body sent before http.response.start")
        if self.complete:
            self._misuse("http.response.body sent after the response completed")
        await self._swallow()

    async def _swallow(self) -> None:
        """A send after the client left. HTTP scopes declare ASGI spec 2.3, where that
        send is a no-op, as under uvicorn: under 2.4 it raised an OSError, which Starlette
        turns into a ClientDisconnect escaping the app, and every ASGI error tracker
        (Sentry's middleware) recorded one event per early close. The no-op yields, so
        an app that only sends cannot starve the loop, and one that sends *again* after
        that (it listens to neither ``receive`` nor the no-op) is cancelled: a
        CancelledError, which error trackers and ``except Exception`` leave alone.
        Starlette stops by itself during the first yield (its disconnect listener)."""
        if not self.swallowed:
            self.swallowed = True
            error_log.debug("client went away while the app was sending")
        elif self.task is not None and not self.task.done():
            error_log.debug("the app sends on after its client left: cancelled")
            self.silenced = True
            self.task.cancel()
        await asyncio.sleep(0)

    def _misuse(self, what: str) -> NoReturn:
        if self.timed_out:
            # Answered (504) or aborted at the deadline: an app that caught the
            # cancellation and sends on is told again, not reported for misusing ASGI.
            raise asyncio.CancelledError("--max-execution-time passed")
        raise ProtocolMisuse(what)

    def _write_body(self, body: bytes, more: bool) -> None:
        if not self.head_sent:
            head = self._build_head(None if more else len(body))
            self.head_sent = True
            if self.head or _no_body(self.status) or not body:
                out = head
            elif self.chunked:
                out = head_and_chunk(head, body)
            else:
                out = head + body
        elif body and not self.head:
            out = chunk(body) if self.chunked else body
        else:
            out = b""
        if self.remaining is not None and not self.head:
            self.remaining -= len(body)
        self.sent_bytes += len(body)
        if more:
            self._hold(out)
        elif self.held is None:
            self.conn.write(out)  # the common case: a whole response in one write
        else:
            self.held.append(out)  # _finish writes it with what is held

    def _hold(self, out: bytes) -> None:
        if self.held is None:
            self.held = [out]
            self.conn.loop.call_soon(self.flush)
        else:
            self.held.append(out)
        self.held_size += len(out)
        if self.held_size >= HOLD_MAX:
            self.flush()

    def flush(self, tail: bytes = b"") -> None:
        """Hand what is held (and *tail*) to the transport in one write."""
        held = self.held
        if held is not None:
            self.held = None
            self.held_size = 0
            if tail:
                held.append(tail)
            if not self.disconnected:
                self.conn.write(b"".join(held))
        elif tail:
            self.conn.write(tail)

    def _finish(self) -> None:
        self.flush(CHUNK_END if self.chunked and not self.head else b"")
        self.complete = True
        remaining = self.remaining  # None: no Content-Length; 0: exactly met
        if remaining and not self.head:
            if remaining > 0:
                error_log.error("response ended %d bytes short of its Content-Length; closing",
                                remaining)
            else:
                error_log.error("response body exceeded its Content-Length by %d bytes; "
                                "closing", -remaining)
            self.keep_alive = False
        self.conn.response_done(self)

    def _build_head(self, final_length: int | None) -> bytes:
        """The status line and headers; *final_length* is the body size when it is all known."""
        conn = self.conn
        encoded, length, close = encoded_headers(self.headers)
        if length is not None:
            self.remaining = length
        if close:
            self.keep_alive = False
        parts = [PREFIXES.get(self.status, conn.server_header), encoded]
        if _no_body(self.status) or self.status < 200:
            pass
        elif length is None:
            if final_length is not None:
                parts += (b"content-length: ", b"%d" % final_length, b"\r\n")
            elif not self.http10:
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False  # HTTP/1.0 without a length: end marked by close
        if conn.echo_request_id is not None and self.request_id is not None:
            self._echo_request_id(conn.echo_request_id, parts, encoded)
        if conn.stopping or not self.keep_alive:
            self.keep_alive = False
            parts.append(b"connection: close\r\n")
        elif self.http10:
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _echo_request_id(self, name: bytes, parts: list[bytes], encoded: bytes) -> None:
        """--echo-request-id: the id in the response, unless the app sent that header."""
        assert self.request_id is not None
        if (b"\n" + encoded.lower()).find(b"\n" + name + b":") == -1:
            parts += (name, b": ", self.request_id.encode("latin-1"), b"\r\n")

    async def _pathsend(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            await self._send_file(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    async def _send_file(self, fd: int, offset: int, size: int) -> None:
        """The head, then *size* bytes of *fd* from *offset*: zero-copy where possible. A
        file that shrinks while it is sent cannot give the promised length: the connection
        is closed (what went out is all the client gets), like nginx does."""
        head = self._build_head(size)
        self.head_sent = True
        self.conn.write(head)
        try:
            if not self.head and not _no_body(self.status):
                if size >= SENDFILE_MIN and self.conn.can_sendfile():
                    await self.conn.sendfile(fd, offset, size)
                else:
                    await self._copy_file(fd, offset, size)
        except FileShrank as exc:
            error_log.warning("%s; closing the connection", exc)
            self.complete = True  # nothing more can be sent for this response
            self.abort()
            return
        if self.remaining is not None and not self.head:
            self.remaining -= size
        if not self.head and not _no_body(self.status):
            self.sent_bytes += size  # what the access log reports: none for HEAD
        self._finish()

    async def _copy_file(self, fd: int, offset: int, size: int) -> None:
        """Fallback when zero-copy is not possible (TLS, or bytes still queued)."""
        sent = 0
        while sent < size:
            part = os.pread(fd, min(256 * 1024, size - sent), offset + sent)
            if not part:
                raise FileShrank(sent, size)
            self.conn.write(chunk(part) if self.chunked else part)
            sent += len(part)
            if self.conn.write_paused:
                await self.conn.drain()
            if self.disconnected:
                raise ClientDisconnected("client disconnected during pathsend")

    # -- running the app -------------------------------------------------------------------

    async def run(self, app: ASGIApp, count_the_wait: bool) -> None:
        """Call the app and see to how it ended (the request's Task runs this). The
        connection counts the queue wait itself when the Task starts eagerly."""
        conn = self.conn
        if count_the_wait:
            count_wait(conn.stats.wait, self.began)
        # Typed to return None, an app may still return something: it is logged below.
        call: Callable[[Scope, Receive, Send], Awaitable[object]] = app
        try:
            result = await call(self.scope, self.receive, self.send)
        except ClientDisconnected:
            # Possibly before the transport reported the loss (a write failing first).
            self.ended = self.ended or "client disconnected"
            error_log.debug("client went away while the app was sending")
        except BaseException as exc:
            if isinstance(exc, GeneratorExit):
                raise  # the pending coroutine is being closed (collected): no one to answer
            if isinstance(exc, asyncio.CancelledError):
                if self.timed_out or self.silenced:
                    return  # our own deadline or a client gone: the worker carries on
                self.ended = self.ended or "cancelled"  # e.g. at the --graceful-timeout
                if not self.started:
                    self._fail(503, None)
                raise
            if self.disconnected and caused_by_disconnect(exc):
                # The client's choice, not the app's error (nor an error tracker's event).
                error_log.debug("client went away: the app raised %s", type(exc).__name__)
            else:
                self._fail(500, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if result is not None:
                error_log.error("ASGI app returned a value instead of None: %r", result)
            if not self.started:
                if self.disconnected:  # nobody to answer: the app did the right thing
                    error_log.debug("ASGI app returned without a response after a disconnect")
                else:
                    error_log.error("ASGI app returned without sending a response")
                self._fail(500, None)
            elif not self.complete:
                if self.disconnected:  # it stopped because its client had gone
                    error_log.debug("ASGI app returned mid-response after a disconnect")
                else:
                    error_log.error("ASGI app returned without completing the response")
                    self.abort()
        finally:
            conn.app_done(self)

    def arm_deadline(self) -> None:
        """--max-execution-time: expire once the request is that old, timed by the loop."""
        conn = self.conn
        left = self.started_at + conn.max_execution_time - conn.clock()
        self.deadline_timer = self.conn.loop.call_later(max(0.0, left), self._deadline_due)

    def _deadline_due(self) -> None:
        self.deadline_timer = None
        self.expire(self.conn.clock())

    def disarm_deadline(self) -> None:
        timer = self.deadline_timer
        if timer is not None:
            self.deadline_timer = None
            timer.cancel()

    def expire(self, now: float) -> bool:
        """Enforce --max-execution-time at *now* (ServerState.clock): before the limit,
        wait again (a loop timer may fire a millisecond early: its clock is coarser);
        after it, answer 504 if nothing of the response went out, else abort the
        connection; then cancel the app. True if it fired."""
        task = self.task
        if task is None or task.done() or self.complete or self.timed_out:
            return False
        limit = self.conn.max_execution_time
        left = self.started_at + limit - now
        if left > 0:
            self.deadline_timer = self.conn.loop.call_later(left, self._deadline_due)
            return False
        self.timed_out = True
        if self.head_sent:
            error_log.warning("%s %s exceeded --max-execution-time %ss after its response "
                              "started: connection aborted", escape(self.scope["method"]),
                              escape(self.scope["path"]), limit)
            self.abort("aborted: --max-execution-time")
        else:
            error_log.warning("%s %s exceeded --max-execution-time %ss: cancelled, "
                              "answering 504", escape(self.scope["method"]),
                              escape(self.scope["path"]), limit)
            self._fail(504, None)
        task.cancel()
        return True

    def _fail(self, status: int, exc: BaseException | None) -> None:
        if exc is not None:
            error_log.error("Exception in ASGI application", exc_info=exc)
        if self.disconnected:
            return
        if self.started and self.head_sent:
            self.abort()  # half a response went out: the only honest end is a close
            return
        try:
            self.send_error(status)
        except Exception:
            error_log.exception("could not send the %d response; closing", status)
            self.abort()

    def send_error(self, status: int) -> None:
        """The server answers for the app (500 after an exception, 503 when cancelled)."""
        self.started = True
        self.status = status
        self.keep_alive = False
        self.headers = [(b"content-type", b"text/plain; charset=utf-8")]
        self._write_body(error_body(status), False)
        self._finish()

    def abort(self, why: str = "aborted") -> None:
        """End the exchange and the connection without completing the response; *why*
        goes to its access-log line."""
        self.flush()  # what the app sent before it failed still goes out before the close
        self.lose(why)
        self.conn.abort()
