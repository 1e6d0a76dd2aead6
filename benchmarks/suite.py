"""The measuring loop: plan, per-run procedure, rounds, and the written report."""

from __future__ import annotations

import argparse
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

import environment
import procs
import report
from catalog import BASELINE, SCENARIOS, SERVERS, Scenario, Server, pick
from loadgen import (
    GENERATORS,
    LoadError,
    LoadGenerator,
    LoadGeneratorUnavailable,
    LoadResult,
    LoadSpec,
    pinned,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
APPS = BENCH_DIR / "apps"
VENV_BIN = BENCH_DIR / ".venv" / "bin"
RESULTS = BENCH_DIR / "results"
HOST = "127.0.0.1"
QUIET_TIMEOUT = 30.0  # seconds to wait at most, before each run, for other processes to calm
MB = 1024 * 1024

EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_GENERATOR = 3


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


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan from the command line; ``--quick`` only changes the defaults."""
    quick: bool = args.quick

    def chosen(value: int | None, quick_default: int, default: int) -> int:
        if value is not None:
            return value
        return quick_default if quick else default

    plan = Plan(
        scenarios=pick("scenario", args.scenarios or ("hello" if quick else None), SCENARIOS),
        servers=pick("server", args.servers, SERVERS),
        rounds=chosen(args.rounds, 1, 3),
        duration=chosen(args.duration, 3, 10),
        warmup=chosen(args.warmup, 1, 2),
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        quick=quick,
        noisy_retries=args.noisy_retries,
    )
    if plan.rounds < 1 or plan.duration < 1 or plan.warmup < 0 or plan.noisy_retries < 0:
        raise ValueError("--rounds and --duration must be >= 1, --warmup and "
                         "--noisy-retries >= 0")
    if not any(server.serves(sc) for sc in plan.scenarios for server in plan.servers):
        raise ValueError("nothing to measure: no selected server takes part in a selected "
                         "scenario")
    return plan


def check_cpus(plan: Plan) -> None:
    if shutil.which("taskset") is None:
        raise ValueError("taskset (util-linux) is needed to pin the server and load generator")
    usable = os.sched_getaffinity(0)
    for cpu in (plan.server_cpu, plan.client_cpu):
        if cpu not in usable:
            raise ValueError(f"CPU {cpu} is not usable here (usable: {sorted(usable)})")
    if plan.server_cpu == plan.client_cpu:
        print("warning: server and load generator share one core", file=sys.stderr)


def rotation(servers: Sequence[Server], round_index: int) -> list[Server]:
    """Round 0 keeps the table order; each later round starts one server further on."""
    shift = round_index % len(servers) if servers else 0
    return [*servers[shift:], *servers[:shift]]


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
        waited = environment.wait_for_quiet(report.NOISY_OTHER_CPU, QUIET_TIMEOUT)
        if waited >= 1.0:
            print(f"  (waited {waited:.0f} s for other processes to quieten)", flush=True)
        record = self._attempt(round_no, scenario, server, attempt)
        if "address already in use" in record.failure.lower():
            record = self._attempt(round_no, scenario, server, attempt)
        print(progress_line(self.plan, record, attempt), flush=True)
        return record

    def _attempt(self, round_no: int, scenario: Scenario, server: Server,
                 attempt: int) -> report.RunRecord:
        record = report.RunRecord(round_no, scenario.name, server.name)
        stem = f"r{round_no}-{scenario.name}-{server.name}-a{attempt}"
        port = procs.free_port(HOST)
        launch = procs.Launch(
            argv=server.command(template_fields(scenario.app, str(port))),
            env=procs.server_env(APPS, dict(scenario.env)), cwd=APPS,
            log=self.raw_dir / f"{stem}.server.log", cpu=self.plan.server_cpu)
        try:
            with procs.running(launch, HOST, port) as srv:
                time.sleep(procs.SETTLE)
                record.idle_rss_mb = procs.tree_rss(srv.proc.pid) / MB
                procs.check_response(srv, probe(scenario))
                if self.plan.warmup:
                    self._load(srv, load_spec(self.plan, scenario, port, self.plan.warmup))
                result = self._measured_load(srv, record, scenario, port)
        except (procs.ServerError, LoadError) as exc:
            record.failure = str(exc)
        else:
            (self.raw_dir / f"{stem}.{self.generator.name}.txt").write_text(result.output)
            fill(record, result)
        record.server_output = procs.file_tail(launch.log)
        return record

    def _measured_load(self, srv: procs.Running, record: report.RunRecord, scenario: Scenario,
                       port: int) -> LoadResult:
        """The measured run, noting the CPU the server and everything else used meanwhile."""
        start = (time.monotonic(), environment.busy_cpu_seconds(),
                 procs.tree_cpu_seconds(srv.proc.pid), environment.own_cpu_seconds())
        result = self._load(srv, load_spec(self.plan, scenario, port, self.plan.duration))
        end = (time.monotonic(), environment.busy_cpu_seconds(),
               procs.tree_cpu_seconds(srv.proc.pid), environment.own_cpu_seconds())
        wall, busy, server, own = (b - a for a, b in zip(start, end, strict=True))
        record.server_cpu_pct = 100.0 * server / wall
        record.other_cpu_pct = max(0.0, 100.0 * (busy - server - own) / wall)
        return result

    def _load(self, srv: procs.Running, spec: LoadSpec) -> LoadResult:
        """One load run; a server that died during it is reported as such, not as bad load."""
        try:
            result = self.generator.run(spec)
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


def keep_quieter(first: report.RunRecord, retry: report.RunRecord) -> report.RunRecord:
    """The retry if it failed (a failure is never hidden) or was quieter, else the first;
    the other one is noted in the kept record's ``discarded``."""
    take_retry = not retry.ok or (retry.other_cpu_pct or 0.0) < (first.other_cpu_pct or 0.0)
    kept, dropped = (retry, first) if take_retry else (first, retry)
    kept.discarded = [*first.discarded, *retry.discarded, report.brief(dropped)]
    return kept


def run_rounds(plan: Plan, runner: Runner) -> list[report.RunRecord]:
    """Round by round; in each, scenario by scenario with the round's server rotation."""
    return [runner.measure(round_index + 1, scenario, server)
            for round_index in range(plan.rounds)
            for scenario in plan.scenarios
            for server in rotation(plan.servers, round_index) if server.serves(scenario)]


def progress_line(plan: Plan, r: report.RunRecord, attempt: int = 1) -> str:
    head = f"[round {r.round}/{plan.rounds}] {r.scenario:<15} {r.server:<12}"
    if not r.ok:
        return f"{head} FAILED: {r.failure.splitlines()[0] if r.failure else '?'}"
    notes = [f"errors {r.errors}"] if r.errors else []
    notes += [f"attempt {attempt}"] if attempt > 1 else []
    notes += [f"noisy: other CPU {r.other_cpu_pct or 0:.0f} %"] if report.noisy(r) else []
    return (f"{head} {r.rps or 0:>10,.0f} req/s  p50 {r.p50_ms or 0:.2f} ms  "
            f"p99 {r.p99_ms or 0:.2f} ms  idle RSS {r.idle_rss_mb or 0:.1f} MB"
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
        command=shlex.join(["python", "benchmarks/run.py", *argv]),
        git=environment.git_revision(REPO),
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
        quiet_timeout=QUIET_TIMEOUT,
        baseline=BASELINE,
        load_before=environment.load_average(),
        servers={s.name: shlex.join(pinned(plan.server_cpu, s.command(fields)))
                 for s in plan.servers},
        scenarios={s.name: s.description for s in plan.scenarios},
    )


def measured_octo_digest() -> str:
    package = environment.installed_package_dir("octo")
    return "not installed" if package is None else environment.source_digest(package)


def report_path(plan: Plan, meta: report.Meta, override: Path | None) -> Path:
    """--output, else results/<date>[-quick].md, numbered -2, -3... rather than overwritten."""
    if override is not None:
        return override
    stem = f"{meta.date}{'-quick' if plan.quick else ''}"
    path, number = RESULTS / f"{stem}.md", 1
    while path.exists():
        number += 1
        path = RESULTS / f"{stem}-{number}.md"
    return path


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {display_path(path.resolve())}")


def make_generator(name: str) -> tuple[LoadGenerator, Path]:
    """The checked load generator and a fresh raw-output directory for this suite."""
    raw_dir = RESULTS / "raw" / datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    generator = GENERATORS[name](raw_dir)
    generator.check()
    raw_dir.mkdir(parents=True, exist_ok=True)
    return generator, raw_dir


def publish(args: argparse.Namespace, plan: Plan, meta: report.Meta,
            records: Sequence[report.RunRecord]) -> None:
    """Console table, Markdown report, optional JSON, and the problems on stderr."""
    summaries = report.summarize(records, [s.name for s in plan.scenarios],
                                 [s.name for s in plan.servers], BASELINE)
    steal = "?" if meta.steal_percent is None else f"{meta.steal_percent:.1f}"
    print(f"\n{report.console(meta, summaries)}\n\nload average before {meta.load_before}, "
          f"after {meta.load_after}; CPU steal during the suite {steal} %")
    write(report_path(plan, meta, args.output), report.markdown(meta, summaries, records))
    if args.json is not None:
        write(args.json, report.to_json(meta, summaries, records))
    for line in report.problems(meta, records):
        print(f"problem: {line}", file=sys.stderr)


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Measure as *args* say (*argv* is only recorded); the exit status of run.py."""
    try:
        plan = make_plan(args)
        check_cpus(plan)
        generator, raw_dir = make_generator(args.load_generator)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LoadGeneratorUnavailable as exc:
        print(f"error: load generator {args.load_generator} unavailable: {exc}",
              file=sys.stderr)
        return EXIT_NO_GENERATOR
    meta = start_meta(plan, generator, argv)
    cpu_before = environment.CpuTimes.read()
    print(f"octo {meta.versions.get('octo')} ({meta.git}) on {meta.cpu_model}; "
          f"load {meta.load_before}; {plan.rounds} round(s) x {plan.duration} s; "
          f"raw output in {display_path(raw_dir)}", flush=True)
    records = run_rounds(plan, Runner(plan, generator, raw_dir))
    meta.finished = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    meta.load_after = environment.load_average()
    meta.tree_source_end = environment.source_digest(REPO / "octo")
    meta.steal_percent = environment.CpuTimes.read().steal_percent_since(cpu_before)
    publish(args, plan, meta, records)
    return EXIT_RUN_FAILED if any(not r.ok for r in records) else 0
