"""The dashboard's data in memory: histogram quantiles, the history of rates, the JSON
state, the per-tick usage a worker reports, and the page and JSON routes of the listener."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_metrics_server import Source, ask

from octo.config import Config
from octo.master.dashboard import PAGE, History, quantile, state
from octo.master.exposition import Snapshot, WorkerSample, render
from octo.master.metrics import MetricsServer
from octo.process.slots import HistogramView, StatsView
from octo.process.usage import MAX_TICKS, TickTotals, parse_usage, usage_json
from octo.runtime import tick
from octo.stats import BOUNDS, BUCKETS


def _counts(**by_bound: int) -> list[int]:
    counts = [0] * BUCKETS
    for bound, count in by_bound.items():
        counts[BOUNDS.index(float(bound.replace("_", ".")[1:]))] = count
    return counts


def test_quantile_interpolates_within_the_bucket_like_histogram_quantile() -> None:
    assert quantile(0.5, [0] * BUCKETS) is None
    counts = _counts(b0_01=50, b0_025=50)  # 50 in (0.005, 0.01], 50 in (0.01, 0.025]
    assert quantile(0.5, counts) == pytest.approx(0.01)
    assert quantile(0.75, counts) == pytest.approx(0.0175)
    assert quantile(0.25, counts) == pytest.approx(0.0075)
    first = [0] * BUCKETS
    first[0] = 10
    assert quantile(0.5, first) == pytest.approx(BOUNDS[0] / 2)  # from 0 up to 1 ms
    slow = [0] * BUCKETS
    slow[-1] = 4  # beyond the last bound: the last bound is the best answer there is
    assert quantile(0.99, slow) == BOUNDS[-1]


def _view(requests: int, errors: int = 0, waits: tuple[int, float] = (0, 0.0),
          handed: int = 0) -> StatsView:
    view = StatsView()
    view.status = [0, 0, requests - errors, 0, 0, errors]
    view.duration = HistogramView(_counts(b0_005=requests), 0.004 * requests)
    view.wait = HistogramView(_counts(b0_001=waits[0]), waits[1])
    view.tasks_handed = handed
    return view


def test_history_keeps_rates_between_steps_and_a_bounded_ring() -> None:
    history = History(size=3)
    history.observe(10.0, _view(0), 1, 0, 0)
    assert not history.points  # one reading is no rate yet
    history.observe(12.0, _view(40, errors=4, waits=(40, 0.2), handed=6), 2, 1, 5)
    point = history.points[-1]
    assert point["rps"] == 20 and point["errors"] == 2 and point["tasks_per_s"] == 3
    assert point["wait_ms"] == pytest.approx(5.0)  # 0.2 s over 40 requests
    assert 2.5 < point["p50_ms"] <= 5.0 and point["p99_ms"] <= 5.0
    assert (point["workers"], point["task_workers"], point["task_queue"]) == (2, 1, 5)
    history.observe(13.0, _view(40, errors=4, waits=(40, 0.2), handed=6), 2, 1, 0)
    idle = history.points[-1]
    assert idle["rps"] == 0 and idle["wait_ms"] is None and idle["p50_ms"] is None
    # A worker's counts lost in a crash (counters read lower): never a negative rate.
    history.observe(14.0, _view(30), 2, 1, 0)
    assert history.points[-1]["rps"] == 0
    history.observe(15.0, _view(31), 2, 1, 0)
    assert len(history.points) == 3  # the oldest point is gone


def _sample(pid: int, role: str, stats: StatsView) -> WorkerSample:
    return WorkerSample(0, pid, role, "ready", 7, 1, 2, 0.003, 0.1, 40 << 20, 1, stats)


def _snap(workers: list[WorkerSample], ticks: list[tuple[str, int, int, int]]) -> Snapshot:
    return Snapshot(workers, _view(5), 2, {"crash": 1}, 2, 1, 4, 1, False, False, 0, False,
                    0.0, {"up": 1, "down": 0}, [("cache", 3, 1024)], ticks)


def test_state_adds_up_workers_and_retired_and_names_every_restart_cause() -> None:
    busy = _view(10, errors=1, waits=(10, 0.05))
    busy.task_queued = 4
    history = History()
    history.observe_cpu(10.0, {11: 1.0, 12: 0.0})
    history.observe_cpu(12.0, {11: 1.25, 12: 0.0, 13: 5.0})  # 0.25 CPU s in 2 s; 13 is new
    assert history.cpu == {11: 12.5, 12: 0.0}
    data = state(_snap([_sample(11, "http", busy), _sample(12, "task", StatsView())],
                       [("refresh", 5, 1, 2)]), history, 1000.0)
    json.dumps(data)  # plain data
    assert data["requests"]["total"] == 15 and data["requests"]["by_class"]["5xx"] == 1
    assert data["requests"]["wait_ms"] == pytest.approx(5.0)
    assert [w["pid"] for w in data["workers"]] == [11, 12]
    assert [w["cpu_percent"] for w in data["workers"]] == [12.5, 0.0]
    assert data["restarts"]["crash"] == 1 and data["restarts"]["reload"] == 0
    assert data["ticks"]["by_name"] == [["refresh", 5, 1, 2]]
    assert data["ticks"]["skipped"] == 2 + 2  # retired and the two workers' own
    assert data["tasks"]["queued"] == 4 and data["tasks"]["busy"] == 1
    assert data["server"]["autoscale"] is True and data["server"]["task_workers"] == 1


def test_per_tick_counters_in_the_exposition() -> None:
    text = render(_snap([], [("refresh", 5, 1, 2), ('odd "name"', 1, 0, 0)]))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    runs = {(s.labels["tick"], s.labels["outcome"]): s.value
            for s in families["octo_tick_runs"].samples}
    assert runs[("refresh", "run")] == 5 and runs[("refresh", "skipped")] == 1
    assert runs[("refresh", "failed")] == 2 and runs[('odd "name"', "run")] == 1


def test_usage_round_trip_bounded_and_malformed_reads_as_nothing() -> None:
    ticks = [(f"tick-{i:02}" + "x" * 100, i, 0, 1) for i in range(MAX_TICKS + 10)]
    document = usage_json([("cache", 3, 1024)], ticks)
    assert len(document) < 2048 - 16  # fits the slot's usage area
    tables, read = parse_usage(json.loads(document))
    assert tables == [("cache", 3, 1024)] and len(read) == MAX_TICKS
    assert read[0][0] == ("tick-00" + "x" * 100)[:48]
    assert parse_usage(None) == ([], [])
    assert parse_usage([["cache", 3, 1024]]) == ([], [])  # not the document
    assert parse_usage({"tables": [["t", "x", 1]], "ticks": [["a", 1, 2]]}) == ([], [])


def test_tick_totals_keep_what_exited_workers_counted() -> None:
    totals = TickTotals()
    totals.retire([("a", 3, 0, 1)])
    assert totals.summed([[("a", 1, 1, 0), ("b", 2, 0, 0)], [("a", 1, 0, 0)]]) == \
        [("a", 5, 1, 1), ("b", 2, 0, 0)]
    assert totals.summed([]) == [("a", 3, 0, 1)]


def test_the_scheduler_counts_by_tick_name() -> None:
    before = dict(tick.BY_NAME)
    try:
        tick._count("x", 0)
        tick._count("x", 0)
        tick._count("x", 2)
        tick._count("y", 1)
        assert ("x", 2, 0, 1) in tick.counts() and ("y", 0, 1, 0) in tick.counts()
    finally:
        tick.BY_NAME.clear()
        tick.BY_NAME.update(before)


class DashboardSource(Source):
    def dashboard_json(self) -> str:
        return json.dumps({"requests": {"total": 3}})


def test_the_listener_serves_the_page_and_its_json() -> None:
    server = MetricsServer(Config(metrics="127.0.0.1:0"), DashboardSource())
    try:
        page = ask(server, b"GET / HTTP/1.1\r\n\r\n")
        head, _, body = page.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") and b"text/html" in head
        assert b"Content-Security-Policy: default-src 'none'" in head
        assert body.decode() == PAGE and b"dashboard.json" in body
        reply = ask(server, b"GET /dashboard.json?t=1 HTTP/1.1\r\n\r\n")
        head, _, body = reply.partition(b"\r\n\r\n")
        assert b"application/json" in head and json.loads(body) == {"requests": {"total": 3}}
    finally:
        server.close()
