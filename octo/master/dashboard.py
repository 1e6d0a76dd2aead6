"""The dashboard of ``--metrics``: one page at ``/`` and the JSON it polls, ``/dashboard.json``.

Like ``/metrics``, the JSON is made by the master from what it reads in the workers'
slots (no event loop, no app code): :func:`state` turns a :class:`~octo.master.exposition.
Snapshot` into plain data, and :class:`History`, fed once a load step by the arbiter, keeps
the last :data:`HISTORY` points of the rates the plots show, so a page opened now starts
with the last minutes instead of an empty plot.

The page is self-contained (inline CSS, JavaScript and SVG; no CDN, no font, no request but
its own JSON), so it works on a host without internet access and under a strict
``Content-Security-Policy`` of the metrics listener's own.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from octo.master.exposition import RESTART_CAUSES, STATUS_LABELS, Snapshot, total
from octo.process.slots import StatsView
from octo.stats import BOUNDS

HISTORY = 300  # points (one per load step: five minutes)


def quantile(q: float, counts: Sequence[int]) -> float | None:
    """The *q* quantile (0..1) of a histogram's per-bucket counts (``octo.stats.BOUNDS``,
    +Inf last), interpolated within its bucket as Prometheus' ``histogram_quantile`` does;
    None without observations. The +Inf bucket answers with the largest finite bound."""
    observed = sum(counts)
    if observed == 0:
        return None
    rank = q * observed
    below = 0
    for index, count in enumerate(counts):
        if count and below + count >= rank:
            if index >= len(BOUNDS):
                return BOUNDS[-1]
            lower = BOUNDS[index - 1] if index else 0.0
            return lower + (BOUNDS[index] - lower) * (rank - below) / count
        below += count
    return BOUNDS[-1]


@dataclasses.dataclass(slots=True)
class _Totals:
    at: float
    requests: int
    errors: int
    durations: list[int]
    waits: int
    wait_total: float
    handed: int


class History:
    """Points of the server's rates, one per :meth:`observe` (the arbiter's load step)."""

    def __init__(self, size: int = HISTORY) -> None:
        self.points: deque[dict[str, Any]] = deque(maxlen=size)
        self.last: _Totals | None = None
        self.cpu: dict[int, float] = {}  # CPU % of each worker over the last step, by pid
        self.cpu_seconds: tuple[float, dict[int, float]] = (0.0, {})

    def observe_cpu(self, now: float, seconds: dict[int, float]) -> None:
        """Each worker's CPU % over the step, from the CPU seconds in its slot (by pid)."""
        at, before = self.cpu_seconds
        self.cpu_seconds = (now, dict(seconds))
        if now <= at:
            return
        self.cpu = {pid: round(max(0.0, value - before[pid]) / (now - at) * 100, 1)
                    for pid, value in seconds.items() if pid in before}

    def observe(self, now: float, summed: StatsView, workers: int, task_workers: int,
                task_queue: int) -> None:
        """Add the point from the previous call to this one; *summed*: every counter of
        the server (retired included, so a worker that exits does not make a rate go
        negative), *now* on the monotonic clock."""
        current = _Totals(now, sum(summed.status), summed.status[5],
                          list(summed.duration.counts), summed.wait.count, summed.wait.total,
                          summed.tasks_handed)
        before, self.last = self.last, current
        if before is None or now <= before.at:
            return
        elapsed = now - before.at
        durations = [max(0, a - b) for a, b in zip(current.durations, before.durations,
                                                   strict=True)]
        waits = current.waits - before.waits
        p50, p99 = quantile(0.5, durations), quantile(0.99, durations)
        self.points.append({
            "t": round(time.time(), 3),
            "rps": round(max(0, current.requests - before.requests) / elapsed, 2),
            "errors": round(max(0, current.errors - before.errors) / elapsed, 2),
            "wait_ms": None if waits <= 0 else
            round(max(0.0, current.wait_total - before.wait_total) / waits * 1000, 3),
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "workers": workers, "task_workers": task_workers, "task_queue": task_queue,
            "tasks_per_s": round(max(0, current.handed - before.handed) / elapsed, 2),
        })


