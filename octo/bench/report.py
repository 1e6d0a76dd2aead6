"""Text and JSON output of ``octo bench``."""

from __future__ import annotations

from typing import Any

from octo.bench.histogram import Histogram
from octo.bench.load import Plan, Stats

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
ERROR_KINDS = ("connect", "read", "timeout", "non-2xx/3xx")


def summary(plan: Plan, stats: Stats, processes: int) -> dict[str, Any]:
    elapsed = stats.elapsed or 1e-9
    lat = stats.latency
    return {
        "url": plan.url, "connections": plan.connections, "processes": processes,
        "model": "open" if plan.rate else "closed", "rate": plan.rate,
        "pipeline": plan.pipeline, "duration": round(elapsed, 3),
        "requests": stats.responses, "requests_per_sec": round(stats.responses / elapsed, 1),
        "bytes": stats.bytes_read, "bytes_per_sec": round(stats.bytes_read / elapsed, 1),
        "latency_us": {**{f"p{p:g}": lat.percentile(p) for p in PERCENTILES},
                       "max": lat.max, "mean": round(lat.mean(), 1)},
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "errors": {kind: stats.errors.get(kind, 0) for kind in ERROR_KINDS},
        "load_cpu_seconds": round(stats.cpu_seconds, 3),
        "load_cpu_percent_of_one_core": round(100 * stats.cpu_seconds / elapsed, 1),
    }


def text(data: dict[str, Any]) -> str:
    lat = data["latency_us"]
    model = data["model"] + (f", {data['rate']:g} req/s scheduled" if data["rate"] else "")
    lines = [
        f"{data['duration']:.2f}s test @ {data['url']}  ({data['connections']} connections, "
        f"{data['processes']} process(es), {model}, pipeline {data['pipeline']})",
        f"  Requests:      {data['requests']:,} ({data['requests_per_sec']:,.1f}/s)",
        f"  Transfer:      {_size(data['bytes'])} ({_size(data['bytes_per_sec'])}/s)",
        "  Latency:       " + "  ".join(f"{k} {_ms(lat[k])}" for k in
                                        ("p50", "p90", "p99", "p99.9", "max"))
        + f"  (mean {_ms(lat['mean'])})",
        "  Status codes:  " + (", ".join(f"{k}: {v:,}" for k, v in data["statuses"].items())
                               or "none"),
        "  Errors:        " + ", ".join(f"{k} {v}" for k, v in data["errors"].items()),
        f"  Load CPU:      {data['load_cpu_percent_of_one_core']:.0f}% of one core "
        f"({data['load_cpu_seconds']:.1f} s user+sys)",
    ]
    return "\n".join(lines)


def progress_line(stats: Stats, elapsed: float) -> str:
    rate = stats.responses / elapsed if elapsed > 0 else 0.0
    errors = sum(stats.errors.values())
    return (f"\r  {elapsed:5.1f}s  {stats.responses:>10,} requests  {rate:>10,.0f} req/s  "
            f"p99 {_ms(stats.latency.percentile(99))}  errors {errors}   ")


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}ms" if us < 1_000_000 else f"{us / 1e6:.2f}s"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TB"


__all__ = ["Histogram", "progress_line", "summary", "text"]
