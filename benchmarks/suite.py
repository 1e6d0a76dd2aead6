"""The measuring loop: plan, per-run procedure, rounds, and the written report."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import chart
import cpu
import environment
import procs
import report
from catalog import (
    BASELINE,
    QUICK_SCENARIOS,
    QUICK_SERVERS,
    SCENARIOS,
    SERVERS,
    Scenario,
    Server,
    pick,
)
from loadgen import (
    GENERATORS,
    LoadError,
    LoadGenerator,
    LoadGeneratorUnavailable,
    LoadResult,
    LoadSpec,
    OctoBench,
    Wrk,
    pinned,
    resolve,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
APPS = BENCH_DIR / "apps"
VENV_BIN = Path(os.environ.get("BENCH_VENV", BENCH_DIR / ".venv")).resolve() / "bin"
RESULTS = BENCH_DIR / "results"
HOST = "127.0.0.1"
MB = 1024 * 1024

EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_GENERATOR = 3

# Defaults (full, quick). Full: 3 rounds x 41 runs, each ~4 + 1 s of load plus ~2.5 s of
# start, probe and stop, plus noisy repeats and waits for quiet: about 20-25 minutes here.
ROUNDS = (3, 1)
DURATION = (4, 2)
WARMUP = (1, 1)
NOISY_RETRIES = (1, 0)  # quick mode has no thresholds: a noisy number is not worth repeating
QUIET_TIMEOUT = (30, 5)  # seconds to wait at most, before each run, for other processes to calm
CALIBRATION_SERVER = "octo"
CALIBRATION_SCENARIO = "hello"


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    scenarios: list[Scenario]
    servers: list[Server]
    rounds: int
    duration: int
    warmup: int
    server_cpu: int
    client_cpu: int
    quick: bool
    noisy_retries: int = 1
    quiet_timeout: int = 30
    calibrate: bool = False  # also compare octo bench with wrk, once per round
    octo_rev: str = ""  # the git revision setup.sh installed octo from ('': the work tree)


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan from the command line; ``--quick`` only changes the defaults."""
    quick: bool = args.quick

    def chosen(value: int | None, defaults: tuple[int, int]) -> int:
        return value if value is not None else defaults[1 if quick else 0]

    plan = Plan(
        scenarios=pick("scenario", args.scenarios or (QUICK_SCENARIOS if quick else None),
                       SCENARIOS),
        servers=pick("server", args.servers or (QUICK_SERVERS if quick else None), SERVERS),
        rounds=chosen(args.rounds, ROUNDS),
        duration=chosen(args.duration, DURATION),
        warmup=chosen(args.warmup, WARMUP),
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        quick=quick,
        noisy_retries=chosen(args.noisy_retries, NOISY_RETRIES),
        quiet_timeout=chosen(args.quiet_timeout, QUIET_TIMEOUT),
        calibrate=not quick if args.calibrate is None else args.calibrate,
        octo_rev=args.octo_rev or "",
    )
    if plan.rounds < 1 or plan.duration < 1 or min(plan.warmup, plan.noisy_retries,
                                                     plan.quiet_timeout) < 0:
        raise ValueError("--rounds and --duration must be >= 1, --warmup, --noisy-retries "
                         "and --quiet-timeout >= 0")
    if not any(server.serves(sc) for sc in plan.scenarios for server in plan.servers):
        raise ValueError("nothing to measure: no selected server takes part in a selected "
                         "scenario")
    return plan


def check_cpus(plan: Plan) -> None:
    if shutil.which("taskset") is None:
        raise ValueError("taskset (util-linux) is needed to pin the server and load generator")
    usable = os.sched_getaffinity(0)
    for core in (plan.server_cpu, plan.client_cpu):
        if core not in usable:
            raise ValueError(f"CPU {core} is not usable here (usable: {sorted(usable)})")
    if plan.server_cpu == plan.client_cpu:
        print("warning: server and load generator share one core", file=sys.stderr)


def rotation(servers: Sequence[Server], round_index: int) -> list[Server]:
    """Round 0 keeps the table order; each later round starts one server further on."""
    shift = round_index % len(servers) if servers else 0
    return [*servers[shift:], *servers[:shift]]


