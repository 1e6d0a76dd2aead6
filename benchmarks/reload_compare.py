"""Failed requests during rolling reloads under load: octo, uvicorn and gunicorn side by side.

    python benchmarks/reload_compare.py                  # 3 rounds, every server
    python benchmarks/reload_compare.py --rounds 1 --servers octo

Builds (or reuses) benchmarks/.venv-reload with uvicorn[standard], gunicorn, uvicorn-worker,
httpx and an editable octo from this work tree, then re-executes itself inside it.

Per run: a fresh server (2 workers) on a free loopback port serving benchmarks/apps/reload_app.py
(version string after a 5 ms await); once it answers and has both workers, a separate load
process runs 16 threads, each with one keep-alive http.client connection, requesting `/` for 8 s.
The master gets SIGHUP 2 s and 5 s into the load. Every response or error is counted by kind;
worker pids (psutil children of the master) are sampled at each SIGHUP and after the load to
tell whether new workers replaced the old ones. Then the server gets SIGTERM (SIGKILL for
whatever is left after 10 s). Servers alternate order round by round.

The report is printed and written to benchmarks/results/reload-<date>.md; server logs go to
benchmarks/results/raw/reload-<time>/ (not committed).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import datetime
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
APPS_DIR = BENCH_DIR / "apps"
RESULTS_DIR = BENCH_DIR / "results"
VENV = BENCH_DIR / ".venv-reload"
VENV_PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".reload-compare-installed"
REQUIREMENTS = ("uvicorn[standard]", "gunicorn", "uvicorn-worker", "httpx")
VERSION_PACKAGES = ("octo", "uvicorn", "gunicorn", "uvicorn-worker", "uvloop", "httptools",
                    "psutil")

HOST = "127.0.0.1"
APP = "reload_app:app"
WORKERS = 2
KINDS = ("ok", "status", "refused", "reset", "timeout", "other")
FAILURE_KINDS = KINDS[1:]
KIND_TITLES = {"status": "non-200", "refused": "refused", "reset": "reset/disconnected",
               "timeout": "timeout", "other": "other"}
REQUEST_TIMEOUT = 5.0  # seconds per request before it counts as a timeout
REFUSED_BACKOFF = 0.01  # seconds a thread waits after a refused connection
LOAD_LEAD = 1.5  # seconds between starting the load process and its agreed start time
READY_TIMEOUT = 30.0
SETTLE = 1.0  # seconds after both workers are up before the load starts
REPLACE_TIMEOUT = 20.0  # seconds after the load for the last reload to finish
STOP_TIMEOUT = 10.0  # seconds after SIGTERM before SIGKILL
MAX_EVENTS = 200  # failure events kept per run
PR_SET_CHILD_SUBREAPER = 36  # prctl option (linux/prctl.h)
_SKEWING_PREFIXES = ("OCTO_", "UVICORN_", "GUNICORN_")
_SKEWING_NAMES = frozenset({"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "PYTHONDEVMODE",
                            "PYTHONASYNCIODEBUG", "PYTHONTRACEMALLOC", "PYTHONMALLOC"})


# -- bootstrap -----------------------------------------------------------------------------------


def ensure_venv(argv: Sequence[str]) -> None:
    """Build or reuse benchmarks/.venv-reload and re-execute in it; returns only inside it."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    wanted = "\n".join([*REQUIREMENTS, f"-e {ROOT}"])
    if not STAMP.exists() or STAMP.read_text() != wanted:
        print(f"setting up {VENV.relative_to(ROOT)} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *REQUIREMENTS, "-e", str(ROOT)], check=True)
        STAMP.write_text(wanted)
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), str(Path(__file__).resolve()), *argv])


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def gunicorn_worker_class() -> str:
    """uvicorn.workers is deprecated in favour of the uvicorn-worker package: prefer that."""
    if importlib.util.find_spec("uvicorn_worker") is None:
        return "uvicorn.workers.UvicornWorker"
    return "uvicorn_worker.UvicornWorker"


