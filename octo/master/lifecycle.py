"""A worker's lifecycle, as the master sees it, as data: every phase change goes through
``TRANSITIONS`` (shaped like octo.http.states for connections).

::

    BOOTING --READY--> SERVING --STOP--> DRAINING
       |                                    ^
       +--STOP--> STOPPING --READY----------+

READY is the worker's slot saying READY (or RETIRING: it served its --max-requests); STOP
is the master sending it SIGTERM or SIGQUIT. A worker STOPPING was told to stop before it
served (nothing to drop); one DRAINING finishes its in-flight requests. Who replaces whom
(a reload, recycling) is a relation between two workers, kept beside the phase: when a
replacement turns READY, the worker it replaces gets STOP (Arbiter.refresh_ready).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil


class Phase(enum.Enum):
    __hash__ = object.__hash__  # identity hashing: table lookups stay in C
    BOOTING = "booting"  # forked; importing the app, lifespan startup
    SERVING = "serving"  # counted, checked for liveness, recycled, reloaded
    STOPPING = "stopping"  # told to stop before it served
    DRAINING = "draining"  # told to stop after it served: finishing in-flight requests


class Event(enum.Enum):
    __hash__ = object.__hash__
    READY = "ready"  # its slot says READY or RETIRING
    STOP = "stop"  # SIGTERM or SIGQUIT sent


TRANSITIONS: dict[tuple[Phase, Event], Phase] = {
    (Phase.BOOTING, Event.READY): Phase.SERVING,
    (Phase.BOOTING, Event.STOP): Phase.STOPPING,
    (Phase.SERVING, Event.STOP): Phase.DRAINING,
    # Told to stop while booting, it got as far as serving (its handlers were installed).
    (Phase.STOPPING, Event.READY): Phase.DRAINING,
    # A fast stop after a graceful one signals every worker again.
    (Phase.STOPPING, Event.STOP): Phase.STOPPING,
    (Phase.DRAINING, Event.STOP): Phase.DRAINING,
}

# Phases of a worker that has served (its slot said READY once).
SERVED = frozenset({Phase.SERVING, Phase.DRAINING})
# Phases of a worker the master told to stop.
TOLD_TO_STOP = frozenset({Phase.STOPPING, Phase.DRAINING})


class InvalidTransition(RuntimeError):
    pass


def next_phase(phase: Phase, event: Event) -> Phase:
    try:
        return TRANSITIONS[phase, event]
    except KeyError:
        raise InvalidTransition(f"{event.name} is not allowed in phase {phase.name}") from None


class WorkerInfo:
    """One child of the master: its phase, whom it replaces or is replaced by, and what
    the master measured of it. ``ready`` and ``stopping`` read the phase; setting them
    True is the READY or STOP transition."""

    __slots__ = ("pid", "index", "generation", "spawned", "role", "phase", "replaced_by",
                 "replaces", "memory_strikes", "kill_at", "cause", "last_beat",
                 "beat_seen_at", "beat_read_at", "process")

    def __init__(self, pid: int, index: int, generation: int, spawned: float,
                 role: str = "http", ready: bool = False, stopping: bool = False,
                 replaced_by: int | None = None, replaces: int | None = None) -> None:
        self.pid = pid
        self.index = index
        self.generation = generation
        self.spawned = spawned
        self.role = role  # "http" or "task"
        self.phase = Phase.BOOTING
        self.replaced_by = replaced_by  # pid of the worker that will take over from this one
        self.replaces = replaces
        self.memory_strikes = 0
        # Set when the master dumped a hung worker's stack: SIGKILL is due then.
        self.kill_at: float | None = None
        self.cause = ""  # why the master stops or replaces it (a restart cause of --metrics)
        self.last_beat = 0.0  # the heartbeat value the master last read from the slot...
        self.beat_seen_at: float | None = None  # ...and when (master's clock) it changed
        self.beat_read_at = 0.0  # when the master last read it
        self.process: psutil.Process | None = None
        self.ready = ready
        self.stopping = stopping

    def on(self, event: Event) -> Phase:
        """Apply *event* (InvalidTransition if the table has no such change)."""
        self.phase = next_phase(self.phase, event)
        return self.phase

    @property
    def ready(self) -> bool:
        """It has served (its slot said READY once)."""
        return self.phase in SERVED

    @ready.setter
    def ready(self, value: bool) -> None:
        if value and not self.ready:
            self.on(Event.READY)
        elif not value and self.ready:
            raise InvalidTransition(f"worker {self.pid} served: it cannot boot again")

    @property
    def stopping(self) -> bool:
        """The master told it to stop (SIGTERM or SIGQUIT sent)."""
        return self.phase in TOLD_TO_STOP

    @stopping.setter
    def stopping(self, value: bool) -> None:
        if value:
            self.on(Event.STOP)
        elif self.stopping:
            raise InvalidTransition(f"worker {self.pid} was told to stop: it cannot take "
                                    "that back")

    @property
    def counted(self) -> bool:
        """It counts toward its role's target: not told to stop, not being replaced."""
        return not self.stopping and self.replaced_by is None

    def __repr__(self) -> str:
        return (f"WorkerInfo(pid={self.pid}, role={self.role}, phase={self.phase.name}, "
                f"generation={self.generation}, replaces={self.replaces}, "
                f"replaced_by={self.replaced_by})")