def _venv_prefix() -> str:
    """``BENCH_VENV=... `` when the suite runs in a venv other than benchmarks/.venv."""
    venv = os.environ.get("BENCH_VENV")
    return f"BENCH_VENV={shlex.quote(display_path(Path(venv)))} " if venv else ""


def template_fields(app: str, port: str) -> dict[str, str]:
    return {"bin": str(VENV_BIN), "python": str(VENV_BIN / "python"), "apps": str(APPS),
            "app": app, "host": HOST, "port": port}


def load_spec(plan: Plan, scenario: Scenario, port: int | str, duration: int) -> LoadSpec:
    return LoadSpec(url=f"http://{HOST}:{port}{scenario.path}", duration=duration,
                    connections=scenario.connections, threads=scenario.threads,
                    method=scenario.method, body=scenario.body, headers=scenario.headers,
                    cpu=plan.client_cpu)


def probe(scenario: Scenario) -> procs.Probe:
    return procs.Probe(method=scenario.method, path=scenario.path, body=scenario.body,
                       headers=dict(scenario.headers), status=scenario.expect_status,
                       contains=scenario.expect_body)


class Runner:
    """Measures one (round, scenario, server) at a time; keeps raw output in *raw_dir*."""

    def __init__(self, plan: Plan, generator: LoadGenerator, raw_dir: Path) -> None:
        self.plan = plan
        self.generator = generator
        self.raw_dir = raw_dir

    def measure(self, round_no: int, scenario: Scenario, server: Server) -> report.RunRecord:
        """One run, repeated up to --noisy-retries times while other processes loaded the
        machine during it (see keep_quieter)."""
        record = self._attempt_once(round_no, scenario, server, 1)
        for attempt in range(2, self.plan.noisy_retries + 2):
            if not report.noisy(record):
                break
            record = keep_quieter(record, self._attempt_once(round_no, scenario, server, attempt))
        return record

    def _attempt_once(self, round_no: int, scenario: Scenario, server: Server,
                      attempt: int) -> report.RunRecord:
        """Wait for a quiet machine, then measure (twice if the free port got taken)."""
        waited = environment.wait_for_quiet(report.NOISY_OTHER_CPU, self.plan.quiet_timeout)
        if waited >= 1.0:
            print(f"  (waited {waited:.0f} s for other processes to quieten)", flush=True)
        record = self._attempt(round_no, scenario, server, attempt)
        if "address already in use" in record.failure.lower():
            record = self._attempt(round_no, scenario, server, attempt)
        print(progress_line(self.plan, record, attempt), flush=True)
        return record

    def _attempt(self, round_no: int, scenario: Scenario, server: Server,
                 attempt: int) -> report.RunRecord:
        record = report.RunRecord(round_no, scenario.name, server.name,
                                  generator=self.generator.name)
        stem = f"r{round_no}-{scenario.name}-{server.name}-a{attempt}"
        port = procs.free_port(HOST)
        launch = make_launch(self.plan, self.raw_dir, scenario, server, port, stem)
        try:
            with procs.running(launch, HOST, port) as srv:
                answer = procs.check_response(srv, probe(scenario))
                record.header_value = answer.get(scenario.report_header, "")
                sample_memory(srv, record)
                if self.plan.warmup:
                    run_load(self.generator, srv,
                             load_spec(self.plan, scenario, port, self.plan.warmup))
                spec = load_spec(self.plan, scenario, port, self.plan.duration)
                result = measured_load(self.generator, srv, record, spec)
        except (procs.ServerError, LoadError) as exc:
            record.failure = str(exc)
        else:
            (self.raw_dir / f"{stem}.{self.generator.name}.txt").write_text(result.output)
            fill(record, result)
        record.server_output = procs.file_tail(launch.log)
        return record


def make_launch(plan: Plan, raw_dir: Path, scenario: Scenario, server: Server, port: int,
                stem: str) -> procs.Launch:
    return procs.Launch(
        argv=server.command(template_fields(scenario.app, str(port))),
        env=procs.server_env(APPS, {**dict(scenario.env), **dict(server.env)}), cwd=APPS,
        log=raw_dir / f"{stem}.server.log", cpu=plan.server_cpu)


