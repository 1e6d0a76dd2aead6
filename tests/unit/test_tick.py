"""Tick schedules, driven deterministically through ``TickRunner.step(now)``.

The scheduler loop only calls ``step(time.monotonic())`` every POLL seconds; every schedule
rule (fixed rate without drift, immediate, resuming after a stall, skipping an overlapping
run, leader takeover) is tested here by calling ``step`` with chosen times, so no assertion
depends on how fast this machine runs. A few tests boot the runtime and let the real loop
drive the schedule, waiting on what the tick did rather than on the clock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import octo
from octo.runtime import shmlock
from octo.runtime import tick as tick_mod
from octo.runtime.tick import TickError, TickRunner

DEADLINE = 20.0  # only ends a hung test; every wait below returns as soon as it can


class Counter:
    def __init__(self) -> None:
        self.n = 0


@pytest.fixture(autouse=True)
def _process_local_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCTO_SERVER_ID", raising=False)


async def settle(runner: TickRunner) -> None:
    """Let every tick run started so far finish (they are tasks on this loop), down to the
    done callback that clears its mark. Waiting for the tasks alone is not that: on 3.12
    the waiter could resume before the callback had run, and the next step saw the tick
    still running."""
    await asyncio.sleep(0)
    if runner.running:
        await asyncio.wait_for(asyncio.gather(*runner.running), DEADLINE)
    deadline = time.monotonic() + DEADLINE
    while runner.running:  # emptied by each run's done callback
        assert time.monotonic() < deadline, "a tick run's done callback never ran"
        await asyncio.sleep(0)


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def recording_runtime(every: float, immediate: bool = False) -> tuple[octo.Octo, list[float]]:
    """A runtime with one async tick that records the scheduler time it was started at."""
    rt = octo.Octo()
    started: list[float] = []
    now = [0.0]

    @rt.tick("rec", every=every, immediate=immediate)
    async def rec() -> None:
        started.append(now[0])

    original = rt.ticks.step

    def step(at: float) -> None:
        now[0] = at
        original(at)

    rt.ticks.step = step  # type: ignore[method-assign]
    return rt, started


async def steps(runner: TickRunner, times: list[float]) -> None:
    for now in times:
        runner.step(now)
        await settle(runner)


def test_fixed_rate_without_drift_even_when_passes_come_late(run) -> None:
    rt, started = recording_runtime(every=1.0)
    # Scheduler passes every 0.05 s, each a little late: runs stay on the 1 s grid.
    passes = [round(i * 0.05 + (0.013 if i % 3 else 0.0), 3) for i in range(201)]
    run(steps(rt.ticks, passes))
    assert len(started) == 10
    # Each run is the first pass at or after a whole second: late passes do not shift it.
    for n, at in enumerate(started, start=1):
        assert n <= at < n + 0.05, started
    assert rt.tick_stats.get("rec", "runs") == 10


def test_first_run_waits_one_interval_unless_immediate(run) -> None:
    rt, started = recording_runtime(every=2.0)
    run(steps(rt.ticks, [10.0, 11.0, 11.99]))
    assert started == []
    run(steps(rt.ticks, [12.0]))
    assert started == [12.0]

    rt, started = recording_runtime(every=2.0, immediate=True)
    run(steps(rt.ticks, [10.0, 11.0, 12.0]))
    assert started == [10.0, 12.0]


def test_after_a_stall_it_runs_once_and_resumes_from_then(run) -> None:
    rt, started = recording_runtime(every=1.0)
    run(steps(rt.ticks, [0.0, 1.0, 2.0]))
    assert started == [1.0, 2.0]
    # The loop stalled for 7.5 s (a suspended VM, a long GC): one run, not a burst to catch
    # up, and the next one a whole interval later.
    run(steps(rt.ticks, [9.5, 9.55, 9.6, 10.0, 10.45]))
    assert started == [1.0, 2.0, 9.5]
    run(steps(rt.ticks, [10.5, 11.0, 11.5]))
    assert started == [1.0, 2.0, 9.5, 10.5, 11.5]
    assert rt.tick_stats.get("rec", "skipped") == 0


def test_a_run_still_going_when_due_is_skipped_not_stacked(run) -> None:
    rt = octo.Octo()
    release = asyncio.Event()
    active, peak, runs = [0], [0], [0]

    @rt.tick("slow", every=1.0, immediate=True)
    async def slow() -> None:
        active[0] += 1
        runs[0] += 1
        peak[0] = max(peak[0], active[0])
        await release.wait()
        active[0] -= 1

    async def main() -> None:
        skipped_before = tick_mod.SKIPPED[0]
        runner = rt.ticks
        try:
            for now in (0.0, 1.0, 2.0, 3.0):
                runner.step(now)
                await asyncio.sleep(0)
            assert runs[0] == 1 and active[0] == 1
            assert rt.tick_stats.get("slow", "skipped") == 3
            assert tick_mod.SKIPPED[0] - skipped_before == 3  # read into the status slot
        finally:
            release.set()
            await settle(runner)
        runner.step(4.0)  # finished: the next due run goes ahead
        await settle(runner)
        assert runs[0] == 2 and peak[0] == 1
        assert rt.tick_stats.get("slow", "runs") == 2

    run(main())


def test_only_the_leader_runs_and_another_takes_over_when_it_stops_renewing(
        run, monkeypatch, caplog) -> None:
    rt = octo.Octo()
    ran: list[str] = []
    clock = [1_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])  # the lease's clock (shared lock row)

    @rt.tick("job", every=1.0, immediate=True)
    async def job() -> None:
        ran.append(active[0])

    # Two workers' schedulers sharing one lock table: the runtime's own and a second one.
    other = TickRunner(rt)
    other.add(tick_mod.Tick("job", job, 1.0, True, False))
    active = ["first"]

    async def both(now: float) -> None:
        for name, runner in (("first", rt.ticks), ("other", other)):
            active[0] = name
            runner.step(now)
            await settle(runner)

    async def main() -> None:
        with caplog.at_level(logging.INFO, logger="octo.error"):
            for now in (0.0, 1.0, 2.0):
                clock[0] += 1.0
                await both(now)
            assert ran == ["first"] * 3 and rt.ticks.leader and not other.leader
            # The leader hangs (stops renewing); its lease runs out after LEADER_TTL.
            clock[0] += tick_mod.LEADER_TTL / 2
            other.step(2.5)
            assert not other.leader, "took over before the lease expired"
            clock[0] += tick_mod.LEADER_TTL
            active[0] = "other"
            other.step(3.0)
            await settle(other)
            other.step(4.0)
            await settle(other)
        assert ran == ["first"] * 3 + ["other"] * 2 and other.leader
        assert caplog.text.count("now runs the tick schedule") == 2

    run(main())


def test_a_run_going_on_in_a_leader_that_lost_its_lease_is_not_started_again(
        run, monkeypatch) -> None:
    """A leader whose loop stalls past the lease loses the lead while its run goes on: the
    new leader must not start the same tick until that run has ended."""
    rt = octo.Octo()
    clock = [1_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])  # the lease's clock
    release = asyncio.Event()
    active, peak, ran = [0], [0], []
    who = ["first"]

    async def slow() -> None:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        ran.append(who[0])
        await release.wait()
        active[0] -= 1

    rt.tick("slow", every=1.0, immediate=True)(slow)
    other = TickRunner(rt)  # a second worker's scheduler, sharing the runtime's tables
    other.add(tick_mod.Tick("slow", slow, 1.0, True, False))

    async def main() -> None:
        rt.ticks.step(0.0)
        await asyncio.sleep(0)
        assert ran == ["first"] and rt.ticks.leader
        # The first leader's loop stalls for longer than the lease: the other takes over.
        clock[0] += tick_mod.LEADER_TTL + 0.5
        who[0] = "other"
        try:
            for now in (1.5, 2.5):
                other.step(now)
                await asyncio.sleep(0)
                assert other.leader
            assert ran == ["first"] and active[0] == 1, \
                "the new leader started the tick while the old leader's run went on"
            assert rt.tick_stats.get("slow", "skipped") == 2
        finally:
            release.set()
            await settle(rt.ticks)
        other.step(3.5)  # that run has ended: the next due one goes ahead
        await settle(other)
        assert ran == ["first", "other"] and peak[0] == 1

    run(main())


def dead_owner_token() -> int:
    """The owner word of a process that has exited."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    token = shmlock.owner_token(child.pid)  # its start time, while it lives
    child.wait()
    assert token >> 32, "the child exited before its start time was read"
    return token


