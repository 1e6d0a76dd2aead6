"""The measuring loop and report of benchmarks/callgrind.py (see its docstring for the
method): per scenario and server, an ordinary req/s run and a window of exactly N requests
under callgrind, with the window's instructions per request split by object."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import queue
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cgprofile
import environment
import loadgen
import procs
import report
import suite
from catalog import SCENARIOS, SERVERS, Scenario, Server, pick

REPO = suite.REPO
RESULTS = suite.RESULTS
SERVER_CPU, CLIENT_CPU = 0, 1
CONNECTIONS = 64
MIN_REQUESTS = 2 * CONNECTIONS  # a window shorter than this is mostly connection set-up
READY_TIMEOUT = 300.0  # seconds: Django imports for a minute under valgrind
PROBE_TIMEOUT = 120.0
STOP_TIMEOUT = 120.0  # a clean exit under valgrind writes its final dumps first
SETTLE_LIMIT = 60.0  # seconds to wait at most for the tree to go idle
IDLE_SHARE = 0.2  # of one core: below this over SETTLE_INTERVAL the tree counts as idle
SETTLE_INTERVAL = 0.5
IDLE, IDLE_END, OPEN, WINDOW = "idle", "idle-end", "open", "window"  # dump descriptions
DRIVER_READY_TIMEOUT = 120.0  # seconds for cgload.py to open its connections under valgrind
DRIVER_SLACK, DRIVER_GRACE = 5.0, 120.0  # the window may take 5x the warm-up's pace + 2 min
DRIVER_CLOSE_TIMEOUT = 30.0
BASE = "granian"  # instructions and req/s are also given relative to this server
QUIET_SHARE, QUIET_TIMEOUT = 10.0, 30  # before a req/s run: others under 10 % of a core
EXIT_FAILED = 1


@dataclasses.dataclass(slots=True)
class Rate:
    """The ordinary (not valgrind) run."""

    rps: float
    p99_ms: float
    errors: int


@dataclasses.dataclass(slots=True)
class Process:
    pid: int
    command: str
    instructions: int


@dataclasses.dataclass(slots=True)
class Window:
    """One callgrind measurement: Ir of the whole tree over exactly ``requests`` answers."""

    requests: int
    instructions: int
    seconds: float  # from the dump that opens the window to the one that closes it
    valgrind_rps: float
    idle_per_second: float  # Ir/s of the idle tree, before and after the window
    processes: list[Process]
    groups: dict[str, int]
    top: list[tuple[str, str, int]]

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests

    @property
    def idle_per_request(self) -> float:
        """The part of ``per_request`` the idle tree would have spent in the same time."""
        return self.idle_per_second * self.seconds / self.requests


@dataclasses.dataclass(slots=True)
class Result:
    scenario: str
    server: str
    rates: list[Rate] = dataclasses.field(default_factory=list)
    windows: list[Window] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)

    def counts(self, net: bool = False) -> list[float]:
        return [w.per_request - (w.idle_per_request if net else 0.0) for w in self.windows]

    def instructions(self, net: bool = False) -> float | None:
        """The median count per request (*net*: less what the idle tree would have used)."""
        values = self.counts(net)
        return statistics.median(values) if values else None

    def rps(self) -> float | None:
        values = [r.rps for r in self.rates]
        return statistics.median(values) if values else None

    def spread(self, net: bool = False) -> float | None:
        """(max - min) / min of the per-request counts, in %."""
        values = self.counts(net)
        return 100.0 * (max(values) - min(values)) / min(values) if len(values) > 1 else None


class RunFailed(RuntimeError):
    """This measurement failed; the message says how (the others go on)."""


# -- running servers -------------------------------------------------------------------------

def launch(scenario: Scenario, server: Server, port: int, log: Path,
           wrapper: Sequence[str] = ()) -> procs.Launch:
    argv = [*wrapper, *server.command(suite.template_fields(scenario.app, str(port)))]
    env = procs.server_env(suite.APPS, {**dict(scenario.env), **dict(server.env)})
    return procs.Launch(argv=argv, env=env, cwd=suite.APPS, log=log, cpu=SERVER_CPU)


def valgrind_argv(out_dir: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--trace-children=yes",
            f"--callgrind-out-file={out_dir}/callgrind.out.%p",
            f"--log-file={out_dir}/valgrind.%p.log"]


def spec(scenario: Scenario, port: int, seconds: float) -> loadgen.LoadSpec:
    return loadgen.LoadSpec(url=f"http://{suite.HOST}:{port}{scenario.path}",
                            duration=max(1, round(seconds)), connections=CONNECTIONS,
                            method=scenario.method, body=scenario.body,
                            headers=scenario.headers, cpu=CLIENT_CPU)


def measure_rate(scenario: Scenario, server: Server, seconds: int, raw: Path,
                 wrk: loadgen.LoadGenerator, quiet_timeout: float = QUIET_TIMEOUT) -> Rate:
    environment.wait_for_quiet(QUIET_SHARE, quiet_timeout)
    port = procs.free_port(suite.HOST)
    with procs.running(launch(scenario, server, port, raw / "rate.server.log"),
                       suite.HOST, port) as srv:
        procs.check_response(srv, suite.probe(scenario))
        suite.run_load(wrk, srv, spec(scenario, port, 1))
        # Errors (wrk's 2 s timeouts on a slow app and a busy machine) are reported beside
        # the rate, as the suite does; they do not cost the instructions measurement.
        result = suite.run_load(wrk, srv, spec(scenario, port, seconds))
    (raw / "rate.wrk.txt").write_text(result.output)
    return Rate(result.requests_per_sec, result.p99_ms, result.errors)


def settle(srv: procs.Running) -> None:
    """Wait until the tree uses under IDLE_SHARE of a core (the last answers written, the
    closed connections handled), at most SETTLE_LIMIT seconds."""
    deadline = time.monotonic() + SETTLE_LIMIT
    before = procs.tree_cpu_seconds(srv.proc.pid)
    while time.monotonic() < deadline:
        time.sleep(SETTLE_INTERVAL)
        now = procs.tree_cpu_seconds(srv.proc.pid)
        if now - before < IDLE_SHARE * SETTLE_INTERVAL:
            return
        before = now
    raise RunFailed(f"the server tree did not go idle within {SETTLE_LIMIT:.0f} s")


def dump_all(pids: Sequence[int], label: str, out_dir: Path) -> list[Path]:
    """``callgrind_control --dump=label`` for each pid (never without pids: that would reach
    every callgrind run on the machine); the files it wrote."""
    before = set(cgprofile.dumps(out_dir))
    done = subprocess.run(["callgrind_control", f"--dump={label}", *map(str, pids)],
                          capture_output=True, text=True, timeout=120)
    answered = done.stdout.count("OK.")
    if done.returncode != 0 or answered != len(pids):
        raise RunFailed(f"callgrind_control --dump answered for {answered} of {len(pids)} "
                        f"processes: {(done.stdout + done.stderr).strip()[-500:]}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = sorted(set(cgprofile.dumps(out_dir)) - before)
        if len(new) >= len(pids):
            return new
        time.sleep(0.1)
    raise RunFailed(f"callgrind wrote {len(new)} dumps for {len(pids)} processes")


def tree_pids(srv: procs.Running) -> list[int]:
    return sorted(int(p.pid) for p in procs.tree(srv.proc.pid))


class Driver:
    """cgload.py on the client core: its connections open when the block starts, closed when
    it ends; ``go`` sends exactly N requests and waits for the answers."""

    def __init__(self, scenario: Scenario, port: int) -> None:
        request = {"method": scenario.method, "path": scenario.path,
                   "headers": list(scenario.headers), "body_hex": scenario.body.hex(),
                   "status": scenario.expect_status}
        self.argv = ["taskset", "-c", str(CLIENT_CPU), sys.executable,
                     str(suite.BENCH_DIR / "cgload.py"), suite.HOST, str(port),
                     json.dumps(request), "--connections", str(CONNECTIONS)]
        self.lines: queue.Queue[str] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Driver:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        self._expect("ready", DRIVER_READY_TIMEOUT)
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")  # end of output: the driver exited

    def _expect(self, word: str, timeout: float) -> list[str]:
        try:
            line = self.lines.get(timeout=timeout).split()
        except queue.Empty:
            raise RunFailed(f"cgload.py: no {word!r} within {timeout:.0f} s") from None
        if not line or line[0] != word:
            raise RunFailed(f"cgload.py: {' '.join(line) or 'exited'} instead of {word!r}")
        return line

    def go(self, requests: int, timeout: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"go {requests}\n")
        self.proc.stdin.flush()
        _, answers, errors = self._expect("done", timeout)
        if int(answers) != requests or int(errors):
            raise RunFailed(f"cgload.py: {answers} answers to {requests} requests, "
                            f"{errors} errors (a wrong status or a closed connection)")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.write("close\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=DRIVER_CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure_window(scenario: Scenario, server: Server, args: argparse.Namespace, raw: Path,
                   wrk: loadgen.LoadGenerator) -> Window:
    out_dir = raw / "callgrind"
    out_dir.mkdir(parents=True, exist_ok=True)
    port = procs.free_port(suite.HOST)
    where = launch(scenario, server, port, raw / "callgrind.server.log", valgrind_argv(out_dir))
    with procs.running(where, suite.HOST, port, ready_timeout=READY_TIMEOUT,
                       stop_timeout=STOP_TIMEOUT) as srv:
        procs.check_response(srv, suite.probe(scenario), timeout=PROBE_TIMEOUT)
        # Errors allowed here: under valgrind a cold server can miss wrk's 2 s timeout.
        warm = suite.run_load(wrk, srv, spec(scenario, port, args.warmup))
        rate = max(1.0, warm.requests_per_sec)
        requests = max(MIN_REQUESTS, round(rate * args.seconds))
        settle(srv)
        pids = tree_pids(srv)
        # What the tree does on its own per second (master loop, clock ticks), measured in
        # an idle stretch before the window and one after it: under valgrind a window
        # lasts ~50x longer than the same requests would natively, so that share is taken
        # out of the count rather than hidden in it.
        idle = [idle_stretch(pids, args.idle, out_dir)]
        # Connections are opened (and accepted: the tree settles) outside the window and
        # stay open until it closes, each idle for a second or two at most, well within
        # the servers' keep-alive timeouts of 5 s.
        with Driver(scenario, port) as driver:
            settle(srv)
            dump_all(pids, OPEN, out_dir)
            started = time.monotonic()
            driver.go(requests, DRIVER_SLACK * requests / rate + DRIVER_GRACE)
            settle(srv)
            if tree_pids(srv) != pids:
                raise RunFailed(f"the process tree changed during the window: {pids} -> "
                                f"{tree_pids(srv)}")
            files = dump_all(pids, WINDOW, out_dir)
            ended = time.monotonic()
        settle(srv)
        idle.append(idle_stretch(pids, args.idle, out_dir))
    profiles = [cgprofile.read(path) for path in files]
    return Window(
        requests=requests, instructions=sum(p.total for p in profiles),
        seconds=ended - started, valgrind_rps=requests / (ended - started),
        idle_per_second=sum(ir for ir, _ in idle) / sum(secs for _, secs in idle),
        processes=[Process(p.pid, p.command, p.total) for p in profiles],
        groups=dict(cgprofile.grouped(profiles)),
        top=cgprofile.top_functions(profiles, args.top))


def idle_stretch(pids: Sequence[int], seconds: float, out_dir: Path) -> tuple[int, float]:
    """Ir of the whole tree over *seconds* without load (between two dumps), and the time
    actually elapsed between them."""
    dump_all(pids, IDLE, out_dir)
    start = time.monotonic()
    time.sleep(seconds)
    files = dump_all(pids, IDLE_END, out_dir)
    return sum(cgprofile.read(path).total for path in files), time.monotonic() - start


def measure(scenario: Scenario, server: Server, args: argparse.Namespace, raw: Path,
            result: Result, wrk: loadgen.LoadGenerator) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    try:
        if args.rate_seconds:
            result.rates.append(measure_rate(scenario, server, args.rate_seconds, raw, wrk,
                                             args.quiet_timeout))
        window = measure_window(scenario, server, args, raw, wrk)
    except (RunFailed, procs.ServerError, loadgen.LoadError, cgprofile.ProfileError,
            subprocess.SubprocessError) as exc:
        result.failures.append(str(exc))
        print(f"  {scenario.name:<15} {server.name:<11} FAILED: {str(exc).splitlines()[0]}",
              flush=True)
        return
    result.windows.append(window)
    rate = f"{result.rates[-1].rps:>9,.0f} req/s" if result.rates else ""
    net = window.per_request - window.idle_per_request
    print(f"  {scenario.name:<15} {server.name:<11} {net:>11,.0f} instr/request net of idle "
          f"({window.per_request:,.0f} raw; {window.requests} requests, "
          f"{window.valgrind_rps:.0f} req/s under valgrind)  {rate}", flush=True)


# -- --idle-only: what each idle tree executes on its own ------------------------------------

@dataclasses.dataclass(slots=True)
class IdleResult:
    """Ir per second of each process of an idle tree (master first, then its workers)."""

    scenario: str
    server: str
    seconds: float = 0.0
    processes: list[Process] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)

    def per_second(self) -> float:
        return sum(p.instructions for p in self.processes) / self.seconds


def measure_idle(scenario: Scenario, server: Server, args: argparse.Namespace, raw: Path,
                 result: IdleResult) -> None:
    """The tree under callgrind answers one request, goes idle, then ``--idle`` seconds
    between two dumps of every process: its Ir per second, process by process."""
    out_dir = raw / "callgrind"
    out_dir.mkdir(parents=True, exist_ok=True)
    port = procs.free_port(suite.HOST)
    where = launch(scenario, server, port, raw / "callgrind.server.log", valgrind_argv(out_dir))
    # A runtime directory of its own: octo's master answers every `octo status` run on the
    # machine that finds its control socket in the shared one, and each answer would count.
    private = tempfile.mkdtemp(prefix="octo-idle-")
    where = dataclasses.replace(where, env={**where.env, "XDG_RUNTIME_DIR": private})
    try:
        with procs.running(where, suite.HOST, port, ready_timeout=READY_TIMEOUT,
                           stop_timeout=STOP_TIMEOUT) as srv:
            procs.check_response(srv, suite.probe(scenario), timeout=PROBE_TIMEOUT)
            settle(srv)
            pids = tree_pids(srv)
            dump_all(pids, IDLE, out_dir)
            start = time.monotonic()
            time.sleep(args.idle)
            files = dump_all(pids, IDLE_END, out_dir)
            result.seconds = time.monotonic() - start
    except (RunFailed, procs.ServerError, cgprofile.ProfileError,
            subprocess.SubprocessError) as exc:
        result.failures.append(str(exc))
        print(f"  {scenario.name:<15} {server.name:<11} FAILED: {str(exc).splitlines()[0]}",
              flush=True)
        return
    finally:
        shutil.rmtree(private, ignore_errors=True)
    profiles = sorted((cgprofile.read(path) for path in files), key=lambda p: p.pid)
    result.processes = [Process(p.pid, p.command, p.total) for p in profiles]
    split = ", ".join(f"pid {p.pid} {p.instructions / result.seconds:,.0f}"
                      for p in result.processes)
    print(f"  {scenario.name:<15} {server.name:<11} {result.per_second():>11,.0f} Ir/s idle "
          f"({split}; {result.seconds:.1f} s)", flush=True)


def idle_table(results: Sequence[IdleResult]) -> tuple[list[str], list[list[str]]]:
    """Per server: the tree's idle Ir/s, then each process's (the root, i.e. octo's master,
    first)."""
    most = max((len(r.processes) for r in results), default=1)
    headers = ["scenario", "server", "tree Ir/s",
               *[f"process {i + 1} Ir/s" for i in range(most)], "seconds"]
    rows = []
    for r in results:
        if not r.processes:
            rows.append([r.scenario, r.server, "FAILED", *[""] * most, ""])
            continue
        cells = [f"{p.instructions / r.seconds:,.0f}" for p in r.processes]
        rows.append([r.scenario, r.server, f"{r.per_second():,.0f}",
                     *cells, *[""] * (most - len(cells)), f"{r.seconds:.1f}"])
    return headers, rows


def _plan(args: argparse.Namespace, kind: str) -> tuple[datetime.datetime, Path,
                                                   list[tuple[Scenario, Server]]]:
    """When the run started, its raw output directory and its (scenario, server) pairs."""
    scenarios = pick("scenario", args.scenarios, SCENARIOS)
    servers = pick("server", args.servers, SERVERS)
    started = datetime.datetime.now().astimezone()
    raw_root = args.raw_dir or RESULTS / "raw" / f"{started:%Y-%m-%dT%H%M%S}-{kind}"
    return started, raw_root, [(sc, sv) for sc in scenarios for sv in servers if sv.serves(sc)]


def main_idle(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``--idle-only``: per scenario and server, the idle tree's Ir/s; 0 if all measured."""
    started, raw_root, plan = _plan(args, "idle")
    results = [IdleResult(sc.name, sv.name) for sc, sv in plan]
    print(f"octo {environment.versions().get('octo')} ({environment.git_revision(REPO)}), "
          f"{environment.python_version()}; idle Ir/s over {args.idle:g} s, x {args.repeat}; "
          f"raw output in {suite.display_path(raw_root)}", flush=True)
    passes = []
    for number in range(args.repeat):
        print(f"run {number + 1}/{args.repeat}", flush=True)
        done = [IdleResult(sc.name, sv.name) for sc, sv in plan]
        for (scenario, server), result in zip(plan, done, strict=True):
            raw = raw_root / f"run{number + 1}-{scenario.name}-{server.name}"
            measure_idle(scenario, server, args, raw, result)
        passes.append(done)
    results = [r for done in passes for r in done]
    headers, rows = idle_table(results)
    print("\n" + report.text_table(headers, rows))
    if args.json is not None:
        suite.write(args.json, json.dumps(
            {"command": ["benchmarks/callgrind.py", *argv],
             "results": [dataclasses.asdict(r) for r in results]}, indent=2))
    return EXIT_FAILED if any(r.failures for r in results) else 0


