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
    generator: str = ""  # the load generator that measured this run
    load_cpu_pct: float | None = None  # the load generator's own CPU, % of one core
    rss_worker_mb: float | None = None  # idle RSS of the process that serves connections
    rss_tree_mb: float | None = None  # idle RSS of the server's whole process tree
    header_value: str = ""  # the scenario's report_header in the pre-flight response
    # The server tree's CPU time during the measured run, per request the load generator
    # completed, and (user + system) CPU seconds per wall second.
    user_us_per_request: float | None = None
    sys_us_per_request: float | None = None
    cores_busy: float | None = None
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
    cpu = ("" if record.user_us_per_request is None or record.sys_us_per_request is None
           else f" (user {record.user_us_per_request:.1f} + sys "
                f"{record.sys_us_per_request:.1f} µs/request)")
    return (f"{record.rps or 0:,.0f} req/s{cpu} with other CPU "
            f"{record.other_cpu_pct or 0:.0f} %")


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
    user_us_per_request: float | None
    sys_us_per_request: float | None
    cores_busy: float | None
    rss_worker_mb: float | None
    rss_tree_mb: float | None
    generators: str  # the load generator(s) of its successful runs
    header_values: str  # distinct values of the scenario's report_header


@dataclasses.dataclass(slots=True)
class CalibrationRecord:
    """octo bench against wrk on one server process (octo, hello), one after the other."""

    round: int
    wrk: RunRecord
    octo_bench: RunRecord

    @property
    def ratio(self) -> float | None:
        """octo bench req/s / wrk req/s, None unless both runs succeeded."""
        if self.wrk.ok and self.octo_bench.ok and self.wrk.rps:
            return (self.octo_bench.rps or 0.0) / self.wrk.rps
        return None


HONESTY_TOLERANCE = 0.15  # octo bench should measure within this fraction of wrk
CALIBRATION = "bench-vs-wrk"  # the scenario name of the runs comparing octo bench with wrk


@dataclasses.dataclass(slots=True)
class Meta:
    date: str
    started: str
    finished: str = ""
    command: str = ""
    git: str = ""
    octo_rev: str = ""  # the commit octo was installed from (--octo-rev), '' : the work tree
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
    report_headers: dict[str, str] = dataclasses.field(default_factory=dict)  # scenario -> name
    quick: bool = False
    chart: str = ""  # file name of the chart beside the report, '' if none was drawn
    chart_note: str = ""  # why there is no chart
    calibration_note: str = ""  # why octo bench was not compared with wrk, '' if it was
    calibration_command: str = ""  # the octo bench command of that comparison


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
        user_us_per_request=_median([r.user_us_per_request for r in ok
                                     if r.user_us_per_request is not None]),
        sys_us_per_request=_median([r.sys_us_per_request for r in ok
                                    if r.sys_us_per_request is not None]),
        cores_busy=_median([r.cores_busy for r in ok if r.cores_busy is not None]),
        rss_worker_mb=_median([r.rss_worker_mb for r in runs if r.rss_worker_mb is not None]),
        rss_tree_mb=_median([r.rss_tree_mb for r in runs if r.rss_tree_mb is not None]),
        generators=", ".join(sorted({r.generator for r in ok if r.generator})),
        header_values=", ".join(sorted({r.header_value for r in runs if r.header_value})),
    )


# -- formatting ------------------------------------------------------------------------------

def _num(value: float | None, fmt: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{fmt}}{suffix}"


def _span(low: float | None, high: float | None, fmt: str) -> str:
    return "–" if low is None or high is None else f"{low:{fmt}}–{high:{fmt}}"


def summary_headers(baseline: str) -> tuple[str, ...]:
    return ("server", "load", "req/s (median)", "min–max", *CPU_HEADERS, f"vs {baseline}",
            "ratio min–max", "p50", "p99", "worker RSS MB", "tree RSS MB", "runs ok")