def sample_memory(srv: procs.Running, record: report.RunRecord) -> None:
    """Idle RSS, SETTLE seconds after the pre-flight request: of the serving process (the
    worker, found by the connection it accepts) and of the whole process tree."""
    time.sleep(procs.SETTLE)
    sizes = procs.rss_by_pid(srv.proc.pid)
    record.rss_tree_mb = sum(sizes.values()) / MB
    pid = procs.serving_pid(srv)
    if pid is not None and pid in sizes:
        record.rss_worker_mb = sizes[pid] / MB


def measured_load(generator: LoadGenerator, srv: procs.Running, record: report.RunRecord,
                  spec: LoadSpec) -> LoadResult:
    """The measured run, noting the CPU the server and everything else used meanwhile: the
    server tree's user and system time per completed request, and the cores it kept busy."""
    server_before = cpu.tree_times(srv.proc.pid)
    start = (time.monotonic(), environment.busy_cpu_seconds(), environment.own_cpu_seconds())
    result = run_load(generator, srv, spec)
    end = (time.monotonic(), environment.busy_cpu_seconds(), environment.own_cpu_seconds())
    server = cpu.tree_times(srv.proc.pid) - server_before
    wall, busy, own = (b - a for a, b in zip(start, end, strict=True))
    record.other_cpu_pct = max(0.0, 100.0 * (busy - server.total - own) / wall)
    cost = cpu.cost(server, wall, result.requests)
    if cost is not None:
        record.user_us_per_request = cost.user_us
        record.sys_us_per_request = cost.sys_us
        record.cores_busy = cost.cores_busy
    return result


def run_load(generator: LoadGenerator, srv: procs.Running, spec: LoadSpec) -> LoadResult:
    """One load run; a server that died during it is reported as such, not as bad load."""
    try:
        result = generator.run(spec)
    except LoadError:
        srv.raise_if_dead("under load")
        raise
    srv.raise_if_dead("under load")
    return result


def fill(record: report.RunRecord, result: LoadResult) -> None:
    record.rps = result.requests_per_sec
    record.p50_ms = result.p50_ms
    record.p99_ms = result.p99_ms
    record.requests = result.requests
    record.errors = result.errors
    record.error_detail = result.error_detail
    record.load_cpu_pct = result.cpu_percent


def keep_quieter(first: report.RunRecord, retry: report.RunRecord) -> report.RunRecord:
    """The retry if it failed (a failure is never hidden) or was quieter, else the first;
    the other one is noted in the kept record's ``discarded``."""
    take_retry = not retry.ok or (retry.other_cpu_pct or 0.0) < (first.other_cpu_pct or 0.0)
    kept, dropped = (retry, first) if take_retry else (first, retry)
    kept.discarded = [*first.discarded, *retry.discarded, report.brief(dropped)]
    return kept


class Calibrator:
    """octo bench's honesty check: per round, one fresh octo server (hello) warmed up, then
    loaded by wrk and by octo bench one after the other with the same pinning."""

    def __init__(self, plan: Plan, runner: Runner, wrk: Wrk, bench: OctoBench) -> None:
        self.plan = plan
        self.runner = runner
        self.wrk = wrk
        self.bench = bench
        self.server = pick("server", CALIBRATION_SERVER, SERVERS)[0]
        self.scenario = pick("scenario", CALIBRATION_SCENARIO, SCENARIOS)[0]

    def measure(self, round_no: int) -> report.CalibrationRecord:
        environment.wait_for_quiet(report.NOISY_OTHER_CPU, self.plan.quiet_timeout)
        runs = {gen.name: report.RunRecord(round_no, report.CALIBRATION, self.server.name,
                                           generator=gen.name) for gen in (self.wrk, self.bench)}
        order = [self.wrk, self.bench] if round_no % 2 else [self.bench, self.wrk]
        stem = f"r{round_no}-{report.CALIBRATION}"
        port = procs.free_port(HOST)
        launch = make_launch(self.plan, self.runner.raw_dir, self.scenario, self.server, port,
                             stem)
        try:
            with procs.running(launch, HOST, port) as srv:
                procs.check_response(srv, probe(self.scenario))
                if self.plan.warmup:
                    run_load(self.wrk, srv, self.spec(port, self.plan.warmup))
                for gen in order:
                    self._one(gen, srv, runs[gen.name], stem)
        except procs.ServerError as exc:
            for run in runs.values():
                run.failure = run.failure or str(exc)
        record = report.CalibrationRecord(round_no, runs[self.wrk.name], runs[self.bench.name])
        print(calibration_line(self.plan, record), flush=True)
        return record

    def spec(self, port: int | str, duration: int) -> LoadSpec:
        return load_spec(self.plan, self.scenario, port, duration)

    def _one(self, gen: LoadGenerator, srv: procs.Running, record: report.RunRecord,
             stem: str) -> None:
        try:
            result = measured_load(gen, srv, record, self.spec(srv.port, self.plan.duration))
        except LoadError as exc:
            record.failure = str(exc)
            return
        (self.runner.raw_dir / f"{stem}.{gen.name}.txt").write_text(result.output)
        fill(record, result)