# -- the report ------------------------------------------------------------------------------

def relative(value: float | None, base: float | None) -> str:
    return "" if value is None or not base else f"{value / base:.2f}x"


def results_table(results: Sequence[Result], passes: int) -> tuple[list[str], list[list[str]]]:
    """Per scenario and server: req/s, then instructions per request net of idle (each run,
    their spread, the ratio to granian), then the raw count and the idle rate it includes."""
    headers = ["scenario", "server", "req/s", f"x {BASE}",
               *[f"instr/request run {i + 1}" for i in range(passes)], "spread",
               f"x {BASE}", "raw (with idle)", "idle Ir/s"]
    base = {r.scenario: r for r in results if r.server == BASE}
    rows = []
    for r in results:
        b = base.get(r.scenario)
        counts = [f"{count:,.0f}" for count in r.counts(net=True)]
        counts += ["FAILED"] * (passes - len(counts))
        idle = statistics.median(w.idle_per_second for w in r.windows) if r.windows else None
        errors = sum(rate.errors for rate in r.rates)
        rps = _num(r.rps()) + (f" ({errors} errors)" if errors else "")
        rows.append([r.scenario, r.server, rps,
                     relative(r.rps(), b.rps() if b else None), *counts,
                     _pct(r.spread(net=True)),
                     relative(r.instructions(net=True), b.instructions(net=True) if b else None),
                     _num(r.instructions()), _num(idle)])
    return headers, rows


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} %"


