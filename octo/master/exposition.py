"""The Prometheus text format (version 0.0.4) of a server's state, written by hand.

prometheus_client's registry is built for one process that owns its counters; here the
master only reads the workers' slots, once per scrape, so it formats what it read: one
function, no registry, no import of a library into the master (that every worker would
inherit at fork). The tests parse the output with prometheus_client's own parser.

Counters are totals since the server started: a worker that exits leaves what it counted in
the master's *retired* totals, so an aggregated counter never goes down when workers are
recycled, reloaded or scaled down. Per-worker series carry ``worker`` (its slot, reused by
later workers) and ``pid``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from octo.process.slots import HistogramView, StatsView
from octo.process.usage import TickRow
from octo.stats import BOUNDS

STATUS_LABELS = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")  # none: the client left first
RESTART_CAUSES = ("crash", "liveness", "max-requests", "max-memory", "max-lifetime",
                  "reload")


@dataclasses.dataclass(slots=True)
class WorkerSample:
    index: int
    pid: int
    role: str
    state: str
    requests: int
    in_flight: int
    connections: int
    loop_lag: float
    heartbeat_age: float | None
    rss: int | None
    ticks_skipped: int
    stats: StatsView


@dataclasses.dataclass(slots=True)
class Snapshot:
    """What one scrape shows; the arbiter fills it from its state and the slots."""

    workers: list[WorkerSample]
    retired: StatsView
    retired_ticks_skipped: int
    restarts: dict[str, int]
    target: int
    minimum: int
    maximum: int
    task_target: int
    draining: bool
    stopping: bool
    long_waits: int
    long_wait_active: bool
    max_wait_time: float
    scale_changes: dict[str, int]
    tables: list[tuple[str, int, int]]
    ticks: list[TickRow] = dataclasses.field(default_factory=list)  # by name, see usage
    task_scale_changes: dict[str, int] = dataclasses.field(default_factory=dict)


class Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        shown = ""
        if labels:
            shown = "{" + ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items()) \
                + "}"
        self.lines.append(f"{name}{shown} {_number(value)}")

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text)
        self.sample(name, value)

    def histogram(self, name: str, help_text: str, histogram: HistogramView) -> None:
        self.family(name, "histogram", help_text)
        running = 0
        for bound, count in zip((*BOUNDS, float("inf")), histogram.counts, strict=True):
            running += count
            self.sample(f"{name}_bucket", running, {"le": _bound(bound)})
        self.sample(f"{name}_sum", histogram.total)
        self.sample(f"{name}_count", running)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(snap: Snapshot) -> str:
    out = Writer()
    _server(out, snap)
    _requests(out, snap)
    _per_worker(out, snap.workers)
    _runtime(out, snap)
    return out.text()


def total(snap: Snapshot) -> StatsView:
    """Every counter of the server: the running workers' plus the retired totals."""
    summed = StatsView()
    summed.add(snap.retired)
    for worker in snap.workers:
        summed.add(worker.stats)
    return summed


def _server(out: Writer, snap: Snapshot) -> None:
    out.family("octo_workers", "gauge", "Worker processes running (not stopping), by role.")
    for role in ("http", "task"):
        count = sum(1 for w in snap.workers if w.role == role and w.state != "stopping")
        out.sample("octo_workers", count, {"role": role})
    out.one("octo_workers_desired", "gauge", "HTTP workers the master keeps running now.",
            snap.target)
    out.one("octo_workers_min", "gauge", "Fewest HTTP workers the autoscaler keeps "
            "(--min-workers; the desired count when autoscaling is off).", snap.minimum)
    out.one("octo_workers_max", "gauge", "Most HTTP workers (--max-workers).", snap.maximum)
    out.one("octo_draining", "gauge", "1 once a stop began (SIGTERM with --shutdown-delay "
            "included): /readyz fails.", int(snap.draining or snap.stopping))
    out.family("octo_worker_restarts_total", "counter",
               "Workers replaced or stopped by the master, by cause.")
    for cause in RESTART_CAUSES:
        out.sample("octo_worker_restarts_total", snap.restarts.get(cause, 0), {"cause": cause})
    out.family("octo_autoscale_changes_total", "counter",
               "Workers added (up) or removed (down) by the autoscaler, by role.")
    for role, changes in (("http", snap.scale_changes), ("task", snap.task_scale_changes)):
        for direction in ("up", "down"):
            out.sample("octo_autoscale_changes_total", changes.get(direction, 0),
                       {"role": role, "direction": direction})
    out.one("octo_long_wait_episodes_total", "counter", "Times the request queue wait stayed "
            "above --max-wait-time (LongWaitDetected).", snap.long_waits)
    out.one("octo_long_wait", "gauge", "1 while the request queue wait is above "
            "--max-wait-time.", int(snap.long_wait_active))
    out.one("octo_max_wait_time_seconds", "gauge", "--max-wait-time (0: off).",
            snap.max_wait_time)