def calibration_line(plan: Plan, c: report.CalibrationRecord) -> str:
    head = f"[round {c.round}/{plan.rounds}] {report.CALIBRATION:<15} {'octo':<12}"
    parts = [f"{r.generator} " + (f"{r.rps or 0:,.0f} req/s, CPU {r.load_cpu_pct or 0:.0f} %"
                                  if r.ok else "FAILED") for r in (c.wrk, c.octo_bench)]
    ratio = "" if c.ratio is None else f"  (octo bench / wrk {c.ratio:.2f})"
    return f"{head} {'; '.join(parts)}{ratio}"


def make_calibrator(plan: Plan, runner: Runner) -> tuple[Calibrator | None, str]:
    """The octo bench vs wrk check, or None and why it is not made."""
    if not plan.calibrate:
        return None, "not asked for (--no-calibrate, or --quick)"
    if shutil.which("wrk") is None:
        return None, "wrk is not installed, so there is nothing to compare octo bench with"
    if CALIBRATION_SERVER not in {s.name for s in plan.servers}:
        return None, f"server {CALIBRATION_SERVER} is not among the selected servers"
    bench = OctoBench()
    try:
        bench.check()
    except LoadGeneratorUnavailable as exc:
        bench.close()
        return None, f"octo bench unavailable: {exc}"
    return Calibrator(plan, runner, Wrk(), bench), ""


def run_rounds(plan: Plan, runner: Runner, calibrator: Calibrator | None,
               ) -> tuple[list[report.RunRecord], list[report.CalibrationRecord]]:
    """Round by round: each scenario with the round's server rotation, then the octo bench
    vs wrk comparison when there is one."""
    records: list[report.RunRecord] = []
    calibration: list[report.CalibrationRecord] = []
    for round_index in range(plan.rounds):
        records += [runner.measure(round_index + 1, scenario, server)
                    for scenario in plan.scenarios
                    for server in rotation(plan.servers, round_index) if server.serves(scenario)]
        if calibrator is not None:
            calibration.append(calibrator.measure(round_index + 1))
    return records, calibration