def breakdown_table(results: Sequence[Result], scenario: str,
                    ) -> tuple[list[str], list[list[str]]]:
    """Instructions per request by object group, one column per server (last pass)."""
    measured = [r for r in results if r.scenario == scenario and r.windows]
    headers = ["object", *(r.server for r in measured)]
    rows = []
    for group in cgprofile.GROUP_ORDER:
        cells = []
        for r in measured:
            w = r.windows[-1]
            cost = w.groups.get(group, 0)
            cells.append(f"{cost / w.requests:,.0f} ({100 * cost / w.instructions:.0f} %)"
                         if cost else "")
        if any(cells):
            rows.append([group, *cells])
    rows.append(["total", *(f"{r.windows[-1].per_request:,.0f}" for r in measured)])
    return headers, rows


def process_lines(r: Result) -> list[str]:
    w = r.windows[-1]
    return [f"pid {p.pid}: {p.instructions / w.requests:,.0f} instr/request — "
            f"`{shorten(p.command)}`" for p in w.processes]


def shorten(command: str) -> str:
    return command.replace(f"{suite.VENV_BIN}/", "").replace(f"{suite.APPS}/", "")


def meta_lines(args: argparse.Namespace, argv: Sequence[str], started: str) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in environment.versions().items())
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    venv = os.environ.get("BENCH_VENV")
    return [
        f"- started {started}; git {environment.git_revision(REPO)}"
        + (f", octo as committed at {args.octo_rev}" if args.octo_rev else ""),
        "- command: `" + (f"BENCH_VENV={venv} " if venv else "")
        + shlex.join(["python", "benchmarks/callgrind.py", *argv]) + "`",
        f"- {environment.cpu_model()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}; {environment.python_version()}; "
        f"{valgrind}",
        f"- {versions}",
        f"- instructions: `taskset -c {SERVER_CPU} {shlex.join(valgrind_argv(Path('RAW')))} "
        f"SERVER...`; {args.warmup:g} s of `wrk -t1 -c{CONNECTIONS}` to warm up; "
        f"{args.idle:g} s idle (for the idle Ir/s); window: `taskset -c {CLIENT_CPU} "
        f"cgload.py` sends exactly N requests over {CONNECTIONS} connections opened before "
        f"it (N = the warm-up rate x {args.seconds:g} s); Ir of every process of the tree "
        "between two `callgrind_control --dump`s, over N, less the idle Ir/s times the "
        "window's length (\"raw\" keeps it)",
        f"- req/s: one ordinary run, `taskset -c {CLIENT_CPU} wrk -t1 -c{CONNECTIONS} "
        f"-d{args.rate_seconds}s --latency` after 1 s of warm-up, server on core "
        f"{SERVER_CPU} (the suite's rounds are the throughput figure; this is for reading "
        "the counts beside)",
        f"- load average at the end {environment.load_average()}",
    ]


