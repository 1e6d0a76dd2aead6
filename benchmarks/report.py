"""Per-run records, their summary across rounds, and the Markdown/console/JSON renderings."""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Sequence

NOISY_OTHER_CPU = 10.0  # % of a core used by other processes that makes a run suspect


@dataclasses.dataclass(slots=True)
class RunRecord:
    """One measured run of one server on one scenario in one round."""

    round: int
    scenario: str
    server: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int | None = None
    errors: int = 0
    error_detail: str = ""
    idle_rss_mb: float | None = None
    server_cpu_pct: float | None = None  # server tree CPU during the measured run, % of a core
    other_cpu_pct: float | None = None  # CPU used by processes outside the suite, % of a core
    failure: str = ""  # why the run produced no number (crash, bad response, load error)
    server_output: str = ""  # tail of the server's stdout/stderr when it printed anything
    discarded: list[str] = dataclasses.field(default_factory=list)  # noisier attempts replaced

    @property
    def ok(self) -> bool:
        return self.rps is not None and not self.failure


def noisy(record: RunRecord) -> bool:
    """A successful run during which other processes used a noticeable share of a core."""
    return record.ok and (record.other_cpu_pct or 0.0) > NOISY_OTHER_CPU


def brief(record: RunRecord) -> str:
    if not record.ok:
        return f"failed ({record.failure.splitlines()[0] if record.failure else '?'})"
    return f"{record.rps or 0:,.0f} req/s with other CPU {record.other_cpu_pct or 0:.0f} %"


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    scenario: str
    server: str
    runs: int
    runs_ok: int
    rps_median: float | None
    rps_min: float | None
    rps_max: float | None
    ratio_median: float | None
    ratio_min: float | None
    ratio_max: float | None
    p50_ms: float | None
    p99_ms: float | None
    idle_rss_mb: float | None


@dataclasses.dataclass(slots=True)
class Meta:
    date: str
    started: str
    finished: str = ""
    command: str = ""
    git: str = ""
    measured_source: str = ""  # digest of the octo/*.py installed in benchmarks/.venv
    tree_source_end: str = ""  # digest of the work tree's octo/*.py when the suite ended
    cpu_model: str = ""
    cores: int = 0
    server_cpu: int | None = None
    client_cpu: int | None = None
    kernel: str = ""
    python: str = ""
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    generator: str = ""
    generator_version: str = ""
    load_command: str = ""
    rounds: int = 0
    duration: int = 0
    warmup: int = 0
    noisy_retries: int = 0
    quiet_timeout: float = 0.0
    baseline: str = ""
    load_before: str = ""
    load_after: str = ""
    steal_percent: float | None = None
    servers: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> command line
    scenarios: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> description


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratios_to_baseline(records: Sequence[RunRecord], scenario: str, server: str,
                       baseline: str) -> list[float]:
    """server/baseline req/s, one value per round in which both runs succeeded."""
    rps: dict[tuple[int, str], float] = {
        (r.round, r.server): r.rps for r in records if r.scenario == scenario and r.ok and r.rps}
    rounds = sorted({round_no for round_no, _ in rps})
    return [rps[(n, server)] / rps[(n, baseline)]
            for n in rounds if (n, server) in rps and (n, baseline) in rps]


def summarize(records: Sequence[RunRecord], scenarios: Sequence[str], servers: Sequence[str],
              baseline: str) -> list[Summary]:
    summaries = []
    for scenario in scenarios:
        for server in servers:
            runs = [r for r in records if r.scenario == scenario and r.server == server]
            if runs:
                summaries.append(_summary(records, runs, baseline))
    return summaries


def _summary(records: Sequence[RunRecord], runs: Sequence[RunRecord], baseline: str) -> Summary:
    ok = [r for r in runs if r.ok]
    rps = [r.rps for r in ok if r.rps is not None]
    ratios = ratios_to_baseline(records, runs[0].scenario, runs[0].server, baseline)
    return Summary(
        scenario=runs[0].scenario,
        server=runs[0].server,
        runs=len(runs),
        runs_ok=len(ok),
        rps_median=_median(rps),
        rps_min=min(rps, default=None),
        rps_max=max(rps, default=None),
        ratio_median=_median(ratios),
        ratio_min=min(ratios, default=None),
        ratio_max=max(ratios, default=None),
        p50_ms=_median([r.p50_ms for r in ok if r.p50_ms is not None]),
        p99_ms=_median([r.p99_ms for r in ok if r.p99_ms is not None]),
        idle_rss_mb=_median([r.idle_rss_mb for r in runs if r.idle_rss_mb is not None]),
    )


# -- formatting ------------------------------------------------------------------------------

def _num(value: float | None, fmt: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{fmt}}{suffix}"


def _span(low: float | None, high: float | None, fmt: str) -> str:
    return "–" if low is None or high is None else f"{low:{fmt}}–{high:{fmt}}"


def summary_headers(baseline: str) -> tuple[str, ...]:
    return ("server", "req/s (median)", "min–max", f"vs {baseline}", "ratio min–max",
            "p50", "p99", "idle RSS MB", "runs ok")


RAW_HEADERS = ("round", "scenario", "server", "req/s", "p50", "p99", "idle RSS MB", "errors",
               "server CPU %", "other CPU %")


def summary_rows(summaries: Sequence[Summary], scenario: str) -> list[list[str]]:
    return [[s.server, _num(s.rps_median, ",.0f"), _span(s.rps_min, s.rps_max, ",.0f"),
             _num(s.ratio_median, ".2f", "x"), _span(s.ratio_min, s.ratio_max, ".2f"),
             _num(s.p50_ms, ".2f", " ms"), _num(s.p99_ms, ".2f", " ms"),
             _num(s.idle_rss_mb, ".1f"), f"{s.runs_ok}/{s.runs}"]
            for s in summaries if s.scenario == scenario]