CPU_HEADERS = ("user µs/request", "sys µs/request", "cores busy")
RAW_HEADERS = ("round", "scenario", "server", "load", "req/s", *CPU_HEADERS, "p50", "p99",
               "errors", "worker RSS MB", "tree RSS MB", "load CPU %", "other CPU %")


def cpu_cells(user_us: float | None, sys_us: float | None, cores_busy: float | None,
              ) -> list[str]:
    return [_num(user_us, ",.1f"), _num(sys_us, ",.1f"), _num(cores_busy, ".2f")]


def summary_rows(summaries: Sequence[Summary], scenario: str) -> list[list[str]]:
    return [[s.server, s.generators or "–", _num(s.rps_median, ",.0f"),
             _span(s.rps_min, s.rps_max, ",.0f"),
             *cpu_cells(s.user_us_per_request, s.sys_us_per_request, s.cores_busy),
             _num(s.ratio_median, ".2f", "x"), _span(s.ratio_min, s.ratio_max, ".2f"),
             _num(s.p50_ms, ".2f", " ms"), _num(s.p99_ms, ".2f", " ms"),
             _num(s.rss_worker_mb, ".1f"), _num(s.rss_tree_mb, ".1f"), f"{s.runs_ok}/{s.runs}"]
            for s in summaries if s.scenario == scenario]


def raw_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    return [[str(r.round), r.scenario, r.server, r.generator or "–",
             _num(r.rps, ",.0f") if r.ok else "FAILED",
             *cpu_cells(r.user_us_per_request, r.sys_us_per_request, r.cores_busy),
             _num(r.p50_ms, ".2f", " ms"), _num(r.p99_ms, ".2f", " ms"), str(r.errors),
             _num(r.rss_worker_mb, ".1f"), _num(r.rss_tree_mb, ".1f"),
             _num(r.load_cpu_pct, ".0f"),
             _num(r.other_cpu_pct, ".0f")]
            for r in records]


def header_line(meta: Meta, summaries: Sequence[Summary], scenario: str) -> str:
    """Which value each server sent in the scenario's report header ('' if it has none)."""
    name = meta.report_headers.get(scenario, "")
    values = [f"{s.server}: {s.header_values or 'not sent'}"
              for s in summaries if s.scenario == scenario]
    return f"`{name}` in the pre-flight response: {'; '.join(values)}" if name else ""


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
            note = header_line(meta, summaries, scenario)
            parts.append(f"{scenario}: {description}\n{text_table(headers, rows)}"
                         + (f"\n{note}" if note else ""))
    return "\n\n".join(parts)


def problems(meta: Meta, records: Sequence[RunRecord]) -> list[str]:
    """The octo source changing mid-suite, then one entry per run that failed, saw errors,
    or made its server print anything."""
    out = []
    if meta.tree_source_end and meta.tree_source_end != meta.measured_source:
        out.append(f"octo in the work tree changed during the suite (digest "
                   f"{meta.tree_source_end} at the end); every run measured the copy installed "
                   f"at the start ({meta.measured_source})")
    for r in records:
        where = f"round {r.round}, {r.scenario}, {r.server}" + (
            f" ({r.generator})" if r.scenario == CALIBRATION else "")
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


def markdown(meta: Meta, summaries: Sequence[Summary], records: Sequence[RunRecord],
             calibration: Sequence[CalibrationRecord] = ()) -> str:
    lines = [f"# octo benchmarks, {meta.date}{' (quick)' if meta.quick else ''}", "",
             *_preamble(meta), *_method(meta)]
    if meta.chart:
        lines += ["", f"![req/s relative to {meta.baseline}]({meta.chart})"]
    elif meta.chart_note:
        lines += ["", f"No chart: {meta.chart_note}."]
    for scenario, description in meta.scenarios.items():
        rows = summary_rows(summaries, scenario)
        if rows:
            note = header_line(meta, summaries, scenario)
            lines += ["", f"## {scenario}", "", description, "",
                      markdown_table(summary_headers(meta.baseline), rows, text_columns=2),
                      *(["", note] if note else [])]
    lines += ["", *calibration_section(meta, calibration)]
    raw = markdown_table(RAW_HEADERS, raw_rows(records), text_columns=4)
    lines += ["", "## Raw numbers per round", "", raw]
    found = problems(meta, [*records, *calibration_runs(calibration)])
    lines += ["", "## Problems", ""]
    lines += [_bullet(p) for p in found] if found else ["None: no failed run, no errors, "
                                                       "no server output."]
    return "\n".join(lines) + "\n"


