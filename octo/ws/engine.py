"""The seam between octo's WebSocket layer and a sans-I/O framing library.

An engine owns the wire format only: it completes the opening handshake, parses frames
(masking, fragmentation, control frames, permessage-deflate, UTF-8 of text) and serializes
what the connection sends. Everything else — the ASGI state machine, message assembly and
the size limit, backpressure, keepalive pings, close timeouts, 1001 on shutdown, denial
responses — lives once, in protocol.py, whichever engine runs underneath.

Output is pulled: engine calls queue bytes, and :meth:`Engine.data_to_send` hands them
over; an empty ``bytes`` in that list means "close the TCP connection now" (the closing
handshake is over, or the connection failed).
"""

from __future__ import annotations

from typing import Protocol

Headers = list[tuple[bytes, bytes]]

CLOSE_REASON_MAX = 123  # a Close frame's payload is at most 125 bytes: 2 for the code


class Sink(Protocol):
    """What an engine reports to its connection while it parses."""

    def on_data(self, payload: str | bytes, fin: bool) -> None:
        """A piece of a data message: ``str`` for text (already UTF-8 checked), ``bytes``
        for binary; *fin* marks its last piece."""

    def on_pong(self) -> None:
        """A Pong frame arrived (pings from the peer are answered by the engine)."""


class Engine(Protocol):
    """One WebSocket connection's framing, from the 101 response to the closed stream."""

    def accept(self, request: bytes, subprotocol: str | None, headers: Headers) -> int:
        """Answer the upgrade *request* (its raw head): 101 with *subprotocol*, the app's
        extra *headers* and the negotiated extensions; or, for an invalid handshake, a
        refusal followed by end of stream. Returns the status code queued."""

    def receive_data(self, data: bytes) -> None:
        """Parse *data*, reporting messages and pongs to the sink; ignored once closed."""

    def receive_eof(self) -> None:
        """The peer closed its side of the TCP connection."""

    def send_message(self, payload: str | bytes) -> None:
        """Queue one text (``str``) or binary message. Only while :attr:`is_open`."""

    def send_ping(self, payload: bytes) -> None:
        """Queue a Ping frame. Only while :attr:`is_open`."""

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (the peer's Close then ends the stream)."""

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): send Close if still possible, end the
        stream, and parse nothing more."""

    def data_to_send(self) -> list[bytes]:
        """Take the queued output; ``b""`` in it means end of stream."""

    @property
    def is_open(self) -> bool:
        """Open for messages: accepted, and no Close sent or received."""

    @property
    def close_received(self) -> tuple[int, str] | None:
        """The code and reason of the peer's Close frame (1005 if it had none), if any."""


def truncate_reason(reason: str) -> str:
    """*reason* cut to what fits into a Close frame, never inside a UTF-8 sequence."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= CLOSE_REASON_MAX:
        return reason
    return encoded[:CLOSE_REASON_MAX].decode("utf-8", "ignore")