def progress_line(plan: Plan, r: report.RunRecord, attempt: int = 1) -> str:
    head = f"[round {r.round}/{plan.rounds}] {r.scenario:<15} {r.server:<12}"
    if not r.ok:
        return f"{head} FAILED: {r.failure.splitlines()[0] if r.failure else '?'}"
    notes = [f"errors {r.errors}"] if r.errors else []
    notes += [f"attempt {attempt}"] if attempt > 1 else []
    notes += [f"noisy: other CPU {r.other_cpu_pct or 0:.0f} %"] if report.noisy(r) else []
    notes += [r.header_value] if r.header_value else []
    return (f"{head} {r.rps or 0:>10,.0f} req/s  CPU/request user "
            f"{r.user_us_per_request or 0:.1f} + sys {r.sys_us_per_request or 0:.1f} µs, "
            f"{r.cores_busy or 0:.2f} cores busy  p50 {r.p50_ms or 0:.2f} ms  "
            f"p99 {r.p99_ms or 0:.2f} ms  RSS worker {r.rss_worker_mb or 0:.1f} / "
            f"tree {r.rss_tree_mb or 0:.1f} MB"
            + (f"  ({'; '.join(notes)})" if notes else ""))


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def start_meta(plan: Plan, generator: LoadGenerator, argv: Sequence[str]) -> report.Meta:
    now = datetime.datetime.now().astimezone()
    fields = {**template_fields("APP", "PORT"), "bin": display_path(VENV_BIN),
              "python": display_path(VENV_BIN / "python"), "apps": display_path(APPS)}
    first = plan.scenarios[0]
    return report.Meta(
        date=now.date().isoformat(),
        started=now.strftime("%Y-%m-%d %H:%M:%S %Z"),
        command=_venv_prefix() + shlex.join(["python", "benchmarks/run.py", *argv]),
        git=environment.git_revision(REPO),
        octo_rev=environment.resolve_revision(REPO, plan.octo_rev) if plan.octo_rev else "",
        measured_source=measured_octo_digest(),
        cpu_model=environment.cpu_model(),
        cores=os.cpu_count() or 0,
        server_cpu=plan.server_cpu,
        client_cpu=plan.client_cpu,
        kernel=f"{platform.system()} {platform.release()}",
        python=environment.python_version(),
        versions=environment.versions(),
        generator=generator.name,
        generator_version=generator.version(),
        load_command=shlex.join(generator.command(load_spec(plan, first, "PORT",
                                                            plan.duration))),
        rounds=plan.rounds,
        duration=plan.duration,
        warmup=plan.warmup,
        noisy_retries=plan.noisy_retries,
        quiet_timeout=plan.quiet_timeout,
        baseline=BASELINE,
        load_before=environment.load_average(),
        servers={s.name: shlex.join(pinned(plan.server_cpu, s.command(fields)))
                 for s in plan.servers},
        scenarios={s.name: s.description for s in plan.scenarios},
        report_headers={s.name: s.report_header for s in plan.scenarios if s.report_header},
        quick=plan.quick,
    )


def measured_octo_digest() -> str:
    package = environment.installed_package_dir("octo")
    return "not installed" if package is None else environment.source_digest(package)


def report_path(plan: Plan, meta: report.Meta, override: Path | None) -> Path:
    """--output, else results/<date>[-quick].md, numbered -2, -3... rather than overwritten
    (a chart of the same name with .png is counted as taken too)."""
    if override is not None:
        return override
    stem = f"{meta.date}{'-quick' if plan.quick else ''}"
    path, number = RESULTS / f"{stem}.md", 1
    while path.exists() or path.with_suffix(".png").exists():
        number += 1
        path = RESULTS / f"{stem}-{number}.md"
    return path


def write(path: Path, text: str) -> None:
    """Write a report; paths inside the checkout are given relative to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace(f"{REPO}/", ""))
    print(f"wrote {display_path(path.resolve())}")


def make_generator(name: str) -> LoadGenerator:
    """The checked load generator (``auto``: wrk if installed, else octo bench)."""
    generator = GENERATORS[resolve(name)]()
    try:
        generator.check()
    except LoadGeneratorUnavailable:
        generator.close()
        raise
    return generator


def make_raw_dir(override: Path | None) -> Path:
    """--raw-dir, else a fresh results/raw/<time>/ for this suite's raw output and logs."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    raw_dir = override if override is not None else RESULTS / "raw" / stamp
    raw_dir.mkdir(parents=True, exist_ok=True)
    return raw_dir


@dataclasses.dataclass(slots=True)
class Outcome:
    records: list[report.RunRecord]
    calibration: list[report.CalibrationRecord]

    def all_runs(self) -> list[report.RunRecord]:
        return [*self.records, *report.calibration_runs(self.calibration)]

    def failed(self) -> bool:
        """Any run (calibration included) that failed or counted errors."""
        return any(not r.ok or r.errors for r in self.all_runs())


