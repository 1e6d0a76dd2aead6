"""ASGI WebSockets on the sans-I/O ``websockets`` protocol (framing, masking, deflate and the
closing handshake are the library's; the ASGI state machine and I/O are ours).

The HTTP layer parses the upgrade request and hands the transport over; the app then sees
``websocket.connect`` and either accepts, closes (403) or sends its own denial response
(``websocket.http.response``). Backpressure both ways: the app's sends wait while the
transport's buffer is full, and reading pauses while received messages pile up unread.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from websockets.exceptions import InvalidState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from octo.http.flow import WriteFlow
from octo.http.response import error_body, simple_response
from octo.logs import access_log, error_log, format_access

if TYPE_CHECKING:
    from octo.http.protocol import HttpProtocol, ServerState

Message = dict[str, Any]
MAX_QUEUED = 32  # unread messages before reading pauses
HIGH_WATER = 64 * 1024
CLOSE_TIMEOUT = 5.0


class WebSocketProtocol(asyncio.Protocol):
    """One upgraded connection, from the upgrade request to the closed socket."""

    def __init__(self, http: HttpProtocol, scope: dict[str, Any], rest: bytes) -> None:
        self.server: ServerState = http.server
        self.loop = http.loop
        self.transport: asyncio.Transport = http.transport
        self.scope = _websocket_scope(scope)
        self.pending = bytearray(rest)  # bytes sent before the 101 (should be none)
        self.proto: ServerProtocol | None = None
        self.inbox: collections.deque[Message] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.flow = WriteFlow(self.loop)
        self.connect_sent = False
        self.accepted = False
        self.closed = False  # transport gone
        self.close_sent = False
        self.response_started = False
        self.read_paused = False
        self.fragments: list[bytes] = []
        self.fragment_opcode: Opcode | None = None
        self.ping_task: asyncio.Task[None] | None = None
        self.pong_waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

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
        if self.proto is None:
            self.pending += data
            if len(self.pending) > HIGH_WATER:
                self.transport.pause_reading()
                self.read_paused = True
            return
        self._feed(data)

    def eof_received(self) -> bool | None:
        if self.proto is not None:
            self.proto.receive_eof()
            self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.websockets.discard(self)
        if self.ping_task is not None:
            self.ping_task.cancel()
        code = 1006
        reason = ""
        if self.proto is not None and self.proto.close_rcvd is not None:
            code, reason = self.proto.close_rcvd.code, self.proto.close_rcvd.reason
        self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.flow.wake()

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    # -- incoming frames --------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        proto = self.proto
        assert proto is not None
        proto.receive_data(data)
        for event in proto.events_received():
            if isinstance(event, Frame):
                self._frame(event)
        self._flush()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.PONG:
            if self.pong_waiter is not None and not self.pong_waiter.done():
                self.pong_waiter.set_result(None)
            return
        if opcode in (Opcode.TEXT, Opcode.BINARY):
            self.fragment_opcode = opcode
            self.fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            self.fragments.append(bytes(frame.data))
        else:
            return  # PING is answered by the protocol; CLOSE ends in connection_lost
        if frame.fin:
            self._message(b"".join(self.fragments))
            self.fragments = []

    def _message(self, data: bytes) -> None:
        if self.fragment_opcode is Opcode.TEXT:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                assert self.proto is not None
                self.proto.fail(1007, "invalid UTF-8 in a text message")
                return
            self._deliver({"type": "websocket.receive", "text": text})
        else:
            self._deliver({"type": "websocket.receive", "bytes": data})
        if len(self.inbox) >= MAX_QUEUED and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()  # the app is not reading: stop reading too

    def _deliver(self, message: Message) -> None:
        self.inbox.append(message)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _flush(self) -> None:
        proto = self.proto
        if proto is None or self.closed:
            return
        for data in proto.data_to_send():
            if data:
                self.transport.write(data)
            else:
                self.transport.close()  # the protocol says: end of stream
                return

    # -- ASGI -----------------------------------------------------------------------------

    async def receive(self) -> Message:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        while not self.inbox:
            self.waiter = self.loop.create_future()
            await self.waiter
        message = self.inbox.popleft()
        if self.read_paused and len(self.inbox) < MAX_QUEUED // 2 and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if self.closed and kind != "websocket.close":
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
        if not self.accepted or self.proto is None:
            raise RuntimeError("websocket.send before websocket.accept")
        if self.close_sent:
            raise RuntimeError("websocket.send after websocket.close")
        text, data = message.get("text"), message.get("bytes")
        try:
            if text is not None:
                self.proto.send_text(text.encode("utf-8"))
            elif data is not None:
                self.proto.send_binary(data)
            else:
                raise RuntimeError("websocket.send needs 'text' or 'bytes'")
        except InvalidState:
            raise ClientDisconnectedWS("websocket is closing") from None
        self._flush()

    def _accept(self, message: MutableMapping[str, Any]) -> None:
        if self.accepted or self.response_started:
            raise RuntimeError("websocket.accept sent twice or after a denial response")
        cfg = self.server.config
        subprotocol = message.get("subprotocol")
        extensions = [ServerPerMessageDeflateFactory()] if cfg.ws_per_message_deflate else []
        proto = ServerProtocol(extensions=extensions,
                               subprotocols=[subprotocol] if subprotocol else None,
                               max_size=cfg.ws_max_size)
        # The protocol's parser starts by reading the upgrade request: give it the request we
        # already parsed (re-serialized), so it moves on to frames.
        proto.receive_data(_raw_request(self.scope))
        requests = [e for e in proto.events_received() if isinstance(e, Request)]
        if not requests:
            raise RuntimeError("the upgrade request could not be re-read")
        response = proto.accept(requests[0])
        if response.status_code != 101:
            error_log.info("websocket handshake refused: %s",
                           response.body.decode(errors="replace"))
            proto.send_response(response)
            self.proto = proto
            self._flush()
            self.transport.close()
            return
        for name, value in message.get("headers", ()):
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        proto.send_response(response)
        self.proto = proto
        self.accepted = True
        self._flush()
        self._log(101)
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self._feed(data)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if cfg.ws_ping_interval:
            self.ping_task = self.loop.create_task(self._keepalive())

    def _close(self, code: int, reason: str) -> None:
        if not self.accepted:
            if not self.response_started and not self.closed:
                self.transport.write(simple_response(403, error_body(403)))
                self._log(403)
                self.transport.close()
            self.response_started = True
            return
        if self.close_sent or self.closed or self.proto is None:
            return
        self.close_sent = True
        if self.proto.state is State.OPEN:
            self.proto.send_close(code, reason)
            self._flush()
        self.loop.call_later(CLOSE_TIMEOUT, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self.closed:
            self.transport.abort()

    def _deny_start(self, message: MutableMapping[str, Any]) -> None:
        if self.accepted or self.response_started:
            raise RuntimeError("websocket.http.response.start after accept or twice")
        self.response_started = True
        from octo.http.response import status_line

        status = message["status"]
        head = [status_line(status)]
        head += [name + b": " + value + b"\r\n" for name, value in message.get("headers", ())]
        head.append(b"connection: close\r\ntransfer-encoding: chunked\r\n\r\n")
        self.transport.write(b"".join(head))
        self._log(status)

    def _deny_body(self, message: MutableMapping[str, Any]) -> None:
        if not self.response_started or self.accepted:
            raise RuntimeError("websocket.http.response.body before its start")
        body = message.get("body", b"")
        if body:
            self.transport.write(b"%x\r\n%s\r\n" % (len(body), body))
        if not message.get("more_body", False):
            self.transport.write(b"0\r\n\r\n")
            self.transport.close()

    async def _keepalive(self) -> None:
        cfg = self.server.config
        while not self.closed and self.proto is not None:
            await asyncio.sleep(cfg.ws_ping_interval)
            if self.closed or self.proto.state is not State.OPEN:
                return
            self.pong_waiter = self.loop.create_future()
            self.proto.send_ping(b"octo")
            self._flush()
            try:
                await asyncio.wait_for(asyncio.shield(self.pong_waiter), cfg.ws_ping_timeout)
            except TimeoutError:
                error_log.info("websocket ping not answered in %ss: closing",
                               cfg.ws_ping_timeout)
                self.proto.fail(1011, "keepalive ping timeout")
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
            if not self.accepted and not self.response_started and not self.closed:
                self.transport.write(simple_response(500, error_body(500)))
                self.transport.close()
            elif self.accepted:
                self._close(1011, "internal error")
            return
        if not self.accepted and not self.response_started and not self.closed:
            self._close(1000, "")  # returned without accepting: a denial
        elif self.accepted and not self.close_sent:
            self._close(1000, "")

    def _log(self, status: int) -> None:
        if self.server.access_log:
            client = self.scope["client"]
            who = f"{client[0]}:{client[1]}" if client else "-"
            access_log.info(format_access(who, "GET", self.scope["raw_path"].decode("latin-1"),
                                          "1.1", status) + " (websocket)")


class ClientDisconnectedWS(OSError):
    """``send`` after the WebSocket client went away."""


def _websocket_scope(http_scope: dict[str, Any]) -> dict[str, Any]:
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


def upgrade(http: HttpProtocol, scope: dict[str, Any], rest: bytes) -> None:
    """The HTTP layer's upgrade hook: hand a websocket upgrade over to a new protocol."""
    WebSocketProtocol(http, scope, rest).start(http)


__all__ = ["upgrade", "WebSocketProtocol"]
