"""What a worker counts for ``--metrics``, kept in plain Python objects of its own process.

The request path only bumps list items and adds floats here (no shared memory, no lock, no
call but the clock and one ``bisect``); the worker's heartbeat copies the lot into its
shared-memory slot twice a second (``octo.process.slots``), where the master reads it. A
leaf module: the HTTP layer, the runtime and the master all import it.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

# The per-request counters live in octo.http.counters, a module of the HTTP core (compiled
# with it: the request path bumps them); re-exported here for everything else.
from octo.http.counters import BOUNDS, BUCKETS, STATUS_CLASSES, Histogram, RequestStats, count_wait

# An X-Request-Start further from now than this is a broken clock or a made-up value.
REQUEST_START_SANITY = 3600.0

clock = time.monotonic  # one clock for every duration a worker measures


def request_start_age(value: bytes, now: float | None = None) -> float | None:
    """Seconds since an ``X-Request-Start`` value (``t=`` prefix optional; seconds,
    milliseconds or microseconds since the epoch, as nginx, Heroku and HAProxy send it), or
    None for a value that cannot be one. A start slightly in the future (clocks of two
    hosts) counts as 0."""
    text = value.strip()
    if text[:2] in (b"t=", b"T="):
        text = text[2:]
    try:
        stamp = float(text)
    except ValueError:
        return None
    if stamp != stamp or stamp <= 0:  # NaN, zero, negative
        return None
    if stamp > 1e14:
        stamp /= 1e6  # microseconds
    elif stamp > 1e11:
        stamp /= 1e3  # milliseconds
    age = (time.time() if now is None else now) - stamp
    if abs(age) > REQUEST_START_SANITY:
        return None
    return max(0.0, age)


class TaskStats:
    """Dispatched tasks of this process: queued now (in every ``rt.tasks`` of it), handed
    to a task worker, and the seconds they waited (from ``dispatch`` to being taken)."""

    __slots__ = ("handed", "waited", "queues")

    def __init__(self) -> None:
        self.handed = 0
        self.waited = 0.0
        self.queues: weakref.WeakSet[Any] = weakref.WeakSet()  # objects with .queued

    def queued(self) -> int:
        return sum(queue.queued for queue in list(self.queues))


TASKS = TaskStats()
# Ticks this process skipped (still running when due), ran and saw fail: bumped by
# octo.runtime.tick, copied into the worker's heartbeat slot.
TICKS_SKIPPED = [0]
TICKS_RUN = [0]
TICKS_FAILED = [0]
# The same by tick name: [runs, skipped, failed] (the per-name series of --metrics).
TICKS_BY_NAME: dict[str, list[int]] = {}


def tick_counts() -> list[tuple[str, int, int, int]]:
    """(name, runs, skipped, failed) of every tick this process counted, by name."""
    return sorted((name, runs, skipped, failed)
                  for name, (runs, skipped, failed) in list(TICKS_BY_NAME.items()))
# The tables this process opened, by name: the heartbeat reports their usage.
TABLES: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def table_usage() -> list[tuple[str, int, int]]:
    """(name, rows used, capacity) of this process's tables, by name."""
    return sorted((name, *table.usage()) for name, table in list(TABLES.items()))


__all__ = ["BOUNDS", "BUCKETS", "STATUS_CLASSES", "TASKS", "TABLES", "Histogram", "RequestStats",
           "TaskStats", "clock", "count_wait", "request_start_age", "table_usage"]