def test_a_run_marked_by_a_dead_worker_blocks_nobody(run, caplog) -> None:
    """kill -9 in the middle of a run leaves its mark: a dead owner's mark is taken over,
    and a run holds the mark (its own process's word) only while it runs."""
    rt = octo.Octo()
    marks: list[int] = []

    @rt.tick("rec", every=1.0, immediate=True)
    async def rec() -> None:
        marks.append(rt.tick_stats.get("rec", "owner"))

    rt.tick_stats.set("rec", {"owner": dead_owner_token(), "run": 7})
    with caplog.at_level(logging.WARNING, logger="octo.error"):
        run(steps(rt.ticks, [0.0]))
    assert marks == [shmlock.own_token()], "the run did not start, or ran unmarked"
    assert "died in the middle of a run" in caplog.text
    assert rt.tick_stats.get("rec", "owner") == 0, "the mark outlived the run"
    assert rt.tick_stats.get("rec", "skipped") == 0
    # A live worker's mark (another scheduler of this very process here) is respected.
    rt.tick_stats.set("rec", {"owner": shmlock.own_token(), "run": 7})
    run(steps(rt.ticks, [1.0]))
    assert len(marks) == 1 and rt.tick_stats.get("rec", "skipped") == 1


def test_a_cancelled_run_clears_its_mark(run) -> None:
    """Stopping the worker cancels a run, even one not started yet: its mark goes with it."""
    rt = octo.Octo()
    started = asyncio.Event()

    @rt.tick("hang", every=1.0, immediate=True)
    async def hang() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def main() -> None:
        rt.ticks.step(0.0)
        assert rt.tick_stats.get("hang", "owner") == shmlock.own_token()
        await asyncio.wait_for(started.wait(), DEADLINE)
        await rt.ticks.stop()
        assert rt.tick_stats.get("hang", "owner") == 0
        rt.ticks.step(1.0)  # cancelled before its first step: never entered the coroutine
        await rt.ticks.stop()
        assert rt.tick_stats.get("hang", "owner") == 0

    run(main())