def draw_chart(plan: Plan, meta: report.Meta, summaries: Sequence[report.Summary],
               md_path: Path) -> None:
    """The PNG beside the report (same name), copied to results/latest.png for a full run
    into results/; a missing matplotlib is noted in the report, not fatal."""
    png = md_path.with_suffix(".png")
    title = (f"octo benchmarks {meta.date}{' (quick)' if plan.quick else ''}\n"
             f"median of {plan.rounds} round(s) x {plan.duration} s, whiskers min–max; "
             f"load: {meta.generator}; every server on 1 pinned core")
    try:
        chart.draw(summaries, [s.name for s in plan.scenarios], [s.name for s in plan.servers],
                   BASELINE, title, png)
    except chart.ChartUnavailable as exc:
        meta.chart_note = str(exc)
        return
    meta.chart = png.name
    print(f"wrote {display_path(png.resolve())}")
    if not plan.quick and md_path.resolve().parent == RESULTS.resolve():
        shutil.copyfile(png, RESULTS / "latest.png")
        print(f"wrote {display_path(RESULTS / 'latest.png')}")


def publish(args: argparse.Namespace, plan: Plan, meta: report.Meta, outcome: Outcome) -> None:
    """Console table, chart, Markdown report, optional JSON, and the problems on stderr."""
    summaries = report.summarize(outcome.records, [s.name for s in plan.scenarios],
                                 [s.name for s in plan.servers], BASELINE)
    steal = "?" if meta.steal_percent is None else f"{meta.steal_percent:.1f}"
    print(f"\n{report.console(meta, summaries)}\n\n"
          f"{report.calibration_verdict(outcome.calibration) if outcome.calibration else ''}"
          f"\nload average before {meta.load_before}, after {meta.load_after}; "
          f"CPU steal during the suite {steal} %")
    md_path = report_path(plan, meta, args.output)
    draw_chart(plan, meta, summaries, md_path)
    write(md_path, report.markdown(meta, summaries, outcome.records, outcome.calibration))
    if args.json is not None:
        write(args.json, report.to_json(meta, summaries, outcome.records, outcome.calibration))
    for line in report.problems(meta, outcome.all_runs()):
        print(f"problem: {line}", file=sys.stderr)


def prepare(args: argparse.Namespace) -> tuple[Plan, LoadGenerator]:
    """The plan and the checked load generator; ValueError or LoadGeneratorUnavailable."""
    plan = make_plan(args)
    check_cpus(plan)
    return plan, make_generator(args.load_generator)


def measure(plan: Plan, generator: LoadGenerator, meta: report.Meta,
            raw_dir: Path) -> Outcome:
    runner = Runner(plan, generator, raw_dir)
    calibrator, meta.calibration_note = make_calibrator(plan, runner)
    with contextlib.ExitStack() as stack:
        if calibrator is not None:
            stack.enter_context(calibrator.wrk)
            stack.enter_context(calibrator.bench)
            meta.calibration_command = shlex.join(
                calibrator.bench.command(calibrator.spec("PORT", plan.duration)))
        return Outcome(*run_rounds(plan, runner, calibrator))


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Measure as *args* say (*argv* is only recorded); the exit status of run.py: 0 when
    every run succeeded without errors, else 1 (2: bad usage, 3: no load generator)."""
    try:
        plan, generator = prepare(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LoadGeneratorUnavailable as exc:
        print(f"error: load generator {args.load_generator} unavailable: {exc}",
              file=sys.stderr)
        return EXIT_NO_GENERATOR
    with generator:
        raw_dir = make_raw_dir(args.raw_dir)
        meta = start_meta(plan, generator, argv)
        cpu_before = environment.CpuTimes.read()
        print(f"octo {meta.versions.get('octo')} ({meta.git}) on {meta.cpu_model}; "
              f"load {meta.load_before}; {plan.rounds} round(s) x {plan.duration} s; "
              f"load by {generator.name}; raw output in {display_path(raw_dir)}", flush=True)
        outcome = measure(plan, generator, meta, raw_dir)
    meta.finished = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    meta.load_after = environment.load_average()
    if not plan.octo_rev:
        meta.tree_source_end = environment.source_digest(REPO / "octo")
    meta.steal_percent = environment.CpuTimes.read().steal_percent_since(cpu_before)
    publish(args, plan, meta, outcome)
    return EXIT_RUN_FAILED if outcome.failed() else 0
