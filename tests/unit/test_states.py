from __future__ import annotations

import pytest

from octo.http.states import STEPS, TRANSITIONS, Conn, Event, InvalidTransition, next_state


def test_request_lifecycle_path() -> None:
    state = Conn.IDLE
    for event, expected in [(Event.BYTES, Conn.HEAD), (Event.HEAD_DONE, Conn.ACTIVE),
                            (Event.KEEP_ALIVE, Conn.IDLE), (Event.BYTES, Conn.HEAD),
                            (Event.HEAD_DONE, Conn.ACTIVE), (Event.SHUTDOWN, Conn.CLOSING),
                            (Event.KEEP_ALIVE, Conn.CLOSED)]:
        state = next_state(state, event)
        assert state is expected


def test_a_pipelined_request_starts_from_idle_only() -> None:
    # The previous response let the connection go IDLE; the next request was parsed already.
    assert next_state(Conn.IDLE, Event.PIPELINED) is Conn.ACTIVE
    for state in (Conn.HEAD, Conn.ACTIVE, Conn.CLOSING, Conn.CLOSED, Conn.UPGRADED):
        with pytest.raises(InvalidTransition):
            next_state(state, Event.PIPELINED)


def test_every_state_can_be_lost() -> None:
    for state in Conn:
        assert TRANSITIONS[state, Event.LOST] is Conn.CLOSED


def test_closed_is_terminal() -> None:
    for (state, _event), target in TRANSITIONS.items():
        if state is Conn.CLOSED:
            assert target is Conn.CLOSED


@pytest.mark.parametrize("state, event", [
    (Conn.IDLE, Event.HEAD_DONE), (Conn.IDLE, Event.KEEP_ALIVE), (Conn.CLOSED, Event.HEAD_DONE),
    (Conn.UPGRADED, Event.TIMEOUT), (Conn.IDLE, Event.EOF),
])
def test_invalid_transitions_raise(state: Conn, event: Event) -> None:
    with pytest.raises(InvalidTransition, match=event.name):
        next_state(state, event)


def test_steps_hold_exactly_the_transitions() -> None:
    flattened = {(state, event): target for state, events in STEPS.items()
                 for event, target in events.items()}
    assert flattened == TRANSITIONS
    assert set(STEPS) == set(Conn)
