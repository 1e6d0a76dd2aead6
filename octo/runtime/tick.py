"""Tick timers that run once per server, never overlapping (Octane::tick).

Every worker runs a small scheduler, but only the *leader* runs ticks: leadership is a
shared lock row that the leader renews several times a second and that expires one second
after its owner stops renewing it (killed, hung), when another worker takes over. A tick
still running when it is next due is skipped, not stacked, and counted — also when the run
is in another worker: a leader whose loop stalled past its lease loses the lead while its
run goes on, so each run is marked in the shared tick table (the owner word of its process,
pid and start time, as table locks use) until it ends, or until its process is found dead
(a worker killed in the middle of a run blocks the tick for nobody). Async ticks run on
the leader's event loop; plain functions run in a thread so they cannot stall requests.
Each run gets its own sandbox scope, and parameters annotated with bound types are
injected. ``one_server=True`` also takes a per-run lock in Redis so a fleet of servers runs
the tick once.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import os
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from octo import handoff, stats
from octo.logs import error_log
from octo.runtime import events as ev
from octo.runtime import sandbox
from octo.runtime.sandbox import OperationScope

if TYPE_CHECKING:
    from octo.runtime.cache import Lock
    from octo.runtime.container import Container
    from octo.runtime.table import Table


class Host(sandbox.Host, Protocol):
    """What the tick scheduler needs of its runtime (octo.Octo): the scheduler is part of
    the runtime, so it names these instead of importing the runtime's class."""

    container: Container

    @property
    def tick_stats(self) -> Table: ...

    def lock(self, name: str, ttl: float = 10.0) -> Lock: ...


LEADER_TTL = 1.0
POLL = 0.05
# Ticks this process skipped, ran and saw fail, in all and by name (octo.stats: the worker
# reads them there).
SKIPPED = stats.TICKS_SKIPPED
RUNS = stats.TICKS_RUN
FAILED = stats.TICKS_FAILED
BY_NAME = stats.TICKS_BY_NAME
counts = stats.tick_counts


def _count(name: str, outcome: int) -> None:
    BY_NAME.setdefault(name, [0, 0, 0])[outcome] += 1


class TickError(ValueError):
    """A tick declared in a way that cannot work; the message says why."""


@dataclasses.dataclass(slots=True)
class Tick:
    name: str
    fn: Callable[..., Any]
    every: float
    immediate: bool
    one_server: bool
    next_due: float = 0.0
    running: bool = False