def raw_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    return [[str(r.round), r.scenario, r.server,
             _num(r.rps, ",.0f") if r.ok else "FAILED",
             _num(r.p50_ms, ".2f", " ms"), _num(r.p99_ms, ".2f", " ms"),
             _num(r.idle_rss_mb, ".1f"), str(r.errors), _num(r.server_cpu_pct, ".0f"),
             _num(r.other_cpu_pct, ".0f")]
            for r in records]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1,
                   ) -> str:
    """A Markdown table: the first *text_columns* columns left-aligned, numbers right."""
    align = ["---" if i < text_columns else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(headers), "  ".join("-" * w for w in widths),
                      *(line(row) for row in rows)])


def console(meta: Meta, summaries: Sequence[Summary]) -> str:
    parts = []
    for scenario, description in meta.scenarios.items():
        rows = summary_rows(summaries, scenario)
        if rows:
            headers = summary_headers(meta.baseline)
            parts.append(f"{scenario}: {description}\n{text_table(headers, rows)}")
    return "\n\n".join(parts)


def problems(meta: Meta, records: Sequence[RunRecord]) -> list[str]:
    """The octo source changing mid-suite, then one entry per run that failed, saw errors,
    or made its server print anything."""
    out = []
    if meta.tree_source_end != meta.measured_source:
        out.append(f"octo in the work tree changed during the suite (digest "
                   f"{meta.tree_source_end} at the end); every run measured the copy installed "
                   f"at the start ({meta.measured_source})")
    for r in records:
        where = f"round {r.round}, {r.scenario}, {r.server}"
        if r.failure:
            out.append(f"{where}: FAILED: {r.failure}")
        if r.errors:
            out.append(f"{where}: {r.errors} errors ({r.error_detail})")
        if r.discarded:
            out.append(f"{where}: repeated because other processes were busy; discarded: "
                       f"{'; '.join(r.discarded)}")
        if noisy(r):
            out.append(f"{where}: noisy: other processes used {r.other_cpu_pct or 0:.0f} % of "
                       "a core during the measured run")
        if r.server_output and r.server_output not in r.failure:
            out.append(f"{where}: server output:\n{r.server_output}")
    return out


def markdown(meta: Meta, summaries: Sequence[Summary], records: Sequence[RunRecord]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in meta.versions.items())
    steal = _num(meta.steal_percent, ".1f", " %")
    lines = [
        f"# octo benchmarks, {meta.date}",
        "",
        f"Command: `{meta.command}`, {meta.started} to {meta.finished}. octo: a copy of the "
        f"work tree at {meta.git} installed in benchmarks/.venv when the suite started "
        f"(digest of its .py files: {meta.measured_source}).",
        "",
        "## Machine",
        "",
        f"- CPU: {meta.cpu_model}, {meta.cores} logical cores; server pinned to CPU "
        f"{meta.server_cpu}, load generator to CPU {meta.client_cpu}",
        f"- Kernel: {meta.kernel}; Python: {meta.python}",
        f"- Load average (1/5/15 min) before: {meta.load_before}; after: {meta.load_after}; "
        f"CPU steal during the suite: {steal}",
        f"- Versions: {versions}; {meta.generator_version}",
        "",
        "## Method",
        "",
        f"- Load: `{meta.load_command}` (port varies: a free one per run)",
        f"- {meta.rounds} round(s) of {meta.duration} s per server and scenario, each after a "
        f"{meta.warmup} s warm-up run on the same server process; a fresh server process per "
        "run, stopped (whole process tree) afterwards.",
        "- Servers alternate round by round (the order rotates by one each round).",
        f"- Ratio: server req/s / {meta.baseline} req/s within the same round and scenario; "
        "the table gives the median of those per-round ratios and their range. p50/p99 and "
        "idle RSS are medians across rounds; idle RSS is the summed RSS of the server's "
        "process tree after startup, before any request.",
        "- Noise: \"other CPU %\" is the CPU time that processes outside the suite used during "
        "a measured run (machine-wide busy time minus the server tree, wrk and this harness), "
        f"in % of one core. Before each run the harness waits (at most "
        f"{meta.quiet_timeout:.0f} s) until other processes use under {NOISY_OTHER_CPU:.0f} % "
        f"of a core; a run above that is repeated up to {meta.noisy_retries} time(s) and the "
        "quietest attempt kept (listed under Problems).",
        "",
        "Server commands:",
        "",
        *(f"- {name}: `{command}`" for name, command in meta.servers.items()),
    ]
    for scenario, description in meta.scenarios.items():
        rows = summary_rows(summaries, scenario)
        if rows:
            lines += ["", f"## {scenario}", "", description, "",
                      markdown_table(summary_headers(meta.baseline), rows)]
    raw = markdown_table(RAW_HEADERS, raw_rows(records), text_columns=3)
    lines += ["", "## Raw numbers per round", "", raw]
    found = problems(meta, records)
    lines += ["", "## Problems", ""]
    lines += [_bullet(p) for p in found] if found else ["None: no failed run, no errors, "
                                                       "no server output."]
    return "\n".join(lines) + "\n"


def _bullet(text: str) -> str:
    head, _, rest = text.partition("\n")
    return f"- {head}" + (f"\n\n  ```\n{_indent(rest)}\n  ```" if rest else "")


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def to_json(meta: Meta, summaries: Sequence[Summary], records: Sequence[RunRecord]) -> str:
    return json.dumps({"meta": dataclasses.asdict(meta),
                       "summary": [dataclasses.asdict(s) for s in summaries],
                       "runs": [dataclasses.asdict(r) for r in records]}, indent=2)