def _requests(out: Writer, snap: Snapshot) -> None:
    summed = total(snap)
    http = [w for w in snap.workers if w.role == "http"]
    out.family("octo_requests_total", "counter", "HTTP requests answered, by status class "
               "(none: the client left before a response started).")
    for label, count in zip(STATUS_LABELS, summed.status, strict=True):
        out.sample("octo_requests_total", count, {"status_class": label})
    out.histogram("octo_request_duration_seconds", "From the request's head parsed to the "
                  "app's return.", summed.duration)
    out.histogram("octo_request_queue_wait_seconds", "From the request's head parsed by a "
                  "worker to the app being called (waiting for the requests before it on "
                  "its connection).", summed.wait)
    out.histogram("octo_request_proxy_wait_seconds", "From X-Request-Start (sent by a proxy "
                  "in --forwarded-allow-ips) to the app being called.", summed.proxy_wait)
    out.one("octo_requests_in_flight", "gauge", "HTTP requests whose app is running.",
            sum(w.in_flight for w in http))
    out.one("octo_connections_open", "gauge", "Client connections open in the HTTP workers.",
            sum(w.connections for w in http))
    out.one("octo_websocket_connections", "gauge", "WebSocket connections open.",
            sum(w.stats.websockets for w in http))


def _per_worker(out: Writer, workers: list[WorkerSample]) -> None:
    def labels(w: WorkerSample) -> dict[str, str]:
        return {"worker": str(w.index), "pid": str(w.pid), "role": w.role}

    families: Iterable[tuple[str, str, str, object]] = (
        ("octo_worker_requests_total", "counter", "Requests this worker parsed.", "requests"),
        ("octo_worker_in_flight", "gauge", "Requests (or a task) running in this worker.",
         "in_flight"),
        ("octo_worker_connections", "gauge", "Connections open in this worker.",
         "connections"),
        ("octo_worker_event_loop_lag_seconds", "gauge", "Largest event-loop lag of this "
         "worker over its last 20 heartbeats (about 10 s).", "loop_lag"),
        ("octo_worker_cpu_seconds_total", "counter", "CPU time of this worker.", "cpu"),
        ("octo_worker_busy_seconds_total", "counter", "Time this worker had at least one "
         "request in flight.", "busy"),
        ("octo_worker_resident_memory_bytes", "gauge", "RSS of this worker.", "rss"),
        ("octo_worker_heartbeat_age_seconds", "gauge", "Seconds since this worker's last "
         "heartbeat.", "heartbeat_age"),
    )
    for name, kind, help_text, field in families:
        out.family(name, kind, help_text)
        for worker in workers:
            value = _worker_value(worker, str(field))
            if value is not None:
                out.sample(name, value, labels(worker))


def _worker_value(worker: WorkerSample, field: str) -> float | None:
    if field in ("cpu", "busy"):
        return float(getattr(worker.stats, field))
    value = getattr(worker, field)
    return None if value is None else float(value)


def _runtime(out: Writer, snap: Snapshot) -> None:
    summed = total(snap)
    out.family("octo_ticks_total", "counter", "Tick runs (octo.Octo.tick), by outcome.")
    skipped = snap.retired_ticks_skipped + sum(w.ticks_skipped for w in snap.workers)
    out.sample("octo_ticks_total", summed.tick_runs, {"outcome": "run"})
    out.sample("octo_ticks_total", skipped, {"outcome": "skipped"})
    out.sample("octo_ticks_total", summed.tick_failed, {"outcome": "failed"})
    out.family("octo_tick_runs_total", "counter", "Tick runs by tick name and outcome (run: "
               "finished, skipped: still running when due, failed: raised).")
    for name, runs, skips, failures in snap.ticks:
        for outcome, count in (("run", runs), ("skipped", skips), ("failed", failures)):
            out.sample("octo_tick_runs_total", count, {"tick": name, "outcome": outcome})
    out.one("octo_task_queue_depth", "gauge", "Dispatched tasks waiting for a task worker, "
            "in every HTTP worker's queue.", sum(w.stats.task_queued for w in snap.workers))
    out.family("octo_task_queue_wait_seconds", "summary", "From rt.tasks.dispatch to a task "
               "worker taking the task.")
    out.sample("octo_task_queue_wait_seconds_sum", summed.task_wait)
    out.sample("octo_task_queue_wait_seconds_count", summed.tasks_handed)
    out.one("octo_task_workers_desired", "gauge", "Task workers the master keeps running "
            "now (moved by --task-workers MIN:MAX).", snap.task_target)
    out.one("octo_task_workers_busy", "gauge", "Task workers running a task.",
            sum(w.in_flight for w in snap.workers if w.role == "task"))
    out.family("octo_table_rows", "gauge", "Rows in use in a shared table (octo.Octo.table; "
               "the cache is the table named cache).")
    for name, used, _ in snap.tables:
        out.sample("octo_table_rows", used, {"table": name})
    out.family("octo_table_capacity_rows", "gauge", "Rows a shared table holds at most.")
    for name, _, capacity in snap.tables:
        out.sample("octo_table_capacity_rows", capacity, {"table": name})


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
