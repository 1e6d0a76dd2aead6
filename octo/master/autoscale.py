"""Load the master reads from the workers' slots, and the decisions it takes from it.

Once a step (:data:`STEP` seconds) the master turns the HTTP workers' counters into one
:class:`LoadSample`: the mean *queue wait* of the requests whose app was called in the step
(first byte to app call, or since the proxy's X-Request-Start when one was sent: the larger)
and the mean *busy-ness* of the workers (the share of the step with at least one request in
flight: RoadRunner's "no free worker", measured). Two users, both pure and driven by the
caller's clock, so the tests give them any time they like:

* :class:`LongWaitWatch` (``--max-wait-time``): an episode starts when the wait stays above
  the limit for :data:`SUSTAIN_WAIT` steps and ends after as many steps below it.
* :class:`Autoscaler` (``--workers MIN:MAX``): one worker more when the wait or the
  busy-ness stayed above its threshold for :data:`SUSTAIN` steps, one fewer when the
  workers stayed idle as long; at most one change per step, none within the cooldown of
  the last one, never outside MIN..MAX.
"""

from __future__ import annotations

import dataclasses

from octo.process.slots import StatsView

STEP = 1.0  # seconds between samples
SUSTAIN = 3  # steps a condition must hold before the autoscaler acts on it
SUSTAIN_WAIT = 2  # steps above (or below) --max-wait-time that start (or end) an episode


@dataclasses.dataclass(frozen=True, slots=True)
class LoadSample:
    wait: float | None  # mean queue wait in seconds (None: no request reached its app)
    busy: float  # mean share of the step the workers had a request in flight, 0..1
    workers: int  # HTTP workers sampled (each read at the start and end of the step)


@dataclasses.dataclass(slots=True)
class _Reading:
    at: float
    busy: float
    waits: int
    wait_total: float
    proxied: int
    proxy_total: float


class LoadMeter:
    """Differences of the workers' counters between two calls of :meth:`sample`."""

    def __init__(self) -> None:
        self.last: dict[int, _Reading] = {}

    def sample(self, now: float, workers: dict[int, StatsView]) -> LoadSample | None:
        """*workers*: pid -> its counters now, for the HTTP workers that serve. None until
        a worker has been read twice."""
        busy = elapsed = wait_total = proxy_total = 0.0
        waits = proxied = sampled = 0
        readings = {}
        for pid, stats in workers.items():
            reading = _Reading(now, stats.busy, stats.wait.count, stats.wait.total,
                               stats.proxy_wait.count, stats.proxy_wait.total)
            readings[pid] = reading
            before = self.last.get(pid)
            if before is None or now <= before.at:
                continue
            sampled += 1
            elapsed += now - before.at
            busy += max(0.0, reading.busy - before.busy)
            waits += reading.waits - before.waits
            wait_total += reading.wait_total - before.wait_total
            proxied += reading.proxied - before.proxied
            proxy_total += reading.proxy_total - before.proxy_total
        self.last = readings
        if not sampled:
            return None
        means = [total / count for total, count in ((wait_total, waits),
                                                    (proxy_total, proxied)) if count > 0]
        return LoadSample(max(means) if means else None, min(1.0, busy / elapsed), sampled)


@dataclasses.dataclass(slots=True)
class LongWaitWatch:
    """``--max-wait-time``: episodes of queue wait above *limit* seconds."""

    limit: float
    active: bool = False
    episodes: int = 0
    above: int = 0
    below: int = 0
    peak: float = 0.0

    def observe(self, wait: float | None) -> str | None:
        """Feed one step's wait; "started" or "ended" when an episode does."""
        if wait is None:
            return None  # no request reached its app this step: no evidence either way
        if wait > self.limit:
            self.above, self.below = self.above + 1, 0
            self.peak = max(self.peak, wait) if self.active else wait
        else:
            self.above, self.below = 0, self.below + 1
        if not self.active and self.above >= SUSTAIN_WAIT:
            self.active = True
            self.episodes += 1
            return "started"
        if self.active and self.below >= SUSTAIN_WAIT:
            self.active = False
            return "ended"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Labels:
    """How a decision's reason names the wait and its flag (HTTP or task workers)."""

    wait: str = "queue wait"
    wait_flag: str = "--scale-up-wait"


@dataclasses.dataclass(frozen=True, slots=True)
class ScalePolicy:
    minimum: int
    maximum: int
    up_wait: float  # --scale-up-wait: seconds of mean queue wait
    up_busy: float  # --scale-up-busy: share of time busy, 0..1
    down_busy: float  # --scale-down-busy
    cooldown: float  # --scale-cooldown: seconds after a change before the next one
    labels: Labels = Labels()


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    change: int  # +1 or -1
    reason: str


class Autoscaler:
    """The decisions of ``--workers MIN:MAX``; :meth:`decide` is called once per step."""

    def __init__(self, policy: ScalePolicy) -> None:
        self.policy = policy
        self.above = 0
        self.below = 0
        self.last_change = float("-inf")
        self.changes = {"up": 0, "down": 0}

    def decide(self, now: float, current: int, sample: LoadSample | None) -> Decision | None:
        """The change to make now with *current* workers, or None."""
        policy = self.policy
        if sample is None:
            self.above = self.below = 0
            return None
        hot = self._hot(sample)
        idle = not hot and sample.busy < policy.down_busy and (
            sample.wait is None or sample.wait <= policy.up_wait / 2)
        self.above = self.above + 1 if hot else 0
        self.below = self.below + 1 if idle else 0
        if now - self.last_change < policy.cooldown:
            return None
        decision = None
        if self.above >= SUSTAIN and current < policy.maximum:
            decision = Decision(+1, f"{hot} for {self.above} s")
        elif self.below >= SUSTAIN and current > policy.minimum:
            decision = Decision(-1, f"idle (busy {sample.busy:.1%} < --scale-down-busy "
                                    f"{policy.down_busy:.0%}) for {self.below} s")
        if decision is not None:
            self.last_change = now
            self.above = self.below = 0
            self.changes["up" if decision.change > 0 else "down"] += 1
        return decision

    def _hot(self, sample: LoadSample) -> str:
        """Why the workers are overloaded ("" if they are not)."""
        policy = self.policy
        if sample.wait is not None and sample.wait > policy.up_wait:
            shown = "infinite (none taken)" if sample.wait == float("inf") else \
                f"{sample.wait * 1000:.0f} ms"
            return (f"{policy.labels.wait} {shown} > {policy.labels.wait_flag} "
                    f"{policy.up_wait * 1000:.0f} ms")
        if sample.busy > policy.up_busy:
            return f"busy {sample.busy:.1%} > --scale-up-busy {policy.up_busy:.0%}"
        return ""
