"""The ``websockets`` backend: framing by the websockets package's sans-I/O ServerProtocol."""

from __future__ import annotations

import codecs
from typing import Any

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from octo.ws.engine import Headers, Sink


class _ServerProtocol(ServerProtocol):
    """ServerProtocol that lets a Close frame arrive between the fragments of a message.

    RFC 6455 5.4 allows control frames in the middle of a fragmented message, and 5.5.1
    makes the peer's Close end the connection, taking the unfinished message with it. The
    library instead fails such a connection with 1002 "incomplete fragmented message"
    (Autobahn|Testsuite case 7.1.5 expects the Close echoed): forget the unfinished message
    before the library looks at it, and the Close is handled like any other.
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None
        super().recv_frame(frame)


class WebsocketsEngine:
    """The Engine (see engine.py) on websockets' ServerProtocol.

    The library checks the size of each frame against ``max_size`` before reading it (and
    bounds inflation by it); text is decoded here, as each frame arrives, so invalid UTF-8
    fails the connection (1007) without waiting for the end of a fragmented message.
    """

    def __init__(self, sink: Sink, deflate: bool, max_size: int) -> None:
        self.sink = sink
        self.deflate = deflate
        self.max_size = max_size
        self.proto: ServerProtocol | None = None
        self.decoder: codecs.IncrementalDecoder | None = None  # text in progress
        self.text = False  # the message in progress is text
        self.failed = False

    def accept(self, request: bytes, subprotocol: str | None, headers: Headers) -> int:
        extensions = [ServerPerMessageDeflateFactory()] if self.deflate else []
        proto = self.proto = _ServerProtocol(
            extensions=extensions, max_size=self.max_size,
            subprotocols=[Subprotocol(subprotocol)] if subprotocol else None)
        # The parser starts by reading the upgrade request: give it the one the HTTP layer
        # already parsed (re-serialized), so it moves on to frames.
        proto.receive_data(request)
        requests = [e for e in proto.events_received() if isinstance(e, Request)]
        if not requests:
            raise RuntimeError("the upgrade request could not be re-read")
        response = proto.accept(requests[0])
        if response.status_code == 101:
            for name, value in headers:
                response.headers[name.decode("latin-1")] = value.decode("latin-1")
        proto.send_response(response)  # a refusal also queues the end of the stream
        return response.status_code

    def receive_data(self, data: bytes) -> None:
        proto = self.proto
        assert proto is not None
        proto.receive_data(data)
        for event in proto.events_received():
            if isinstance(event, Frame):
                self._frame(event)
                if self.failed:  # by us or the sink (size): the rest is not reported
                    return

    def _frame(self, frame: Frame) -> None:
        """Report one frame to the sink."""
        opcode = frame.opcode
        if opcode is Opcode.TEXT:
            self.text = True
            # A whole message in one frame, the common case, needs no incremental decoder.
            self.decoder = None if frame.fin else codecs.getincrementaldecoder("utf-8")()
            self._text(frame.data, frame.fin)
        elif opcode is Opcode.BINARY:
            self.text = False
            self.sink.on_data(bytes(frame.data), frame.fin)
        elif opcode is Opcode.CONT:
            if self.text:
                self._text(frame.data, frame.fin)
            else:
                self.sink.on_data(bytes(frame.data), frame.fin)
        elif opcode is Opcode.PONG:
            self.sink.on_pong()
        # PING is answered by the library; CLOSE ends the stream through data_to_send.

    def _text(self, data: Any, fin: bool) -> None:
        decoder = self.decoder
        try:
            text = bytes(data).decode("utf-8") if decoder is None else decoder.decode(data, fin)
        except UnicodeDecodeError:
            self.fail(1007, "invalid UTF-8 in a text message")
            return
        self.sink.on_data(text, fin)

    def receive_eof(self) -> None:
        assert self.proto is not None
        self.proto.receive_eof()

    def send_message(self, payload: str | bytes) -> None:
        assert self.proto is not None
        if isinstance(payload, str):
            self.proto.send_text(payload.encode("utf-8"))
        else:
            self.proto.send_binary(payload)

    def send_ping(self, payload: bytes) -> None:
        assert self.proto is not None
        self.proto.send_ping(payload)

    def close(self, code: int, reason: str) -> None:
        assert self.proto is not None
        if self.proto.state is State.OPEN:
            self.proto.send_close(code, reason)

    def fail(self, code: int, reason: str) -> None:
        assert self.proto is not None
        self.failed = True
        self.proto.fail(code, reason)

    def data_to_send(self) -> list[bytes]:
        return self.proto.data_to_send() if self.proto is not None else []

    @property
    def is_open(self) -> bool:
        return self.proto is not None and self.proto.state is State.OPEN

    @property
    def close_received(self) -> tuple[int, str] | None:
        rcvd = self.proto.close_rcvd if self.proto is not None else None
        return None if rcvd is None else (rcvd.code, rcvd.reason)
