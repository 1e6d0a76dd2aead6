"""What a worker counts for ``--metrics``, kept in plain Python objects of its own process.

The request path only bumps list items and adds floats here (no shared memory, no lock, no
call but the clock and one ``bisect``); the worker's heartbeat copies the lot into its
shared-memory slot twice a second (``octo.process.slots``), where the master reads it. A
leaf module: the HTTP layer, the runtime and the master all import it.
"""

from __future__ import annotations

import time
import weakref
from bisect import bisect_left
from typing import Any

# Histogram bucket upper bounds in seconds (Prometheus' ``le``, inclusive: hence
# bisect_left), the last bucket is +Inf.
# The defaults of prometheus_client, extended down to 1 ms and up to 30 s.
BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BUCKETS = len(BOUNDS) + 1
STATUS_CLASSES = 6  # index status // 100: 0 (no response: the client left), 1xx .. 5xx
# An X-Request-Start further from now than this is a broken clock or a made-up value.
REQUEST_START_SANITY = 3600.0

clock = time.monotonic  # one clock for every duration a worker measures


class Histogram:
    """Counts per bucket (not cumulative: the exposition adds them up) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BOUNDS, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)


class RequestStats:
    """One worker's request counters since it started."""

    __slots__ = ("status", "duration", "wait", "proxy_wait", "busy", "busy_since")

    def __init__(self) -> None:
        self.status = [0] * STATUS_CLASSES
        self.duration = Histogram()  # the request queued (or its app called) to the return
        self.wait = Histogram()  # the request's head parsed to the app being called
        self.proxy_wait = Histogram()  # X-Request-Start (from a trusted proxy) to the app call
        self.busy = 0.0  # seconds with at least one request in flight (closed periods)
        self.busy_since = 0.0  # start of the open period, while requests are in flight

    def count_status(self, status: int) -> None:
        self.status[status // 100 if 100 <= status < 600 else 0] += 1

    def busy_seconds(self, now: float, in_flight: int) -> float:
        """Busy time up to *now*, the open period included."""
        return self.busy + (now - self.busy_since if in_flight > 0 else 0.0)


def count_wait(waits: Histogram, began: float) -> None:
    """The queue wait of a request whose app is called now: since *began* (its head parsed,
    or its queueing behind the requests before it on the connection). Measured here, at the
    call, not where the app's task is made: without an eager task start (before Python
    3.12) the call waits for its turn on the event loop, behind every callback ready before
    it, which is where requests queue in a worker that has more to do than it can."""
    wait = clock() - began
    waits.counts[bisect_left(BOUNDS, wait)] += 1
    waits.total += wait


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