def state(snap: Snapshot, history: History, started: float) -> dict[str, Any]:
    """What ``/dashboard.json`` answers; *started*: the master's start (epoch seconds)."""
    summed = total(snap)
    p50, p99 = quantile(0.5, summed.duration.counts), quantile(0.99, summed.duration.counts)
    wait = summed.wait
    handed = summed.tasks_handed
    return {
        "time": round(time.time(), 3), "started": round(started, 3),
        "server": {"workers": snap.target, "autoscale": "up" in snap.scale_changes,
                   "min": snap.minimum, "max": snap.maximum,
                   "task_workers": snap.task_target, "draining": snap.draining,
                   "stopping": snap.stopping, "long_wait": snap.long_wait_active,
                   "long_waits": snap.long_waits, "max_wait_time": snap.max_wait_time,
                   "scale_changes": dict(snap.scale_changes),
                   "task_scale_changes": dict(snap.task_scale_changes)},
        "requests": {
            "total": sum(summed.status),
            "by_class": dict(zip(STATUS_LABELS, summed.status, strict=True)),
            "p50_ms": _ms(p50), "p99_ms": _ms(p99),
            "wait_ms": _ms(wait.total / wait.count if wait.count else None),
            "wait_p99_ms": _ms(quantile(0.99, wait.counts)),
            "websockets": sum(w.stats.websockets for w in snap.workers if w.role == "http"),
        },
        "workers": [{
            "worker": w.index, "pid": w.pid, "role": w.role, "state": w.state,
            "requests": w.requests, "in_flight": w.in_flight, "connections": w.connections,
            "rss": w.rss, "cpu_percent": history.cpu.get(w.pid),
            "loop_lag_ms": round(w.loop_lag * 1000, 2),
            "heartbeat_age": None if w.heartbeat_age is None else round(w.heartbeat_age, 2),
        } for w in snap.workers],
        "restarts": {cause: snap.restarts.get(cause, 0) for cause in RESTART_CAUSES},
        "ticks": {"run": summed.tick_runs, "failed": summed.tick_failed,
                  "skipped": snap.retired_ticks_skipped + sum(w.ticks_skipped
                                                              for w in snap.workers),
                  "by_name": [list(row) for row in snap.ticks]},
        "tasks": {"queued": sum(w.stats.task_queued for w in snap.workers),
                  "handed": handed,
                  "wait_ms": _ms(summed.task_wait / handed if handed else None),
                  "busy": sum(w.in_flight for w in snap.workers if w.role == "task")},
        "tables": [{"name": name, "rows": used, "capacity": capacity}
                   for name, used, capacity in snap.tables],
        "history": list(history.points),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


STYLE = """:root{--bg:#0f1419;--panel:#182029;--line:#2a3541;--text:#d8e0e8;--dim:#8a99a8;
--blue:#4ea1ff;--green:#4cc38a;--amber:#f0b03c;--red:#ef5b5b;--violet:#b48cff}
*{box-sizing:border-box}
body{margin:0;padding:16px 20px;background:var(--bg);color:var(--text);
font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
h1{font-size:18px;margin:0 0 2px}h2{font-size:13px;margin:0 0 8px;color:var(--dim);
font-weight:600;text-transform:uppercase;letter-spacing:.05em}
#meta{color:var(--dim);font-size:12px;margin-bottom:14px}
#meta .bad{color:var(--red);font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:10px;
margin-bottom:14px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card .v{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.card .l{font-size:12px;color:var(--dim)}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px;
margin-bottom:14px}
.plot{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.plot svg{width:100%;height:110px;display:block}
.legend{font-size:12px;color:var(--dim)}.legend b{font-weight:600}
.row{display:grid;grid-template-columns:3fr 1fr 1.3fr 1fr;gap:10px}
@media (max-width:900px){.row{grid-template-columns:1fr}}
table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px}
th,td{text-align:right;padding:3px 6px;border-bottom:1px solid var(--line);white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{color:var(--dim);font-weight:600}
.ready{color:var(--green)}.stopping,.booting{color:var(--amber)}.blocked{color:var(--red)}
"""

SCRIPT = """"use strict";
const $ = id => document.getElementById(id);
const fmt = (v, unit) => v === null || v === undefined ? "\\u2013" :
  (unit === "ms" ? (v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(v < 10 ? 2 : 0) +
   " ms") : Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(1));
const mib = b => b === null || b === undefined ? "\\u2013" : (b / 1048576).toFixed(0) + " MiB";
function cell(row, text, cls) {
  const td = document.createElement("td"); td.textContent = text;
  if (cls) td.className = cls; row.appendChild(td);
}
function fill(id, rows) {
  const body = $(id).tBodies[0] || $(id).createTBody(); body.replaceChildren();
  for (const r of rows) { const tr = body.insertRow(); for (const c of r) cell(tr, c[0], c[1]); }
}
function plot(id, legendId, series, points) {
  const svg = $(id), w = 300, h = 110, n = points.length;
  let peak = 0;
  for (const s of series) for (const p of points) { const v = p[s.key]; if (v > peak) peak = v; }
  const top = peak > 0 ? peak * 1.15 : 1;
  let out = "";
  for (let i = 1; i < 4; i++) out += `<line x1="0" x2="${w}" y1="${h * i / 4}" y2="${h * i / 4}"
stroke="#2a3541" stroke-width="1" vector-effect="non-scaling-stroke"/>`;
  for (const s of series) {
    let d = "", pen = "M";
    points.forEach((p, i) => {
      const v = p[s.key];
      if (v === null || v === undefined) { pen = "M"; return; }
      const x = n > 1 ? i * w / (n - 1) : w, y = h - 2 - (h - 4) * v / top;
      d += `${pen}${x.toFixed(1)},${y.toFixed(1)}`; pen = "L";
    });
    if (d) out += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"
${s.dash ? 'stroke-dasharray="6 4"' : ""} vector-effect="non-scaling-stroke"
stroke-linejoin="round"/>`;
  }
  svg.innerHTML = out;
  const last = points[n - 1] || {}, legend = $(legendId);
  legend.replaceChildren();
  for (const s of series) {
    const dot = document.createElement("b");
    dot.textContent = "\\u25cf"; dot.style.color = s.color;  // CSSOM: allowed by the CSP
    legend.append(dot, ` ${s.label} ${fmt(last[s.key], s.unit)} \\u00a0 `);
  }
  legend.append(`max ${fmt(peak, series[0].unit)}`);
}
function render(d) {
  const r = d.requests, h = d.history, last = h[h.length - 1] || {};
  const up = Math.round(d.time - d.started), s = d.server;
  const restarts = Object.values(d.restarts).reduce((a, b) => a + b, 0);
  const http = d.workers.filter(w => w.role === "http" && w.state !== "stopping").length;
  $("meta").innerHTML = `up ${Math.floor(up / 3600)}h ${Math.floor(up / 60) % 60}m ${up % 60}s
 &middot; workers ${s.workers}${s.autoscale ? ` (autoscale ${s.min}..${s.max})` : ""}
 &middot; task workers ${s.task_workers}
 ${s.draining || s.stopping ? ' &middot; <span class="bad">draining</span>' : ""}
 ${s.long_wait ? ' &middot; <span class="bad">long wait</span>' : ""}
 &middot; updated ${new Date(d.time * 1000).toLocaleTimeString("en-GB")}`;
  $("v-rps").textContent = fmt(last.rps);
  $("v-requests").textContent = fmt(r.total);
  $("v-wait").textContent = fmt(r.wait_ms, "ms");
  $("v-p50").textContent = fmt(r.p50_ms, "ms");
  $("v-p99").textContent = fmt(r.p99_ms, "ms");
  $("v-workers").textContent = fmt(http);
  $("v-tasks").textContent = fmt(d.tasks.queued);
  $("v-restarts").textContent = fmt(restarts);
  plot("p-rps", "l-rps", [{key: "rps", label: "req/s", color: "var(--blue)"},
    {key: "errors", label: "5xx/s", color: "var(--red)"}], h);
  plot("p-lat", "l-lat", [{key: "p99_ms", label: "p99", color: "var(--amber)", unit: "ms"},
    {key: "p50_ms", label: "p50", color: "var(--green)", unit: "ms"},
    {key: "wait_ms", label: "queue wait", color: "var(--violet)", unit: "ms"}], h);
  plot("p-workers", "l-workers", [{key: "workers", label: "HTTP", color: "var(--blue)"},
    {key: "task_workers", label: "task", color: "var(--violet)", dash: true}], h);
  plot("p-tasks", "l-tasks", [{key: "task_queue", label: "queued", color: "var(--amber)"},
    {key: "tasks_per_s", label: "taken/s", color: "var(--green)"}], h);
  fill("t-workers", d.workers.map(w => [[String(w.pid)], [w.role], [w.state, w.state],
    [fmt(w.requests)], [fmt(w.in_flight)], [fmt(w.connections)], [mib(w.rss)],
    [w.cpu_percent === null ? "\\u2013" : w.cpu_percent.toFixed(0) + " %"],
    [fmt(w.loop_lag_ms, "ms")]]));
  fill("t-restarts", Object.entries(d.restarts).map(([k, v]) => [[k], [fmt(v)]]));
  const ticks = d.ticks.by_name.map(t => [[t[0]], [fmt(t[1])], [fmt(t[2])], [fmt(t[3])]]);
  ticks.push([["all"], [fmt(d.ticks.run)], [fmt(d.ticks.skipped)], [fmt(d.ticks.failed)]]);
  fill("t-ticks", ticks);
  fill("t-tasks", [[["queued"], [fmt(d.tasks.queued)]], [["taken"], [fmt(d.tasks.handed)]],
    [["mean wait"], [fmt(d.tasks.wait_ms, "ms")]], [["running"], [fmt(d.tasks.busy)]]]);
  document.body.dataset.updates = String(Number(document.body.dataset.updates) + 1);
}
async function poll() {
  try {
    const reply = await fetch("dashboard.json", {cache: "no-store"});
    if (!reply.ok) throw new Error("HTTP " + reply.status);
    render(await reply.json());
  } catch (e) {
    const bad = document.createElement("span"); bad.className = "bad";
    bad.textContent = "no answer from the server: " + e.message; $("meta").replaceChildren(bad);
  }
  setTimeout(poll, 1000);
}
poll();
"""

PAGE = ("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>octo dashboard</title>
""" + "<style>" + STYLE + "</style>" + """</head>
<body data-updates="0">
<h1>octo</h1>
<div id="meta">connecting&hellip;</div>
<div class="cards">
<div class="card"><div class="v" id="v-rps">&ndash;</div><div class="l">requests / s</div></div>
<div class="card"><div class="v" id="v-requests">&ndash;</div><div class="l">requests</div></div>
<div class="card"><div class="v" id="v-wait">&ndash;</div><div class="l">mean queue wait</div></div>
<div class="card"><div class="v" id="v-p50">&ndash;</div><div class="l">p50 since start</div></div>
<div class="card"><div class="v" id="v-p99">&ndash;</div><div class="l">p99 since start</div></div>
<div class="card"><div class="v" id="v-workers">&ndash;</div><div class="l">HTTP workers</div></div>
<div class="card"><div class="v" id="v-tasks">&ndash;</div><div class="l">task queue</div></div>
<div class="card"><div class="v" id="v-restarts">&ndash;</div><div class="l">restarts</div></div>
</div>
<div class="plots">
<div class="plot"><h2>Throughput</h2><svg id="p-rps" viewBox="0 0 300 110"
preserveAspectRatio="none"></svg><div class="legend" id="l-rps"></div></div>
<div class="plot"><h2>Latency</h2><svg id="p-lat" viewBox="0 0 300 110"
preserveAspectRatio="none"></svg><div class="legend" id="l-lat"></div></div>
<div class="plot"><h2>Workers</h2><svg id="p-workers" viewBox="0 0 300 110"
preserveAspectRatio="none"></svg><div class="legend" id="l-workers"></div></div>
<div class="plot"><h2>Tasks</h2><svg id="p-tasks" viewBox="0 0 300 110"
preserveAspectRatio="none"></svg><div class="legend" id="l-tasks"></div></div>
</div>
<div class="row">
<div class="plot"><h2>Workers</h2><table id="t-workers"><thead><tr><th>pid</th><th>role</th>
<th>state</th><th>requests</th><th>in flight</th><th>conns</th><th>RSS</th><th>CPU</th>
<th>loop lag</th></tr></thead><tbody></tbody></table></div>
<div class="plot"><h2>Restarts</h2><table id="t-restarts"><tbody></tbody></table></div>
<div class="plot"><h2>Ticks</h2><table id="t-ticks"><thead><tr><th>tick</th><th>runs</th>
<th>skips</th><th>fails</th></tr></thead><tbody></tbody></table></div>
<div class="plot"><h2>Tasks</h2><table id="t-tasks"><tbody></tbody></table></div>
</div>
""" + "<script>" + SCRIPT + "</script>" + """
</body></html>
""")



def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# What a browser may run and apply on the page: its own script and style, by their hashes
# (no inline event handler, no injected markup's script or style), and fetch its JSON.
POLICY = (f"default-src 'none'; script-src {_digest(SCRIPT)}; style-src {_digest(STYLE)}; "
          "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
          "frame-ancestors 'none'")
