"""The ``wsproto`` backend: framing by the wsproto package's sans-I/O WSConnection."""

from __future__ import annotations

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import RemoteProtocolError

from octo.ws.engine import Headers, Sink

# wsproto inflates whatever compressed bytes it is given in one go, with no output limit:
# fed a whole read, one call could expand 256 KiB into ~250 MB before the size check sees
# any of it. Feeding a deflate connection this much at a time bounds one step's output to
# ~1000 times it (deflate's largest ratio), and the check runs after every step.
INFLATE_STEP = 4096


class WsprotoEngine:
    """The Engine (see engine.py) on wsproto's WSConnection.

    wsproto reports text already decoded (UTF-8 checked as the bytes arrive) and hands over
    pieces of a message as they are read; the message size limit is the connection's.
    """

    def __init__(self, sink: Sink, deflate: bool, max_size: int) -> None:
        self.sink = sink
        self.deflate = PerMessageDeflate() if deflate else None
        self.conn = WSConnection(ConnectionType.SERVER)
        self.out: list[bytes] = []
        self.done = False  # the stream is over (or failed): parse nothing more
        self.rcvd: tuple[int, str] | None = None

    def accept(self, request: bytes, subprotocol: str | None, headers: Headers) -> int:
        conn = self.conn
        try:
            conn.receive_data(request)  # checks the key, version and upgrade headers
            read = any(isinstance(event, Request) for event in conn.events())
        except RemoteProtocolError as exc:
            return self._refuse(exc.event_hint)
        except UnicodeError:  # a Host that is not IDNA
            return self._refuse(None)
        if not read:
            raise RuntimeError("the upgrade request could not be re-read")
        extensions: list[Extension] = [self.deflate] if self.deflate is not None else []
        self.out.append(conn.send(AcceptConnection(
            subprotocol=subprotocol, extensions=extensions, extra_headers=headers)))
        return 101

    def _refuse(self, hint: object) -> int:
        refusal = hint if isinstance(hint, RejectConnection) else RejectConnection()
        self.out += [self.conn.send(refusal), b""]
        self.done = True
        return refusal.status_code

    def receive_data(self, data: bytes) -> None:
        if self.done:
            return  # after the closing handshake, data is discarded (RFC 6455 1.4)
        if self.deflate is None or not self.deflate.enabled() or len(data) <= INFLATE_STEP:
            self._parse(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), INFLATE_STEP):
            if self.done:
                return
            self._parse(bytes(view[start:start + INFLATE_STEP]))

    def _parse(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        for event in conn.events():
            if isinstance(event, Message):
                self.sink.on_data(event.data, event.message_finished)
            elif isinstance(event, Ping):
                self.out.append(conn.send(event.response()))
            elif isinstance(event, Pong):
                self.sink.on_pong()
            elif isinstance(event, CloseConnection):
                self._closed(event)
            if self.done:
                return

    def _closed(self, event: CloseConnection) -> None:
        state = self.conn.state
        if state is ConnectionState.OPEN:
            # wsproto reports a protocol error in the peer's frames as a CloseConnection
            # carrying the code to answer with (1002, 1007...), state unchanged.
            self.fail(event.code, event.reason or "")
            return
        self.rcvd = (event.code, event.reason or "")
        if state is ConnectionState.REMOTE_CLOSING:
            self.out.append(self.conn.send(event.response()))  # echo the peer's Close
        self.out.append(b"")  # the server ends the TCP connection first (RFC 6455 7.1.1)
        self.done = True

    def receive_eof(self) -> None:
        self.done = True

    def send_message(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            self.out.append(self.conn.send(TextMessage(data=payload)))
        else:
            self.out.append(self.conn.send(BytesMessage(data=payload)))

    def send_ping(self, payload: bytes) -> None:
        self.out.append(self.conn.send(Ping(payload=payload)))

    def close(self, code: int, reason: str) -> None:
        if self.conn.state is ConnectionState.OPEN:
            self.out.append(self.conn.send(CloseConnection(code=code, reason=reason)))

    def fail(self, code: int, reason: str) -> None:
        if self.done:
            return
        if self.conn.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self.out.append(self.conn.send(CloseConnection(code=code, reason=reason)))
        self.out.append(b"")
        self.done = True

    def data_to_send(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    @property
    def is_open(self) -> bool:
        return not self.done and self.conn.state is ConnectionState.OPEN

    @property
    def close_received(self) -> tuple[int, str] | None:
        return self.rcvd