def _preamble(meta: Meta) -> list[str]:
    versions = ", ".join(f"{name} {version}" for name, version in meta.versions.items())
    steal = _num(meta.steal_percent, ".1f", " %")
    return [
        f"Command: `{meta.command}`, {meta.started} to {meta.finished}. octo: {_octo(meta)} "
        f"installed in the benchmark venv when the suite started (digest of its .py files: "
        f"{meta.measured_source}).",
        "",
        "## Machine",
        "",
        f"- CPU: {meta.cpu_model}, {meta.cores} logical cores; server pinned to CPU "
        f"{meta.server_cpu}, load generator to CPU {meta.client_cpu}",
        f"- Kernel: {meta.kernel}; Python: {meta.python}",
        f"- Load average (1/5/15 min) before: {meta.load_before}; after: {meta.load_after}; "
        f"CPU steal during the suite: {steal}",
        f"- Versions: {versions}; load generator: {meta.generator_version}",
    ]


def _octo(meta: Meta) -> str:
    if meta.octo_rev:
        return f"commit {meta.octo_rev} as committed (git archive; the work tree was at {meta.git})"
    return f"a copy of the work tree at {meta.git}"


def _method(meta: Meta) -> list[str]:
    return [
        "",
        "## Method",
        "",
        f"- Load ({meta.generator}): `{meta.load_command}` (port varies: a free one per run; "
        "scenarios change the connection count, method, body and headers)",
        f"- {meta.rounds} round(s) of {meta.duration} s per server and scenario, each after a "
        f"{meta.warmup} s warm-up run on the same server process; a fresh server process per "
        "run, stopped (whole process tree) afterwards.",
        "- Servers alternate round by round (the order rotates by one each round).",
        f"- Ratio: server req/s / {meta.baseline} req/s within the same round and scenario; "
        "the table gives the median of those per-round ratios and their range. p50/p99 and "
        "RSS are medians across rounds.",
        "- Memory, sampled idle (0.5 s after the one pre-flight request, before the warm-up): "
        "\"worker RSS\" is the process that accepts and serves the connections (found by the "
        "socket it holds), \"tree RSS\" the server's whole process tree (master, workers, "
        "helpers). octo, granian and hypercorn run a master and one worker, uvicorn a single "
        "process: compare workers with workers.",
        *_cpu_method(meta),
        "- \"load CPU %\": the load generator's own CPU use in % of one core (it is pinned to "
        "one core; near 100 % means it, not the server, may be the bottleneck).",
        "- Noise: \"other CPU %\" is the CPU time that processes outside the suite used during "
        "a measured run (machine-wide busy time minus the server tree, the load generator and "
        f"this harness), in % of one core. Before each run the harness waits (at most "
        f"{meta.quiet_timeout:.0f} s) until other processes use under {NOISY_OTHER_CPU:.0f} % "
        f"of a core; a run above that is repeated up to {meta.noisy_retries} time(s) and the "
        "quietest attempt kept (listed under Problems).",
        "",
        "Server commands:",
        "",
        *(f"- {name}: `{command}`" for name, command in meta.servers.items()),
    ]