def console(results: Sequence[Result], passes: int) -> str:
    headers, rows = results_table(results, passes)
    parts = [report.text_table(headers, rows)]
    for scenario in dict.fromkeys(r.scenario for r in results):
        headers, rows = breakdown_table(results, scenario)
        if len(headers) > 1:
            parts.append(f"{scenario}: instructions per request by object (last run, idle "
                         "included)\n"
                         + report.text_table(headers, rows))
    return "\n\n".join(parts)


def markdown(results: Sequence[Result], args: argparse.Namespace, meta: list[str]) -> str:
    out = ["# Instructions per request (callgrind)", "", *meta, ""]
    headers, rows = results_table(results, args.repeat)
    out += [report.markdown_table(headers, rows, text_columns=2), ""]
    for scenario in dict.fromkeys(r.scenario for r in results):
        headers, rows = breakdown_table(results, scenario)
        if len(headers) > 1:
            out += [f"## {scenario}: instructions per request by object (last run, idle "
                    "included)", "",
                    report.markdown_table(headers, rows), ""]
    out += ["## Processes and top functions (self cost, last run)", ""]
    for r in results:
        if not r.windows:
            continue
        w = r.windows[-1]
        out += [f"### {r.scenario} / {r.server}", "", *(f"- {line}" for line in
                                                        process_lines(r)), ""]
        if w.top:
            rows = [[fn[:90], obj, f"{cost / w.requests:,.0f}",
                     f"{100 * cost / w.instructions:.1f} %"] for obj, fn, cost in w.top]
            out += [report.markdown_table(["function", "object", "instr/request", "share"],
                                          rows, text_columns=2), ""]
    failures = [(r, f) for r in results for f in r.failures]
    if failures:
        out += ["## Failures", ""]
        out += [f"- {r.scenario} / {r.server}: {f.splitlines()[0]}" for r, f in failures]
    return "\n".join(out) + "\n"