def test_loop_runs_ticks_with_injection_and_never_faster_than_the_rate(run) -> None:
    rt = octo.Octo()
    rt.container.singleton(Counter)
    seen: list[Counter] = []
    every = 0.1

    @rt.tick("count", every=every, immediate=True)
    async def count(counter: Counter) -> None:
        counter.n += 1
        seen.append(counter)

    async def main() -> float:
        start = time.monotonic()
        await rt.boot()
        await wait_until(lambda: len(seen) >= 5, "five tick runs")
        elapsed = time.monotonic() - start
        await rt.stop()
        return elapsed

    elapsed = run(main())
    # A loop slowed down runs fewer ticks, never more: at most one per interval (+ the
    # immediate one and the one in flight when we looked).
    assert len(seen) <= elapsed / every + 2, (len(seen), elapsed)
    assert len({id(c) for c in seen}) == 1 and seen[0].n == len(seen)
    assert rt.tick_stats.get("count", "runs") == len(seen)


def test_raising_tick_keeps_the_schedule(run, caplog) -> None:
    rt = octo.Octo()
    calls = [0]
    threads: list[threading.Thread] = []

    @rt.tick("flaky", every=1.0, immediate=True)
    def flaky() -> None:  # a plain function: runs in a thread, off the loop
        calls[0] += 1
        threads.append(threading.current_thread())
        raise RuntimeError("tick failure")

    with caplog.at_level(logging.ERROR):
        run(steps(rt.ticks, [0.0, 1.0, 2.0, 3.0]))
    assert calls[0] == 4 and rt.tick_stats.get("flaky", "errors") == 4
    assert rt.tick_stats.get("flaky", "runs") == 0
    assert threading.main_thread() not in threads
    assert "tick 'flaky' raised" in caplog.text and "tick failure" in caplog.text


def test_blocking_tick_runs_off_the_loop(run) -> None:
    rt = octo.Octo()
    started, release = threading.Event(), threading.Event()
    released: list[bool] = []

    @rt.tick("block", every=1.0, immediate=True)
    def block() -> None:
        started.set()
        # Run on the loop, this would hold the loop until the wait timed out (False).
        released.append(release.wait(DEADLINE))

    async def main() -> None:
        rt.ticks.step(0.0)
        await wait_until(started.is_set, "the tick to start")
        ticked = asyncio.Event()
        asyncio.get_running_loop().call_soon(ticked.set)  # the loop still turns
        await asyncio.wait_for(ticked.wait(), DEADLINE)
        release.set()
        await settle(rt.ticks)

    run(main())
    assert released == [True]


def test_declaration_errors(monkeypatch) -> None:
    monkeypatch.delenv("OCTO_REDIS_URL", raising=False)
    rt = octo.Octo()
    with pytest.raises(TickError, match="one_server=True needs Redis"):
        rt.tick("fleet", every=1, one_server=True)(lambda: None)
    rt.tick("a", every=1)(lambda: None)
    with pytest.raises(TickError, match="declared twice"):
        rt.tick("a", every=1)(lambda: None)
    with pytest.raises(TickError, match="every must be positive"):
        rt.tick("b", every=0)(lambda: None)


def test_unresolvable_tick_parameter_fails_at_boot(run) -> None:
    rt = octo.Octo()

    @rt.tick("needs", every=1)
    async def needs(thing: Counter) -> Any:
        return thing

    with pytest.raises(TickError, match="parameter 'thing'"):
        run(rt.boot())
