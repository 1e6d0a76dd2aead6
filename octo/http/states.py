"""Connection lifecycle as data: every state change goes through ``TRANSITIONS``."""

from __future__ import annotations

import enum

from octo.http.errors import InvalidTransition


class Conn(enum.Enum):
    # Members are singletons: identity hashing keeps table lookups in C (Enum's own
    # __hash__ is Python code and showed up in profiles of the request path).
    __hash__ = object.__hash__
    IDLE = "idle"  # between requests; keep-alive deadline running
    HEAD = "head"  # first byte of a request seen; header deadline running
    ACTIVE = "active"  # request admitted, app running or response in progress
    CLOSING = "closing"  # finish the current response, then close
    UPGRADED = "upgraded"  # handed over to another protocol (WebSocket)
    CLOSED = "closed"


class Event(enum.Enum):
    __hash__ = object.__hash__
    BYTES = "bytes"  # request bytes arrived
    HEAD_DONE = "head_done"  # request line and headers parsed and accepted
    KEEP_ALIVE = "keep_alive"  # response finished, connection may be reused
    PIPELINED = "pipelined"  # a request parsed while the previous one was answered starts
    LAST_RESPONSE = "last_response"  # response finished, connection must close
    SHUTDOWN = "shutdown"  # server is stopping
    UPGRADE = "upgrade"
    TIMEOUT = "timeout"  # header or keep-alive deadline passed
    REJECT = "reject"  # malformed or over-limit request
    LOST = "lost"  # peer went away
    EOF = "eof"  # peer half-closed inside a request message


_ANY = tuple(Conn)
TRANSITIONS: dict[tuple[Conn, Event], Conn] = {
    (Conn.IDLE, Event.BYTES): Conn.HEAD,
    (Conn.HEAD, Event.BYTES): Conn.HEAD,
    (Conn.HEAD, Event.HEAD_DONE): Conn.ACTIVE,
    # A pipelined request parsed while one is in flight keeps the connection ACTIVE.
    (Conn.ACTIVE, Event.HEAD_DONE): Conn.ACTIVE,
    (Conn.ACTIVE, Event.BYTES): Conn.ACTIVE,
    (Conn.ACTIVE, Event.KEEP_ALIVE): Conn.IDLE,
    (Conn.IDLE, Event.PIPELINED): Conn.ACTIVE,
    (Conn.ACTIVE, Event.LAST_RESPONSE): Conn.CLOSED,
    (Conn.ACTIVE, Event.SHUTDOWN): Conn.CLOSING,
    (Conn.ACTIVE, Event.UPGRADE): Conn.UPGRADED,
    (Conn.HEAD, Event.UPGRADE): Conn.UPGRADED,
    (Conn.CLOSING, Event.BYTES): Conn.CLOSING,
    (Conn.CLOSING, Event.HEAD_DONE): Conn.CLOSING,
    (Conn.CLOSING, Event.KEEP_ALIVE): Conn.CLOSED,
    (Conn.CLOSING, Event.LAST_RESPONSE): Conn.CLOSED,
    (Conn.CLOSING, Event.SHUTDOWN): Conn.CLOSING,
    (Conn.IDLE, Event.SHUTDOWN): Conn.CLOSED,
    (Conn.HEAD, Event.SHUTDOWN): Conn.CLOSED,
    # Header, keep-alive, --body-timeout and --send-timeout deadlines.
    **{(state, Event.TIMEOUT): Conn.CLOSED for state in (Conn.IDLE, Conn.HEAD, Conn.ACTIVE,
                                                         Conn.CLOSING)},
    **{(state, Event.EOF): Conn.CLOSED for state in (Conn.HEAD, Conn.ACTIVE, Conn.CLOSING)},
    **{(state, Event.REJECT): Conn.CLOSED for state in (Conn.IDLE, Conn.HEAD, Conn.ACTIVE,
                                                        Conn.CLOSING)},
    **{(state, Event.LOST): Conn.CLOSED for state in _ANY},
    (Conn.CLOSED, Event.BYTES): Conn.CLOSED,
    (Conn.CLOSED, Event.SHUTDOWN): Conn.CLOSED,
    (Conn.CLOSED, Event.KEEP_ALIVE): Conn.CLOSED,
    (Conn.CLOSED, Event.LAST_RESPONSE): Conn.CLOSED,
    (Conn.UPGRADED, Event.SHUTDOWN): Conn.UPGRADED,
}

# The same table by state, then event, for the request path: two lookups on identity
# hashes where a (state, event) key is a tuple built and hashed (three transitions a
# request, 700 instructions, callgrind). Derived: every transition is still written above.
STEPS: dict[Conn, dict[Event, Conn]] = {state: {} for state in Conn}
for (_state, _event), _next in TRANSITIONS.items():
    STEPS[_state][_event] = _next
del _state, _event, _next


def next_state(state: Conn, event: Event) -> Conn:
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise InvalidTransition(f"{event.name} is not allowed in state {state.name}") from None
