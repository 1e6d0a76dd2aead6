from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

import octo
from octo.runtime.tick import TickError


class Counter:
    def __init__(self) -> None:
        self.n = 0


async def run_for(rt: octo.Octo, seconds: float) -> None:
    await rt.boot()
    await asyncio.sleep(seconds)
    await rt.stop()


def test_tick_runs_at_its_rate_with_injection(run, monkeypatch) -> None:
    monkeypatch.delenv("OCTO_SERVER_ID", raising=False)
    rt = octo.Octo()
    rt.container.singleton(Counter)
    seen: list[Counter] = []

    @rt.tick("count", every=0.05, immediate=True)
    async def count(counter: Counter) -> None:
        counter.n += 1
        seen.append(counter)

    run(run_for(rt, 0.52))
    assert 8 <= len(seen) <= 12 and len({id(c) for c in seen}) == 1
    assert rt.tick_stats.get("count", "runs") == len(seen)


def test_slow_tick_is_skipped_not_stacked(run, monkeypatch) -> None:
    monkeypatch.delenv("OCTO_SERVER_ID", raising=False)
    rt = octo.Octo()
    active = [0]
    peak = [0]

    @rt.tick("slow", every=0.05, immediate=True)
    async def slow() -> None:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        await asyncio.sleep(0.2)
        active[0] -= 1

    run(run_for(rt, 0.5))
    assert peak[0] == 1
    assert rt.tick_stats.get("slow", "skipped") >= 4


def test_raising_tick_keeps_the_schedule(run, monkeypatch, caplog) -> None:
    monkeypatch.delenv("OCTO_SERVER_ID", raising=False)
    rt = octo.Octo()
    calls = [0]

    @rt.tick("flaky", every=0.05, immediate=True)
    def flaky() -> None:  # a plain function: runs in a thread, off the loop
        calls[0] += 1
        assert threading.current_thread() is not threading.main_thread()
        raise RuntimeError("tick failure")

    with caplog.at_level(logging.ERROR):
        run(run_for(rt, 0.3))
    assert calls[0] >= 4 and rt.tick_stats.get("flaky", "errors") == calls[0]
    assert "tick 'flaky' raised" in caplog.text and "tick failure" in caplog.text


def test_blocking_tick_does_not_stall_the_loop(run, monkeypatch) -> None:
    monkeypatch.delenv("OCTO_SERVER_ID", raising=False)
    rt = octo.Octo()

    @rt.tick("block", every=0.05, immediate=True)
    def block() -> None:
        time.sleep(0.3)

    async def main() -> float:
        await rt.boot()
        await asyncio.sleep(0.1)
        start = time.perf_counter()
        await asyncio.sleep(0.01)
        lag = time.perf_counter() - start
        await rt.stop()
        return lag

    assert run(main()) < 0.1


def test_declaration_errors(monkeypatch) -> None:
    monkeypatch.delenv("OCTO_REDIS_URL", raising=False)
    rt = octo.Octo()
    with pytest.raises(TickError, match="one_server=True needs Redis"):
        rt.tick("fleet", every=1, one_server=True)(lambda: None)
    rt.tick("a", every=1)(lambda: None)
    with pytest.raises(TickError, match="declared twice"):
        rt.tick("a", every=1)(lambda: None)


def test_unresolvable_tick_parameter_fails_at_boot(run, monkeypatch) -> None:
    monkeypatch.delenv("OCTO_SERVER_ID", raising=False)
    rt = octo.Octo()

    @rt.tick("needs", every=1)
    async def needs(thing: Counter) -> Any:
        return thing

    with pytest.raises(TickError, match="parameter 'thing'"):
        run(rt.boot())