def to_json(results: Sequence[Result], meta: list[str]) -> str:
    return json.dumps({"meta": meta, "results": [dataclasses.asdict(r) for r in results]},
                      indent=2)


def report_path(override: Path | None) -> Path:
    if override is not None:
        return override
    stem = f"{datetime.date.today().isoformat()}-instructions"
    path, number = RESULTS / f"{stem}.md", 1
    while path.exists():
        number += 1
        path = RESULTS / f"{stem}-{number}.md"
    return path


# -- main --------------------------------------------------------------------------------------

def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Measure as *args* say (*argv* is only recorded): 0 when every measurement succeeded,
    1 otherwise."""
    started, raw_root, plan = _plan(args, "instructions")
    results = [Result(sc.name, sv.name) for sc, sv in plan]
    print(f"octo {environment.versions().get('octo')} ({environment.git_revision(REPO)}), "
          f"{environment.python_version()}; {len(plan)} measurements x {args.repeat}; "
          f"raw output in {suite.display_path(raw_root)}", flush=True)
    with loadgen.Wrk() as wrk:
        for number in range(args.repeat):
            print(f"run {number + 1}/{args.repeat}", flush=True)
            for (scenario, server), result in zip(plan, results, strict=True):
                raw = raw_root / f"run{number + 1}-{scenario.name}-{server.name}"
                measure(scenario, server, args, raw, result, wrk)
    meta = meta_lines(args, argv, f"{started:%Y-%m-%d %H:%M:%S %Z}")
    print("\n" + console(results, args.repeat))
    suite.write(report_path(args.output), markdown(results, args, meta))
    if args.json is not None:
        suite.write(args.json, to_json(results, meta))
    return EXIT_FAILED if any(r.failures for r in results) else 0
