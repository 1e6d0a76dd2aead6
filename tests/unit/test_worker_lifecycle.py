"""A worker's lifecycle in the master as data (octo.master.lifecycle): the table itself,
and the arbiter's decisions driven through it with an injected clock (``maintain(now)``),
forks and signals recorded instead of made."""

from __future__ import annotations

import signal
from itertools import count

import pytest

from octo.config import Config
from octo.master.arbiter import Arbiter
from octo.master.lifecycle import (
    TRANSITIONS,
    Event,
    InvalidTransition,
    Phase,
    WorkerInfo,
    next_phase,
)
from octo.process.slots import SlotState


def test_every_change_not_in_the_table_is_refused() -> None:
    for phase in Phase:
        for event in Event:
            if (phase, event) in TRANSITIONS:
                assert next_phase(phase, event) is TRANSITIONS[phase, event]
            else:
                with pytest.raises(InvalidTransition, match=f"{event.name} .* {phase.name}"):
                    next_phase(phase, event)
    assert (Phase.SERVING, Event.READY) not in TRANSITIONS  # readiness is seen once


@pytest.mark.parametrize("events, phase, ready, stopping", [
    ([], Phase.BOOTING, False, False),
    ([Event.READY], Phase.SERVING, True, False),
    ([Event.READY, Event.STOP], Phase.DRAINING, True, True),
    ([Event.STOP], Phase.STOPPING, False, True),
    ([Event.STOP, Event.READY], Phase.DRAINING, True, True),  # it got as far as serving
    ([Event.STOP, Event.STOP], Phase.STOPPING, False, True),  # a fast stop after a graceful
])
def test_a_workers_phase_and_what_the_master_reads_of_it(events: list[Event], phase: Phase,
                                                        ready: bool, stopping: bool) -> None:
    info = WorkerInfo(1, 0, 0, 0.0)
    for event in events:
        info.on(event)
    assert (info.phase, info.ready, info.stopping) == (phase, ready, stopping)
    assert info.counted is (not stopping)


def test_the_flags_are_transitions_not_settable_state() -> None:
    info = WorkerInfo(1, 0, 0, 0.0, ready=True)
    assert info.phase is Phase.SERVING
    with pytest.raises(InvalidTransition, match="cannot boot again"):
        info.ready = False
    info.stopping = True
    assert info.phase is Phase.DRAINING
    with pytest.raises(InvalidTransition, match="cannot take that back"):
        info.stopping = False


def fake_arbiter(**settings: object) -> tuple[Arbiter, list[tuple[int, int]]]:
    arbiter = Arbiter(Config(app="x:app", **settings), [], None)  # type: ignore[arg-type]
    pids = count(10_001)
    sent: list[tuple[int, int]] = []
    arbiter._fork = lambda: next(pids)  # type: ignore[method-assign]
    arbiter._signal = lambda pid, sig: sent.append((pid, sig))  # type: ignore[method-assign]
    return arbiter, sent


def serves(arbiter: Arbiter, info: WorkerInfo, now: float) -> None:
    """The worker's own heartbeat: its slot says READY."""
    arbiter.slots.write(info.index, info.pid, SlotState.READY, now, now, 0, 0, 0.0, 0)


def test_a_reload_retires_each_old_worker_once_its_replacement_serves() -> None:
    arbiter, sent = fake_arbiter(workers=1)
    old = WorkerInfo(1, 0, 0, 0.0, ready=True)
    arbiter.workers[1] = old
    arbiter.slots.set_high({0})
    arbiter.reload()
    arbiter.maintain(now=1.0)  # forks the replacement
    new = arbiter.workers[10_001]
    assert (new.phase, new.replaces, old.replaced_by) == (Phase.BOOTING, 1, 10_001)
    assert not old.counted and sent == []  # the old one serves on meanwhile
    arbiter.maintain(now=2.0)
    assert old.phase is Phase.SERVING and sent == []  # nothing until the new one serves
    serves(arbiter, new, 3.0)
    arbiter.maintain(now=3.0)
    assert (new.phase, old.phase) == (Phase.SERVING, Phase.DRAINING)
    assert sent == [(1, signal.SIGTERM)]
    arbiter.slots.release()


def test_a_stop_sends_each_worker_its_signal_by_phase() -> None:
    """A fast stop: SIGQUIT to a worker that serves, SIGTERM to one still booting (it may
    not have its handlers yet); both are then told to stop, and a second stop changes
    nothing."""
    arbiter, sent = fake_arbiter(workers=2)
    serving = WorkerInfo(1, 0, 0, 0.0, ready=True)
    booting = WorkerInfo(2, 1, 0, 0.0)
    arbiter.workers.update({1: serving, 2: booting})
    arbiter.stop(graceful=False)
    assert sorted(sent) == [(1, signal.SIGQUIT), (2, signal.SIGTERM)]
    assert (serving.phase, booting.phase) == (Phase.DRAINING, Phase.STOPPING)
    arbiter.stop(graceful=False)
    assert len(sent) == 2
    serves(arbiter, booting, 5.0)
    arbiter.refresh_ready()  # it got as far as serving before the signal took
    assert booting.phase is Phase.DRAINING
    arbiter.slots.release()
