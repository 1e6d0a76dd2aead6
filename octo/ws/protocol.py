"""ASGI WebSockets over a sans-I/O framing engine (engine.py: wsproto or websockets).

The HTTP layer parses the upgrade request and hands the transport over; the app then sees
``websocket.connect`` and either accepts, closes (403) or sends its own denial response
(``websocket.http.response``). Everything here is the same for both engines: the ASGI state
machine, message assembly and ``--ws-max-size`` (1009), backpressure both ways (the app's
sends wait while the transport's buffer is full; reading pauses while received messages pile
up unread), keepalive pings, the close timeout and 1001 on shutdown.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from octo.errors import ClientDisconnectedWS
from octo.http.flow import WriteFlow
from octo.http.head import CHUNK_END, chunk, encode_headers
from octo.http.response import error_body, simple_response, status_line
from octo.logs import error_log
from octo.stats import clock
from octo.types import Message, Scope
from octo.ws.access import log_handshake
from octo.ws.engine import Engine, Sink, truncate_reason

if TYPE_CHECKING:
    from octo.http.protocol import HttpProtocol, ServerState, UpgradeHook

EngineFactory = Callable[[Sink, bool, int], Engine]
MAX_QUEUED = 32  # unread messages before reading pauses
HIGH_WATER = 64 * 1024
CLOSE_TIMEOUT = 5.0
PING_PAYLOAD = b"octo"


class WebSocketProtocol(asyncio.Protocol):
    """One upgraded connection, from the upgrade request to the closed socket."""

    def __init__(self, http: HttpProtocol, scope: Scope, rest: bytes,
                 make_engine: EngineFactory) -> None:
        self.server: ServerState = http.server
        self.loop = http.loop
        self.transport: asyncio.Transport = http.transport
        self.scope = _websocket_scope(scope)
        self.make_engine = make_engine
        self.max_size: int = self.server.config.ws_max_size
        self.pending = bytearray(rest)  # bytes sent before the 101 (should be none)
        self.engine: Engine | None = None
        self.inbox: collections.deque[Message] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.flow = WriteFlow(self.loop)
        self.connect_sent = False
        self.accepted = False
        self.refused = False  # the handshake was invalid: the engine answered it
        self.closed = False  # transport gone
        self.eof_sent = False  # the engine ended the stream: write nothing more
        self.close_sent = False
        self.response_started = False
        self.read_paused = False
        self.parts: list[Any] = []  # pieces of the message being received
        self.size = 0  # its size so far, in bytes
        self.ping_task: asyncio.Task[None] | None = None
        self.pong_waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.began = clock()  # the upgrade, for the handshake's access-log duration

    # -- hand-over from HTTP ------------------------------------------------------------

    def start(self, http: HttpProtocol) -> None:
        server = self.server
        server.connections.discard(http)
        server.websockets.add(self)
        self.transport.set_protocol(self)
        task = self.task = self.loop.create_task(self._run())
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    # -- transport callbacks --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        engine = self.engine
        if engine is None:
            self.pending += data
            if len(self.pending) > HIGH_WATER:
                self._pause_reading()
            return
        engine.receive_data(data)
        self._flush()

    def eof_received(self) -> bool | None:
        if self.engine is not None:
            self.engine.receive_eof()
            self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.websockets.discard(self)
        if self.ping_task is not None:
            self.ping_task.cancel()
        rcvd = self.engine.close_received if self.engine is not None else None
        code, reason = rcvd if rcvd is not None else (1006, "")
        self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.flow.wake()

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    # -- the engine's Sink: incoming messages ---------------------------------------------

    def on_data(self, payload: str | bytes, fin: bool) -> None:
        """Assemble a message from the engine's pieces; enforce --ws-max-size."""
        size = self.size + _utf8_size(payload)
        if size > self.max_size:
            assert self.engine is not None
            error_log.info("websocket message over --ws-max-size (%d bytes): closing 1009",
                           self.max_size)
            self.engine.fail(1009, f"message over {self.max_size} bytes")
            self.parts, self.size = [], 0
            return
        if not fin:
            self.parts.append(payload)
            self.size = size
            return
        if self.parts:
            self.parts.append(payload)
            payload = payload[:0].join(self.parts)  # "" or b"": the message's own type
            self.parts, self.size = [], 0
        if isinstance(payload, str):
            self._deliver({"type": "websocket.receive", "text": payload})
        else:
            self._deliver({"type": "websocket.receive", "bytes": payload})
        if len(self.inbox) >= MAX_QUEUED:
            self._pause_reading()  # the app is not reading: stop reading too

    def on_pong(self) -> None:
        if self.pong_waiter is not None and not self.pong_waiter.done():
            self.pong_waiter.set_result(None)

    def _deliver(self, message: Message) -> None:
        self.inbox.append(message)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _flush(self) -> None:
        engine = self.engine
        if engine is None or self.closed or self.eof_sent:
            return
        for data in engine.data_to_send():
            if data:
                self.transport.write(data)
            else:
                self.eof_sent = True
                self.transport.close()  # the engine says: end of stream
                return

    def _pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    # -- ASGI -----------------------------------------------------------------------------

    async def receive(self) -> Message:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        while not self.inbox:
            self.waiter = self.loop.create_future()
            await self.waiter
        message = self.inbox.popleft()
        if self.read_paused and len(self.inbox) < MAX_QUEUED // 2 and self.engine is not None:
            self._resume_reading()
        return message

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if (self.closed or self.refused) and kind != "websocket.close":
            raise ClientDisconnectedWS("websocket client went away")
        if kind == "websocket.send":
            self._send_data(message)
            if self.flow.paused and not self.closed:
                await self.flow.wait()
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._close(message.get("code", 1000), message.get("reason") or "")
        elif kind == "websocket.http.response.start":
            self._deny_start(message)
        elif kind == "websocket.http.response.body":
            self._deny_body(message)
        else:
            raise RuntimeError(f"unexpected ASGI websocket message {kind!r}")

    def _send_data(self, message: MutableMapping[str, Any]) -> None:
        engine = self.engine
        if not self.accepted or engine is None:
            raise RuntimeError("websocket.send before websocket.accept")
        if self.close_sent:
            raise RuntimeError("websocket.send after websocket.close")
        if not engine.is_open:
            raise ClientDisconnectedWS("websocket is closing")
        text, data = message.get("text"), message.get("bytes")
        if text is not None:
            engine.send_message(text)
        elif data is not None:
            engine.send_message(bytes(data))
        else:
            raise RuntimeError("websocket.send needs 'text' or 'bytes'")
        self._flush()

    def _accept(self, message: MutableMapping[str, Any]) -> None:
        if self.accepted or self.response_started:
            raise RuntimeError("websocket.accept sent twice or after a denial response")
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            raise RuntimeError(f"websocket.accept with subprotocol {subprotocol!r}, which "
                               f"the client did not offer ({self.scope['subprotocols']})")
        cfg = self.server.config
        headers = list(message.get("headers", ()))
        if self.server.server_header:  # as on every HTTP response (--server-header)
            headers.insert(0, (b"server", b"octo"))
        engine = self.make_engine(self, cfg.ws_per_message_deflate, cfg.ws_max_size)
        status = engine.accept(_raw_request(self.scope), subprotocol, headers)
        self.engine = engine
        self._flush()
        self._log(status, headers)
        if status != 101:
            error_log.info("websocket handshake refused (%d): invalid upgrade request", status)
            self.refused = True
            return
        self.accepted = True
        self._resume_reading()  # paused if the client sent much before the 101
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self.data_received(data)
        if cfg.ws_ping_interval:
            self.ping_task = self.loop.create_task(self._keepalive())

    def _close(self, code: int, reason: str) -> None:
        if not self.accepted:
            if not self.response_started and not self.closed and not self.refused:
                self.transport.write(simple_response(403, error_body(403)))
                self._log(403)
                self.transport.close()
            self.response_started = True
            return
        if self.close_sent or self.closed or self.engine is None:
            return
        self.close_sent = True
        if self.engine.is_open:
            self.engine.close(code, truncate_reason(reason))
            self._flush()
        self.loop.call_later(CLOSE_TIMEOUT, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self.closed:
            self.transport.abort()

    def _deny_start(self, message: MutableMapping[str, Any]) -> None:
        if self.accepted or self.response_started:
            raise RuntimeError("websocket.http.response.start after accept or twice")
        status = message["status"]
        # Checked as every HTTP response's are: a header that would split the response is
        # the app's error (500), never written.
        headers, _, _ = encode_headers(message.get("headers", ()))
        self.response_started = True
        self.transport.write(b"".join((status_line(status), headers,
                                       b"connection: close\r\ntransfer-encoding: chunked\r\n\r\n")))
        self._log(status, message.get("headers", ()))

    def _deny_body(self, message: MutableMapping[str, Any]) -> None:
        if not self.response_started or self.accepted:
            raise RuntimeError("websocket.http.response.body before its start")
        body = message.get("body", b"")
        if body:
            self.transport.write(chunk(body))
        if not message.get("more_body", False):
            self.transport.write(CHUNK_END)
            self.transport.close()

    async def _keepalive(self) -> None:
        cfg = self.server.config
        engine = self.engine
        assert engine is not None
        while not self.closed:
            await asyncio.sleep(cfg.ws_ping_interval)
            if self.closed or not engine.is_open:
                return
            self.pong_waiter = self.loop.create_future()
            engine.send_ping(PING_PAYLOAD)
            self._flush()
            try:
                await asyncio.wait_for(asyncio.shield(self.pong_waiter), cfg.ws_ping_timeout)
            except TimeoutError:
                error_log.info("websocket ping not answered in %ss: closing",
                               cfg.ws_ping_timeout)
                engine.fail(1011, "keepalive ping timeout")
                self._flush()
                return

    def shutdown(self) -> None:
        """Server stopping or worker reloading: close with 1001 (going away)."""
        if self.accepted and not self.closed:
            self._close(1001, "server shutting down")
        elif not self.closed:
            self.transport.close()

    async def _run(self) -> None:
        try:
            await self.server.app(self.scope, self.receive, self.send)
        except ClientDisconnectedWS:
            pass
        except Exception:
            error_log.exception("Exception in ASGI websocket application")
            if not self.accepted and not self.response_started and not self.closed \
                    and not self.refused:
                self.transport.write(simple_response(500, error_body(500)))
                self.transport.close()
            elif self.accepted:
                self._close(1011, "internal error")
            return
        if not self.accepted and not self.response_started and not self.closed:
            self._close(1000, "")  # returned without accepting: a denial
        elif self.accepted and not self.close_sent:
            self._close(1000, "")

    def _log(self, status: int, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        if self.server.access_log:
            log_handshake(self.server.access, self.scope, status, self.began, headers)


def _websocket_scope(http_scope: Scope) -> dict[str, Any]:
    protocols = []
    for name, value in http_scope["headers"]:
        if name == b"sec-websocket-protocol":
            protocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    scheme = "wss" if http_scope["scheme"] in ("https", "wss") else "ws"
    scope: dict[str, Any] = {key: http_scope[key] for key in (
        "http_version", "server", "client", "root_path", "path", "raw_path", "query_string",
        "headers") if key in http_scope}
    scope.update({"type": "websocket", "asgi": {"version": "3.0", "spec_version": "2.4"},
                  "scheme": scheme, "subprotocols": protocols,
                  "extensions": {"websocket.http.response": {}}})
    if "state" in http_scope:
        scope["state"] = http_scope["state"]
    return scope


def _raw_request(scope: dict[str, Any]) -> bytes:
    target = scope["raw_path"]
    if scope["query_string"]:
        target += b"?" + scope["query_string"]
    lines = [b"GET " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in scope["headers"]]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _utf8_size(payload: str | bytes) -> int:
    """Bytes on the wire of a message piece (str.isascii() is O(1): the common case is
    free; other text is encoded to be counted exactly)."""
    if isinstance(payload, bytes) or payload.isascii():
        return len(payload)
    return len(payload.encode("utf-8", "surrogatepass"))


def engine_factory(backend: str) -> EngineFactory:
    """The Engine class of *backend* ("wsproto" or "websockets"), imported on demand."""
    if backend == "wsproto":
        from octo.ws.wsproto_engine import WsprotoEngine

        return WsprotoEngine
    if backend == "websockets":
        from octo.ws.websockets_engine import WebsocketsEngine

        return WebsocketsEngine
    raise ValueError(f"unknown WebSocket backend {backend!r}")


def upgrader(backend: str) -> UpgradeHook:
    """The HTTP layer's upgrade hook for *backend*: hand each websocket upgrade over to a
    new WebSocketProtocol on that engine."""
    make_engine = engine_factory(backend)

    def upgrade(http: HttpProtocol, scope: Scope, rest: bytes) -> None:
        WebSocketProtocol(http, scope, rest, make_engine).start(http)

    return upgrade


__all__ = ["ClientDisconnectedWS", "WebSocketProtocol", "engine_factory", "upgrader"]
