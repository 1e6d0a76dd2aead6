"""--metrics in memory: the slots' counters, the exposition (parsed by prometheus_client),
the decisions of --max-wait-time and the autoscaler under an injected clock, the config."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from octo import config as config_mod
from octo.config import Config, ConfigError
from octo.master.autoscale import (
    SUSTAIN,
    Autoscaler,
    LoadMeter,
    LoadSample,
    LongWaitWatch,
    ScalePolicy,
)
from octo.master.exposition import Snapshot, WorkerSample, render
from octo.process.slots import Slots, StatsView
from octo.stats import RequestStats


def _stats(requests: int = 3, wait: float = 0.0, busy: float = 0.0) -> RequestStats:
    stats = RequestStats()
    for _ in range(requests):
        stats.status[2] += 1
        stats.duration.observe(0.004)
        stats.wait.observe(wait)
    stats.busy = busy
    return stats


def test_slot_counters_round_trip_and_clear() -> None:
    slots = Slots(4)
    try:
        stats = _stats()
        stats.proxy_wait.observe(2.0)
        slots.write_stats(2, stats, 5.0, 0, 1.25, 3, (7, 1), (4, 9, 0.75))
        view = slots.read_stats(2)
        assert view.status == [0, 0, 3, 0, 0, 0]
        assert view.duration.count == 3 and view.duration.total == pytest.approx(0.012)
        assert view.proxy_wait.count == 1 and view.proxy_wait.total == 2.0
        assert (view.cpu, view.websockets, view.tick_runs, view.tick_failed) == (1.25, 3, 7, 1)
        assert (view.task_queued, view.tasks_handed, view.task_wait) == (4, 9, 0.75)
        assert slots.read_stats(1).status == [0] * 6  # a neighbour is untouched
        slots.write_tables(2, b'[["cache", 3, 1024]]')
        assert slots.read_tables(2) == [["cache", 3, 1024]]
        assert slots.read_tables(1) is None  # never written
        slots.clear(2)
        assert slots.read_stats(2).duration.count == 0 and slots.read_tables(2) is None
    finally:
        slots.release()


def test_table_usage_torn_write_reads_as_none() -> None:
    slots = Slots(2)
    try:
        slots.write_tables(0, b'[["t", 1, 2]]')
        start = slots.tables_offset
        slots._set_word(start, slots._sequence(start) + 1)  # a writer midway: odd sequence
        assert slots.read_tables(0) is None
    finally:
        slots.release()


def _snapshot(workers: list[WorkerSample], retired: StatsView | None = None) -> Snapshot:
    return Snapshot(workers, retired or StatsView(), 0, {"crash": 1}, 2, 1, 4, 0, False,
                    False, 0, False, 0.0, {"up": 2, "down": 1}, [("cache", 3, 1024)])


def _worker(slots: Slots, index: int, pid: int, stats: RequestStats) -> WorkerSample:
    slots.write_stats(index, stats, 1.0, 0, 0.5, 0, (0, 0), (0, 0, 0.0))
    return WorkerSample(index, pid, "http", "ready", 3, 1, 2, 0.004, 0.2, 30_000_000, 0,
                        slots.read_stats(index))


def _families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_exposition_parses_and_adds_up_workers_and_retired_totals() -> None:
    slots = Slots(4)
    try:
        one, two = _worker(slots, 0, 100, _stats(3)), _worker(slots, 1, 101, _stats(2))
        retired = StatsView()
        retired.add(slots.read_stats(0))  # as if a worker that counted 3 had exited
        text = render(_snapshot([one, two], retired))
    finally:
        slots.release()
    families = _families(text)
    requests = {s.labels["status_class"]: s.value
                for s in families["octo_requests"].samples}  # type: ignore[attr-defined]
    assert requests["2xx"] == 8 and requests["5xx"] == 0
    duration = families["octo_request_duration_seconds"]
    buckets = {s.labels.get("le"): s.value for s in duration.samples  # type: ignore[attr-defined]
               if s.name.endswith("_bucket")}
    assert buckets["0.0025"] == 0 and buckets["0.005"] == 8 and buckets["+Inf"] == 8
    per_worker = [s for s in families["octo_worker_requests"].samples]  # type: ignore[attr-defined]
    assert {s.labels["pid"] for s in per_worker} == {"100", "101"}
    restarts = {s.labels["cause"]: s.value
                for s in families["octo_worker_restarts"].samples}  # type: ignore[attr-defined]
    assert restarts["crash"] == 1 and restarts["reload"] == 0
    tables = families["octo_table_rows"].samples  # type: ignore[attr-defined]
    assert [(s.labels["table"], s.value) for s in tables] == [("cache", 3)]
    assert "octo_request_queue_wait_seconds_bucket" in text
    assert "octo_request_proxy_wait_seconds_bucket" in text
    assert "octo_worker_event_loop_lag_seconds" in text


def _reading(busy: float, waits: int = 0, wait_total: float = 0.0) -> StatsView:
    stats = _stats(waits, wait_total / waits if waits else 0.0, busy)
    slots = Slots(1)
    try:
        slots.write_stats(0, stats, 0.0, 0, 0.0, 0, (0, 0), (0, 0, 0.0))
        return slots.read_stats(0)
    finally:
        slots.release()


def test_load_meter_takes_differences_between_steps() -> None:
    meter = LoadMeter()
    assert meter.sample(10.0, {1: _reading(0.0), 2: _reading(5.0)}) is None  # first reading
    sample = meter.sample(11.0, {1: _reading(1.0, 4, 0.4), 2: _reading(5.5)})
    assert sample is not None and sample.workers == 2
    assert sample.busy == pytest.approx(0.75)  # 1.5 busy seconds over 2 worker-seconds
    assert sample.wait == pytest.approx(0.1)
    # A worker that left is forgotten; a new one counts from its second reading.
    sample = meter.sample(12.0, {2: _reading(5.5), 3: _reading(9.0)})
    assert sample is not None and sample.workers == 1 and sample.wait is None


def test_long_wait_episode_starts_and_ends_once() -> None:
    watch = LongWaitWatch(0.5)
    assert watch.observe(0.9) is None  # one step above is not "stays above"
    assert watch.observe(0.8) == "started"
    assert watch.observe(1.2) is None and watch.active and watch.peak == 1.2
    assert watch.observe(None) is None  # no request reached its app: no evidence
    assert watch.observe(0.1) is None
    assert watch.observe(0.1) == "ended"
    assert watch.episodes == 1 and not watch.active


POLICY = ScalePolicy(minimum=1, maximum=3, up_wait=0.05, up_busy=0.8, down_busy=0.3,
                     cooldown=5.0)
HOT, IDLE, OK = LoadSample(None, 0.95, 1), LoadSample(0.0, 0.05, 1), LoadSample(0.01, 0.5, 1)


def _run(scaler: Autoscaler, samples: list[LoadSample | None], start: float = 100.0,
         current: int = 1) -> list[tuple[float, int]]:
    """Feed one sample per second; apply the decisions; (time, count) of each change."""
    changes = []
    for step, sample in enumerate(samples):
        now = start + step
        decision = scaler.decide(now, current, sample)
        if decision is not None:
            current += decision.change
            changes.append((now, current))
    return changes


def test_autoscaler_adds_one_worker_per_cooldown_up_to_max() -> None:
    scaler = Autoscaler(POLICY)
    changes = _run(scaler, [HOT] * 30)
    # The first after SUSTAIN hot steps, the next once the cooldown passed and the load
    # stayed hot SUSTAIN more steps, then none: 3 is the maximum.
    assert changes == [(100 + SUSTAIN - 1, 2), (100 + SUSTAIN - 1 + 5, 3)]
    assert scaler.changes == {"up": 2, "down": 0}


def test_autoscaler_scales_on_queue_wait_alone() -> None:
    scaler = Autoscaler(POLICY)
    waiting = LoadSample(0.2, 0.1, 1)  # idle workers, yet requests wait (a proxy says so)
    decision = None
    for step in range(SUSTAIN):
        decision = scaler.decide(100.0 + step, 1, waiting)
    assert decision is not None and decision.change == 1
    assert "queue wait 200 ms > --scale-up-wait 50 ms" in decision.reason


def test_autoscaler_removes_idle_workers_down_to_min_and_holds_in_between() -> None:
    scaler = Autoscaler(POLICY)
    assert _run(scaler, [OK] * 20, current=3) == []  # neither hot nor idle: no change
    changes = _run(scaler, [IDLE] * 30, start=200.0, current=3)
    assert changes == [(200 + SUSTAIN - 1, 2), (200 + SUSTAIN - 1 + 5, 1)]
    assert scaler.changes["down"] == 2


def test_autoscaler_needs_sustained_load_and_forgets_it_without_samples() -> None:
    scaler = Autoscaler(POLICY)
    flapping = [HOT, HOT, OK] * 5 + [HOT, HOT, None] * 5
    assert _run(scaler, flapping) == []


def test_config_worker_range_and_operations_flags() -> None:
    cfg = config_mod.build({"workers": "2:6"}, environ={})
    assert (cfg.workers, cfg.min_workers, cfg.max_workers, cfg.autoscale) == (2, 2, 6, True)
    cfg = config_mod.build({"min_workers": 2, "max_workers": 4}, environ={})
    assert cfg.workers == 2 and cfg.autoscale
    env = config_mod.build({}, environ={"OCTO_WORKERS": "1:3"})
    assert (env.min_workers, env.max_workers) == (1, 3)
    assert not Config(workers=4).autoscale
    assert Config(metrics=":9100").metrics_address() == ("0.0.0.0", 9100)
    assert Config(metrics="[::1]:9100").metrics_address() == ("::1", 9100)
    for bad in ({"metrics": "9100"}, {"metrics": "host:port"}, {"min_workers": 2},
                {"workers": 5, "min_workers": 2, "max_workers": 4},
                {"min_workers": 1, "max_workers": 2, "scale_up_busy": 0.2},
                {"shutdown_delay": -1.0}, {"max_wait_time": -0.5}):
        with pytest.raises(ConfigError):
            Config(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="MIN:MAX"):
        config_mod.build({"workers": "2:many"}, environ={})
