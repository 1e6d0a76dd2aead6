"""The request counters a worker keeps for ``--metrics`` (re-exported by octo.stats).

A module of the HTTP core (octo.http.core): compiled with it, its classes are native, and
the request path's updates are struct fields and list items instead of attribute lookups
on Python objects (about 2,000 instructions a request less). The worker's heartbeat copies
them into its shared-memory slot (``octo.master.slots``).
"""

from __future__ import annotations

import time
from typing import Final

# Histogram bucket upper bounds in seconds (Prometheus' ``le``, inclusive: hence
# bisect_left), the last bucket is +Inf.
# The defaults of prometheus_client, extended down to 1 ms and up to 30 s.
BOUNDS: Final[tuple[float, ...]] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                    0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_monotonic: Final = time.monotonic  # Final: compiled, a C variable, not a dict lookup
BUCKETS: Final = 15  # len(BOUNDS) + 1, a literal: compiled, a C constant
STATUS_CLASSES = 6  # index status // 100: 0 (no response: the client left), 1xx .. 5xx


def bucket(value: float) -> int:
    """The bucket of *value*: ``bisect.bisect_left(BOUNDS, value)``, written out as a
    search tree of literal comparisons, which compile to C double compares. bisect's C call
    cost 700 instructions, a loop over the tuple (each item a boxed float) 470 for a request
    over 1 ms, this under 100 (callgrind). Most of a worker's waits and many requests take
    under a millisecond: tested first. A test checks it against bisect."""
    if not value > 0.001:  # NaN too, as bisect places it
        return 0
    if value <= 0.05:
        if value <= 0.005:
            return 1 if value <= 0.0025 else 2
        if value <= 0.01:
            return 3
        return 4 if value <= 0.025 else 5
    if value <= 1.0:
        if value <= 0.1:
            return 6
        if value <= 0.25:
            return 7
        return 8 if value <= 0.5 else 9
    if value <= 5.0:
        return 10 if value <= 2.5 else 11
    if value <= 10.0:
        return 12
    return 13 if value <= 30.0 else 14


class Histogram:
    """Counts per bucket (not cumulative: the exposition adds them up) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * BUCKETS
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bucket(value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)


class RequestStats:
    """One worker's request counters since it started."""

    __slots__ = ("status", "duration", "wait", "proxy_wait", "busy", "busy_since")

    def __init__(self) -> None:
        self.status: list[int] = [0] * STATUS_CLASSES
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
    waits.observe(_monotonic() - began)  # octo.stats.clock