# -- servers -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSpec:
    name: str
    program: str  # a script in the venv's bin/
    args: tuple[str, ...]  # {host}, {port}, {control} and {worker_class} are filled in

    def command(self, port: int, control: Path) -> list[str]:
        fields = {"host": HOST, "port": str(port), "control": str(control),
                  "worker_class": gunicorn_worker_class()}
        program = str(Path(sys.executable).parent / self.program)
        return [program, *(arg.format(**fields) for arg in self.args)]

    def shown(self) -> str:
        """The command as the report shows it."""
        fields = {"host": HOST, "port": "PORT", "control": "RAW/octo-rN.ctl",
                  "worker_class": gunicorn_worker_class()}
        return shlex.join([self.program, *(arg.format(**fields) for arg in self.args)])


SERVERS = (
    ServerSpec("octo", "octo", ("serve", APP, "--workers", str(WORKERS), "--no-access-log",
                                "--host", "{host}", "--port", "{port}", "--control",
                                "{control}")),
    ServerSpec("uvicorn", "uvicorn", (APP, "--workers", str(WORKERS), "--no-access-log",
                                      "--http", "httptools", "--loop", "uvloop", "--host",
                                      "{host}", "--port", "{port}")),
    ServerSpec("gunicorn", "gunicorn", (APP, "-k", "{worker_class}", "-w", str(WORKERS), "-b",
                                        "{host}:{port}")),
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_env(version_file: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(_SKEWING_PREFIXES) and key not in _SKEWING_NAMES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS_DIR), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["RELOAD_APP_VERSION_FILE"] = str(version_file)
    return env


def start_server(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=APPS_DIR, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def answers(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2.0)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def wait_answering(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited during startup with status {proc.returncode}")
        if answers(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"not answering after {READY_TIMEOUT:.0f} s")


def worker_pids(master: int) -> frozenset[int]:
    """Direct children of the master, minus multiprocessing's helper processes."""
    import psutil

    pids = set()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(master).children():
            with contextlib.suppress(psutil.Error):
                if not any("resource_tracker" in arg for arg in child.cmdline()):
                    pids.add(child.pid)
    return frozenset(pids)


def wait_workers(master: int, exclude: frozenset[int], timeout: float) -> frozenset[int]:
    """Wait until the master has exactly WORKERS children, none of them in *exclude*."""
    deadline = time.monotonic() + timeout
    pids = worker_pids(master)
    while time.monotonic() < deadline:
        if len(pids) == WORKERS and not pids & exclude:
            break
        time.sleep(0.1)
        pids = worker_pids(master)
    return pids


def tree_cpu_seconds(master: int) -> float:
    """CPU seconds of the master's tree, reaped children (retired workers) included."""
    import psutil

    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(master)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total


def track(pids: frozenset[int], known: dict[int, Any]) -> None:
    """Remember psutil handles (they notice pid reuse) of every process seen, for cleanup."""
    import psutil

    for pid in pids:
        if pid not in known:
            with contextlib.suppress(psutil.Error):
                known[pid] = psutil.Process(pid)


def stop_server(proc: subprocess.Popen[bytes], known: dict[int, Any]) -> str:
    """SIGTERM the master, SIGKILL what is left after STOP_TIMEOUT; says how it went."""
    import psutil

    track(frozenset(p.pid for p in _descendants(proc.pid)), known)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    killed = 0
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)
        killed += 1
    _, alive = psutil.wait_procs(list(known.values()), timeout=1.0)
    alive = [leftover for leftover in alive if not is_zombie(leftover)]
    for leftover in alive:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT)
    killed += len(alive)
    status = f"exit {proc.returncode}"
    return f"{status}, SIGKILL to {killed} process(es)" if killed else status


def is_zombie(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True  # already gone


def become_subreaper() -> None:
    """Orphans of a server tree (a worker its master left behind, multiprocessing's
    resource tracker) are re-parented to this process, so they can be found and reaped."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def sweep_orphans() -> int:
    """Kill and reap whatever of ours is still running after every server stopped."""
    import psutil

    left = [proc for proc in psutil.Process().children(recursive=True) if not is_zombie(proc)]
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(psutil.Process().children(recursive=True), timeout=STOP_TIMEOUT)
    return len(left)


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


# -- load (runs in its own process: `reload_compare.py --load-port PORT ...`) ---------------------


@dataclasses.dataclass(slots=True)
class Tally:
    """One thread's counts; merged into the load's JSON result."""

    kinds: Counter[str] = dataclasses.field(default_factory=Counter)
    reused: Counter[str] = dataclasses.field(default_factory=Counter)  # failures on reused conns
    versions: Counter[str] = dataclasses.field(default_factory=Counter)
    statuses: Counter[str] = dataclasses.field(default_factory=Counter)
    events: list[tuple[str, float, bool, str]] = dataclasses.field(default_factory=list)

    def add(self, kind: str, detail: str, at: float, reused: bool) -> None:
        self.kinds[kind] += 1
        if kind == "ok":
            self.versions[detail] += 1
            return
        if kind == "status":
            self.statuses[detail] += 1
        if reused:
            self.reused[kind] += 1
        if len(self.events) < MAX_EVENTS:
            self.events.append((kind, round(at, 3), reused, detail))


def one_request(conn: http.client.HTTPConnection) -> tuple[str, str]:
    """(kind, detail): detail is the body for 'ok', the status or the error otherwise."""
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
    except ConnectionRefusedError as exc:
        return "refused", repr(exc)
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
        return "reset", repr(exc)  # http.client.RemoteDisconnected is a ConnectionResetError
    except TimeoutError as exc:
        return "timeout", repr(exc)
    except (OSError, http.client.HTTPException) as exc:
        return "other", repr(exc)
    if response.status != 200:
        return "status", str(response.status)
    return "ok", body.decode(errors="replace")


def hammer(port: int, start: float, deadline: float, tally: Tally) -> None:
    """Request `/` over one keep-alive connection until *deadline*; reconnect after errors."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        while (now := time.monotonic()) < deadline:
            reused = conn.sock is not None
            kind, detail = one_request(conn)
            tally.add(kind, detail, now - start, reused)
            if kind not in ("ok", "status"):
                conn.close()
            if kind == "refused":
                time.sleep(REFUSED_BACKOFF)
    finally:
        conn.close()


def merge(tallies: Sequence[Tally]) -> dict[str, Any]:
    total = Tally()
    for tally in tallies:
        total.kinds.update(tally.kinds)
        total.reused.update(tally.reused)
        total.versions.update(tally.versions)
        total.statuses.update(tally.statuses)
        total.events.extend(tally.events)
    total.events.sort(key=lambda event: event[1])
    return {"kinds": dict(total.kinds), "reused": dict(total.reused),
            "versions": dict(total.versions), "statuses": dict(total.statuses),
            "events": total.events[:MAX_EVENTS]}


def load_main(port: int, start_at: float, duration: float, threads: int) -> int:
    """Start at monotonic time *start_at* (or now, if later), print the result as JSON."""
    time.sleep(max(0.0, start_at - time.monotonic()))
    start = time.monotonic()
    deadline = start + duration
    tallies = [Tally() for _ in range(threads)]
    pool = [threading.Thread(target=hammer, args=(port, start, deadline, tally), daemon=True)
            for tally in tallies]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(max(0.0, deadline - time.monotonic()) + REQUEST_TIMEOUT + 2.0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = merge(tallies)
    result.update(start=start, end=time.monotonic(), cpu=usage.ru_utime + usage.ru_stime,
                  unfinished=sum(thread.is_alive() for thread in pool))
    print(json.dumps(result), flush=True)
    return 0


def start_load(port: int, start_at: float, args: argparse.Namespace) -> subprocess.Popen[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--load-port", str(port),
            "--start-at", repr(start_at), "--duration", str(args.duration),
            "--threads", str(args.threads)]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)


def finish_load(load: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, _ = load.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        load.kill()
        load.communicate()
        raise RuntimeError("the load process overran its time and was killed") from None
    if load.returncode != 0 or not out.strip():
        raise RuntimeError(f"the load process failed (exit {load.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -- one run -------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Run:
    server: str
    round: int
    log: Path
    load: dict[str, Any] = dataclasses.field(default_factory=dict)
    hups: list[float] = dataclasses.field(default_factory=list)  # seconds into the load
    pids: list[frozenset[int]] = dataclasses.field(default_factory=list)  # at HUP1, HUP2, end
    other_cpu: float | None = None  # % of one core used by other processes during the load
    load_avg: str = ""
    stop: str = ""
    error: str | None = None

    def count(self, kind: str) -> int:
        return int(self.load.get("kinds", {}).get(kind, 0))

    @property
    def requests(self) -> int:
        return sum(self.count(kind) for kind in KINDS)

    @property
    def failed(self) -> int:
        return sum(self.count(kind) for kind in FAILURE_KINDS)


def busy_cpu_seconds() -> float:
    """User + system CPU seconds of the whole machine since boot (all cores). Interrupt time is
    left out: the kernel books it to no process, so the load's own loopback traffic would
    otherwise count as someone else's."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system = (int(v) for v in fields[:3])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass(frozen=True, slots=True)
class CpuWindow:
    """CPU the machine spent during a window, less what the server tree, the load process and
    this process spent: the noise of the shared machine."""

    wall: float
    busy: float
    ours: float

    @classmethod
    def begin(cls, master: int) -> CpuWindow:
        return cls(time.monotonic(), busy_cpu_seconds(),
                   tree_cpu_seconds(master) + own_cpu_seconds())

    def other_percent(self, master: int, load_cpu: float) -> float:
        """% of one core used by other processes since begin()."""
        busy = busy_cpu_seconds() - self.busy
        ours = tree_cpu_seconds(master) + own_cpu_seconds() - self.ours + load_cpu
        return max(0.0, 100.0 * (busy - ours) / (time.monotonic() - self.wall))


def run_once(spec: ServerSpec, round_no: int, args: argparse.Namespace, raw: Path) -> Run:
    tag = f"{spec.name}-r{round_no}"
    run = Run(spec.name, round_no, raw / f"{tag}.log", load_avg=load_average())
    version_file = raw / f"{tag}.version"
    version_file.write_text("gen0")
    port = free_port()
    argv = spec.command(port, raw / f"{tag}.ctl")
    known: dict[int, Any] = {}
    proc = start_server(argv, server_env(version_file), run.log)
    try:
        measure(run, proc, port, version_file, known, args)
    except RuntimeError as exc:
        run.error = str(exc)
    finally:
        run.stop = stop_server(proc, known)
    return run


def measure(run: Run, proc: subprocess.Popen[bytes], port: int, version_file: Path,
            known: dict[int, Any], args: argparse.Namespace) -> None:
    wait_answering(proc, port)
    track(wait_workers(proc.pid, frozenset(), READY_TIMEOUT), known)
    time.sleep(SETTLE)
    start_at = time.monotonic() + LOAD_LEAD
    window = CpuWindow.begin(proc.pid)
    load = start_load(port, start_at, args)
    try:
        reload_during_load(run, proc, start_at, version_file, known, args.hup_at)
    finally:
        run.load = finish_load(load, start_at + args.duration + REQUEST_TIMEOUT + 20.0
                               - time.monotonic())
    run.other_cpu = window.other_percent(proc.pid, float(run.load["cpu"]))
    run.hups = [round(t + start_at - float(run.load["start"]), 2) for t in run.hups]
    run.pids.append(wait_workers(proc.pid, frozenset().union(*run.pids), REPLACE_TIMEOUT))
    track(run.pids[-1], known)
    if proc.poll() is not None:
        raise RuntimeError(f"the master exited during the run (status {proc.returncode})")
    if run.load.get("unfinished"):
        raise RuntimeError(f"{run.load['unfinished']} load thread(s) did not finish in time")


def reload_during_load(run: Run, proc: subprocess.Popen[bytes], start_at: float,
                       version_file: Path, known: dict[int, Any], offsets: Sequence[float]
                       ) -> None:
    """At each offset into the load: sample the workers, bump the app version, SIGHUP."""
    for number, offset in enumerate(offsets, start=1):
        time.sleep(max(0.0, start_at + offset - time.monotonic()))
        run.pids.append(worker_pids(proc.pid))
        track(run.pids[-1], known)
        version_file.write_text(f"gen{number}")
        proc.send_signal(signal.SIGHUP)
        run.hups.append(time.monotonic() - start_at)


# -- report --------------------------------------------------------------------------------------


RUN_COLUMNS = ("round", "server", "requests", "ok", "failed",
               *(KIND_TITLES[kind] for kind in FAILURE_KINDS), "failed on reused conn",
               "served by app version", "old workers gone (HUP1, HUP2)", "SIGHUP at (s)",
               "other CPU %", "load avg at start", "stop")


def replaced(run: Run) -> str:
    """Per SIGHUP: how many of the workers found at it were gone at the next sample."""
    if len(run.pids) < 2:
        return "?"
    parts = [f"{len(old - new)}/{len(old)}" for old, new in zip(run.pids, run.pids[1:],
                                                                 strict=False)]
    return ", ".join(parts)


def served_by(run: Run) -> str:
    versions = run.load.get("versions", {})
    return ", ".join(f"{name} {versions[name]}" for name in sorted(versions)) or "-"


def run_row(run: Run) -> str:
    if run.error is not None and not run.load:
        cells = [str(run.round), run.server, f"error: {run.error}"]
        return "| " + " | ".join(cells) + " |" + " |" * (len(RUN_COLUMNS) - len(cells))
    cells = [str(run.round), run.server, str(run.requests), str(run.count("ok")),
             f"**{run.failed}**" if run.failed else "0",
             *(str(run.count(kind)) for kind in FAILURE_KINDS),
             str(sum(run.load.get("reused", {}).values())), served_by(run), replaced(run),
             ", ".join(f"{t:.2f}" for t in run.hups),
             "-" if run.other_cpu is None else f"{run.other_cpu:.0f}", run.load_avg, run.stop]
    if run.error is not None:
        cells[-1] += f"; error: {run.error}"
    return "| " + " | ".join(cells) + " |"


def runs_table(runs: Sequence[Run]) -> list[str]:
    return ["| " + " | ".join(RUN_COLUMNS) + " |", "|" + "---|" * len(RUN_COLUMNS),
            *(run_row(run) for run in runs)]


def totals_table(runs: Sequence[Run], servers: Sequence[str]) -> list[str]:
    head = ["server", "runs", "requests", "ok", "failed",
            *(KIND_TITLES[kind] for kind in FAILURE_KINDS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in servers:
        mine = [run for run in runs if run.server == name]
        cells = [name, str(len(mine)), str(sum(r.requests for r in mine)),
                 str(sum(r.count("ok") for r in mine)), str(sum(r.failed for r in mine)),
                 *(str(sum(r.count(kind) for r in mine)) for kind in FAILURE_KINDS)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def failure_details(runs: Sequence[Run]) -> list[str]:
    lines = []
    for run in runs:
        events = run.load.get("events", [])
        if not events:
            continue
        groups: dict[tuple[str, str], list[float]] = {}
        for kind, at, reused, detail in events:
            key = (kind, f"{detail}{' on a reused connection' if reused else ''}")
            groups.setdefault(key, []).append(float(at))
        for (kind, what), times in groups.items():
            lines.append(f"- round {run.round} {run.server}: {len(times)} x {kind} at "
                         f"{min(times):.2f}-{max(times):.2f} s: {what}")
    return lines or ["- none"]


def worker_history(runs: Sequence[Run]) -> list[str]:
    """Worker pids at the first SIGHUP, at the second, and once the last reload finished."""
    lines = []
    for run in runs:
        samples = " -> ".join("{" + ", ".join(map(str, sorted(pids))) + "}" for pids in run.pids)
        lines.append(f"- round {run.round} {run.server}: {samples or 'not sampled'}")
    return lines


def render(runs: Sequence[Run], args: argparse.Namespace, facts: dict[str, str]) -> str:
    names = [spec.name for spec in SERVERS if spec.name in args.servers]
    hups = " and ".join(f"{t:g} s" for t in args.hup_at)
    lines = [
        f"# Rolling reload under load: {', '.join(names)} ({facts['date']})", "",
        f"- machine: {os.cpu_count()} cores, {facts['cpu']}, Python {platform.python_version()}"
        f", octo commit {facts['commit']}",
        f"- load average (1/5/15 min) before: {facts['load_before']}; "
        f"after: {facts['load_after']}",
        f"- load: {args.threads} threads x 1 keep-alive http.client connection, GET / for "
        f"{args.duration:g} s, {REQUEST_TIMEOUT:g} s request timeout, reconnect after any error;"
        f" SIGHUP to the master {hups} into the load",
        f"- app: benchmarks/apps/reload_app.py, {WORKERS} workers, 5 ms asyncio.sleep per "
        "request; the body is the app version read at import (gen0, then gen1/gen2 written "
        "just before each SIGHUP), so 'served by' shows which code answered",
        "- 'old workers gone': of the workers found at each SIGHUP, how many were gone at the "
        "next sample (the next SIGHUP, then up to 20 s after the load)",
        "- 'other CPU %': CPU used during the load by processes other than the server tree and "
        "the load process, in % of one core (user+system time from /proc/stat: noise from the "
        "shared machine)",
        f"- processes left running after every server stopped (killed): {facts['orphans']}",
        "",
        "## Runs", "", *runs_table(runs), "",
        "## Totals", "", *totals_table(runs, names), "",
        "## Failures (time into the load, error)", "", *failure_details(runs), "",
        "## Worker pids (at SIGHUP 1 -> at SIGHUP 2 -> after the last reload)", "",
        *worker_history(runs), "",
        "## Versions", "", "| package | version |", "|---|---|",
        *(f"| {name} | {package_version(name)} |" for name in VERSION_PACKAGES), "",
        "## Commands", "",
        f"Run from `benchmarks/apps` with `PYTHONPATH=benchmarks/apps`, in "
        f"`{VENV.relative_to(ROOT)}`; reload = `kill -HUP <master pid>`.", "",
        *(f"- {spec.name}: `{spec.shown()}`" for spec in SERVERS if spec.name in names), "",
        f"Produced by `{facts['invocation']}`.", "",
    ]
    return "\n".join(lines)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "octo"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{out}{'+dirty' if dirty else ''}" if out else "unknown"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# -- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/reload_compare.py",
                                     description="Failed requests during rolling reloads.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", type=lambda s: s.split(","),
                        default=[spec.name for spec in SERVERS],
                        help="comma-separated, from: octo, uvicorn, gunicorn")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per run")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--hup-at", type=lambda s: [float(v) for v in s.split(",")],
                        default=[2.0, 5.0], help="seconds into the load (default 2,5)")
    parser.add_argument("--output", type=Path, help="default benchmarks/results/reload-<date>.md")
    parser.add_argument("--no-venv", action="store_true",
                        help="use the current interpreter as it is (needs every server)")
    parser.add_argument("--load-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.servers) - {spec.name for spec in SERVERS}
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    return args


def run_all(args: argparse.Namespace, raw: Path) -> list[Run]:
    specs = [spec for spec in SERVERS if spec.name in args.servers]
    runs = []
    for round_no in range(1, args.rounds + 1):
        for spec in specs if round_no % 2 else specs[::-1]:
            print(f"round {round_no}: {spec.name} ...", file=sys.stderr, flush=True)
            run = run_once(spec, round_no, args, raw)
            print(f"  {run.requests} requests, {run.failed} failed"
                  f"{'; error: ' + run.error if run.error else ''}", file=sys.stderr, flush=True)
            runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.load_port is not None:
        return load_main(args.load_port, args.start_at, args.duration, args.threads)
    if not args.no_venv:
        ensure_venv(argv)
    now = datetime.datetime.now()
    raw = RESULTS_DIR / "raw" / f"reload-{now:%Y-%m-%dT%H%M%S}"
    raw.mkdir(parents=True, exist_ok=True)
    facts = {"date": f"{now:%Y-%m-%d}", "cpu": cpu_model(), "commit": git_commit(),
             "load_before": load_average(),
             "invocation": shlex.join(["python", "benchmarks/reload_compare.py", *argv])}
    become_subreaper()
    runs = run_all(args, raw)
    facts["load_after"] = load_average()
    facts["orphans"] = str(sweep_orphans())
    report = render(runs, args, facts)
    output = args.output or RESULTS_DIR / f"reload-{facts['date']}.md"
    output.write_text(report)
    print(report)
    print(f"written to {output}; server logs in {raw}", file=sys.stderr)
    return 1 if any(run.error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