class TickRunner:
    def __init__(self, runtime: Host) -> None:
        self.runtime = runtime
        self.ticks: list[Tick] = []
        self.task: asyncio.Task[None] | None = None
        self.leader = False
        self.redis: Any = None
        self._lock: Lock | None = None
        self.running: set[asyncio.Task[None]] = set()
        # Tells this scheduler's runs from another's in the same process (the shared mark
        # records the process, which two runtimes of one process share).
        self.run_id = secrets.randbits(62) or 1

    def add(self, tick: Tick) -> None:
        if any(t.name == tick.name for t in self.ticks):
            raise TickError(f"tick {tick.name!r} is declared twice")
        if tick.every <= 0:
            raise TickError(f"tick {tick.name!r}: every must be positive")
        if tick.one_server and not redis_url():
            raise TickError(f"tick {tick.name!r}: one_server=True needs Redis; start the server "
                            "with --redis-url (or set OCTO_REDIS_URL)")
        self.ticks.append(tick)

    def start(self) -> None:
        if handoff.settings().role == "task":
            return  # task workers serve tasks; HTTP workers elect the tick leader
        for tick in self.ticks:
            injected(tick.fn, self.runtime)  # unresolvable parameters fail at boot
        if self.ticks and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._schedule())

    async def stop(self) -> None:
        tasks = [*self.running, *([self.task] if self.task is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.task = None
        if self.leader:
            self.lock().release()
            self.leader = False

    def lock(self) -> Lock:
        if self._lock is None:
            self._lock = self.runtime.lock("tick-leader", ttl=LEADER_TTL)
        return self._lock

    async def _schedule(self) -> None:
        while True:
            self.step(time.monotonic())
            await asyncio.sleep(POLL)

    def step(self, now: float) -> None:
        """One pass of the scheduler at monotonic time *now* (seconds).

        Renews (or tries to take) the leader lease and, while leading, starts every tick
        that is due at *now*. The scheduler loop calls it every ``POLL`` seconds with the
        clock; tests call it with chosen times, as ``HttpProtocol.tick(now)`` does for HTTP
        deadlines. Needs a running event loop: a due tick runs as a task on it.
        """
        leading = self.lock().acquire()  # acquiring again renews our own lease
        if leading and not self.leader:
            error_log.info("worker %d now runs the tick schedule", os.getpid())
            for tick in self.ticks:
                tick.next_due = now if tick.immediate else now + tick.every
        self.leader = leading
        if leading:
            for tick in self.ticks:
                if now >= tick.next_due:
                    self._due(tick, now)

    def _due(self, tick: Tick, now: float) -> None:
        # Fixed-rate schedule (no drift). After a stall of a whole interval or more, resume
        # from now: this run, then the next a full interval later (due at *now* itself, it
        # would run again on the very next pass, a burst of two).
        following = tick.next_due + tick.every
        tick.next_due = following if following > now else now + tick.every
        busy = os.getpid() if tick.running else self._claim(tick)
        if busy:
            SKIPPED[0] += 1
            _count(tick.name, 1)
            self.runtime.tick_stats.incr(tick.name, "skipped")
            error_log.debug("tick %r still running (worker %d): this run is skipped",
                            tick.name, busy)
            return
        tick.running = True
        task = asyncio.get_running_loop().create_task(self._run(tick))
        self.running.add(task)
        # A callback, not the run's own finally: it also runs for a task cancelled before
        # its first step, which never enters the coroutine.
        task.add_done_callback(functools.partial(self._finished, tick))

    def _claim(self, tick: Tick) -> int:
        """Mark *tick* as running here, in the shared tick table; 0 when marked, else the
        pid of the live worker whose run of it has not ended."""
        # Here, not at the top: a worker serving a plain ASGI app has no use for the lock
        # module (ctypes, libatomic).
        from octo.runtime.shmlock import holder_alive, own_token

        stats = self.runtime.tick_stats
        token = own_token()
        with stats.locked():
            row = stats.row_unlocked(tick.name)
            owner, run = (row["owner"], row["run"]) if row is not None else (0, 0)
            # Our own mark with no run of ours going is a leftover: take it again.
            if owner and (owner, run) != (token, self.run_id) and holder_alive(owner):
                return int(owner & 0xFFFFFFFF)
            stats.set_unlocked(tick.name, {"owner": token, "run": self.run_id})
        if owner and owner != token:
            error_log.warning("tick %r: worker %d died in the middle of a run; the tick "
                              "runs again", tick.name, owner & 0xFFFFFFFF)
        return 0

    def _finished(self, tick: Tick, task: asyncio.Task[None]) -> None:
        """A run ended (or was cancelled): clear its mark, if it is still ours."""
        from octo.runtime.shmlock import own_token

        self.running.discard(task)
        tick.running = False
        stats = self.runtime.tick_stats
        token = own_token()
        with stats.locked():
            row = stats.row_unlocked(tick.name)
            if row is not None and (row["owner"], row["run"]) == (token, self.run_id):
                stats.set_unlocked(tick.name, {"owner": 0, "run": 0})

    async def _run(self, tick: Tick) -> None:
        async with OperationScope("tick", self.runtime):
            await self._call(tick)

    async def _call(self, tick: Tick) -> None:
        """Run *tick* once (in its operation), unless another host has this interval: its
        errors, a failing Redis's too, are counted and logged."""
        runtime = self.runtime
        try:
            if tick.one_server and not await self._fleet_slot(tick):
                return
            await runtime.events.dispatch(ev.TickReceived(tick.name))
            kwargs = {name: await runtime.container.resolve(key)
                      for name, key in injected(tick.fn, runtime)}
            if inspect.iscoroutinefunction(tick.fn):
                await tick.fn(**kwargs)
            else:
                ctx = contextvars.copy_context()
                call = functools.partial(ctx.run, functools.partial(tick.fn, **kwargs))
                await asyncio.get_running_loop().run_in_executor(None, call)
            RUNS[0] += 1
            _count(tick.name, 0)
            runtime.tick_stats.incr(tick.name, "runs")
        except Exception:
            FAILED[0] += 1
            _count(tick.name, 2)
            runtime.tick_stats.incr(tick.name, "errors")
            error_log.exception("tick %r raised; the schedule goes on", tick.name)

    async def _fleet_slot(self, tick: Tick) -> bool:
        """one_server: only the host that claims this interval's key in Redis runs it."""
        if self.redis is None:
            import redis.asyncio as aioredis

            self.redis = aioredis.from_url(redis_url())
        slot = int(time.time() // tick.every)
        key = f"octo:tick:{tick.name}:{slot}"
        ttl_ms = max(1, int(tick.every * 2000))
        return bool(await self.redis.set(key, os.getpid(), nx=True, px=ttl_ms))


def redis_url() -> str:
    """--redis-url (OCTO_REDIS_URL under another server); "": none."""
    return handoff.settings().redis_url


def injected(fn: Callable[..., Any], runtime: Host) -> list[tuple[str, Any]]:
    from octo.runtime.container import ContainerError

    try:
        return runtime.container.params_of(fn, f"tick function {fn.__qualname__}")
    except ContainerError as exc:
        raise TickError(str(exc)) from None