def _cpu_method(meta: Meta) -> list[str]:
    return [
        "- CPU per request: the user and system CPU time of the server's whole process tree "
        "(master or supervisor and its workers) is read from /proc/<pid>/stat right before and "
        "right after the measured run (not the warm-up); the difference divided by the "
        "requests the load generator completed is \"user µs/request\" and \"sys "
        "µs/request\", divided by the run's wall time it is \"cores busy\". User time is the "
        "instructions the server runs itself: octo's (or a competitor's) code, the Python "
        "interpreter and its extensions (uvloop, httptools). System time is the kernel's work "
        "on its behalf: syscalls, epoll, TCP over loopback. Where req/s alone cannot tell a "
        "server doing more work per request from one left waiting, these can, and they say "
        "whose work (its own or the kernel's) differs. req/s = cores busy / (user + sys), and "
        f"the server is pinned to one core (CPU {meta.server_cpu}): a saturated server (cores "
        "busy near 1.00) serves about 1 / (user + sys) requests per second; well under 1.00 "
        "it was waiting, for the load generator or for a core another process took. Tables "
        "give medians across rounds.",
    ]


def calibration_runs(calibration: Sequence[CalibrationRecord]) -> list[RunRecord]:
    return [run for c in calibration for run in (c.wrk, c.octo_bench)]


CALIBRATION_HEADERS = ("round", "wrk req/s", "octo bench req/s", "octo bench / wrk",
                       "wrk p99", "octo bench p99", "wrk CPU %", "octo bench CPU %",
                       "other CPU %")


def calibration_rows(calibration: Sequence[CalibrationRecord]) -> list[list[str]]:
    def rps(r: RunRecord) -> str:
        return _num(r.rps, ",.0f") if r.ok else "FAILED"

    return [[str(c.round), rps(c.wrk), rps(c.octo_bench), _num(c.ratio, ".2f"),
             _num(c.wrk.p99_ms, ".2f", " ms"), _num(c.octo_bench.p99_ms, ".2f", " ms"),
             _num(c.wrk.load_cpu_pct, ".0f"), _num(c.octo_bench.load_cpu_pct, ".0f"),
             _num(max(c.wrk.other_cpu_pct or 0.0, c.octo_bench.other_cpu_pct or 0.0), ".0f")]
            for c in calibration]


def calibration_verdict(calibration: Sequence[CalibrationRecord]) -> str:
    ratios = [c.ratio for c in calibration if c.ratio is not None]
    if not ratios:
        return "No round produced both numbers."
    median = statistics.median(ratios)
    cpu = _median([c.octo_bench.load_cpu_pct for c in calibration
                   if c.octo_bench.load_cpu_pct is not None])
    within = abs(median - 1.0) <= HONESTY_TOLERANCE
    return (f"octo bench measured {median:.2f}x wrk's req/s (median of {len(ratios)} round(s), "
            f"range {min(ratios):.2f}–{max(ratios):.2f}), using {_num(cpu, '.0f')} % of its "
            f"core: {'within' if within else 'OUTSIDE'} the {HONESTY_TOLERANCE:.0%} target.")


def calibration_section(meta: Meta, calibration: Sequence[CalibrationRecord]) -> list[str]:
    lines = ["## octo bench vs wrk", ""]
    if not calibration:
        return [*lines, f"Not measured: {meta.calibration_note or 'not asked for'}."]
    lines += [
        "octo's own load generator checked against wrk: per round, one fresh octo server "
        "(1 worker, hello scenario, 64 connections) is warmed up, then loaded by wrk and by "
        "`octo bench` one after the other (the order alternates by round), both pinned to the "
        f"same core for {meta.duration} s. octo bench command: `{meta.calibration_command}`.",
        "",
        markdown_table(CALIBRATION_HEADERS, calibration_rows(calibration)),
        "",
        calibration_verdict(calibration),
    ]
    return lines


def _bullet(text: str) -> str:
    head, _, rest = text.partition("\n")
    return f"- {head}" + (f"\n\n  ```\n{_indent(rest)}\n  ```" if rest else "")


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def to_json(meta: Meta, summaries: Sequence[Summary], records: Sequence[RunRecord],
            calibration: Sequence[CalibrationRecord] = ()) -> str:
    return json.dumps({"meta": dataclasses.asdict(meta),
                       "summary": [dataclasses.asdict(s) for s in summaries],
                       "runs": [dataclasses.asdict(r) for r in records],
                       "octo_bench_vs_wrk": [{**dataclasses.asdict(c), "ratio": c.ratio}
                                             for c in calibration]}, indent=2)
