"""Kernel work per request, counted: syscalls by kind and wake-ups of each server's whole
process tree under a short wrk run.

    .venv/bin/python benchmarks/syscalls.py                       # hello and starlette_json
    .venv/bin/python benchmarks/syscalls.py --servers octo,granian --scenarios hello_close

Time in the kernel per request is hard to measure here: user and system time come from
the scheduler tick (250 Hz on the benchmark machine, no precise accounting), so a 4 s run
splits its time from about a thousand samples. Counting is exact. Per scenario and server
(servers, apps and venv are run.py's): the server pinned to core 0, one checked request,
1 s of wrk warm-up, then ``perf stat -e <tracepoints> -p <every pid of the tree>`` around
``taskset -c 1 wrk -t1 -c64 -d<seconds>s``; each count is divided by the requests wrk
completed (the up to 64 it leaves in flight, and the second perf counts before wrk
starts, are noise under 0.5 %). Tracepoint counting happens in the kernel, so the server
keeps its batching (requests per epoll_wait) much as without it, unlike under strace.

``wakeups`` counts sched_waking issued by the tree's threads: on loopback the write of a
response wakes the load generator when it sleeps, and that wake-up (an inter-processor
interrupt, which in a virtual machine exits to the host) is charged to the server's system
time. Needs perf with tracepoint access (root, or kernel.perf_event_paranoid <= -1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import run
from catalog import SCENARIOS, SERVERS, Scenario, Server, pick

SERVERS_DEFAULT = "octo,granian,uvicorn"
SCENARIOS_DEFAULT = "hello,starlette_json"
TOOLS = ("perf", "wrk", "taskset")
EXIT_USAGE, EXIT_MISSING = 2, 3
ATTACH = 1.0  # seconds perf gets to attach before the load starts

# Column name -> the tracepoints (or software events) it adds up.
COLUMNS: dict[str, tuple[str, ...]] = {
    "syscalls": ("raw_syscalls:sys_enter",),
    "read": ("syscalls:sys_enter_read", "syscalls:sys_enter_recvfrom",
             "syscalls:sys_enter_recvmsg", "syscalls:sys_enter_readv"),
    "write": ("syscalls:sys_enter_write", "syscalls:sys_enter_writev",
              "syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg"),
    "epoll_wait": ("syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait",
                   "syscalls:sys_enter_epoll_pwait2"),
    "epoll_ctl": ("syscalls:sys_enter_epoll_ctl", "syscalls:sys_enter_io_uring_enter"),
    "futex": ("syscalls:sys_enter_futex", "syscalls:sys_enter_sched_yield"),
    "wakeups": ("sched:sched_waking",),
    "ctx_switches": ("context-switches",),
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/syscalls.py",
        description="Syscalls and wake-ups per request of each server's process tree.")
    parser.add_argument("--servers", default=SERVERS_DEFAULT,
                        help=f"comma-separated (default {SERVERS_DEFAULT})")
    parser.add_argument("--scenarios", default=SCENARIOS_DEFAULT,
                        help=f"comma-separated (default {SCENARIOS_DEFAULT})")
    parser.add_argument("--seconds", type=int, default=3,
                        help="seconds of counted wrk load per measurement (default 3)")
    parser.add_argument("--json", type=Path, help="also write the counts as JSON here")
    parser.add_argument("--octo-rev", help="measure octo as committed at this revision")
    parser.add_argument("--skip-setup", action="store_true",
                        help="no setup.sh and no re-exec: use the current interpreter as is")
    args = parser.parse_args(argv)
    args.load_generator = "wrk"  # for run.bootstrap
    return args


def perf_events() -> list[str]:
    return [event for events in COLUMNS.values() for event in events]


def read_counts(path: Path) -> dict[str, float]:
    """perf stat -x, output: value,unit,event,...; '<not counted>' or '<not supported>'
    (a tracepoint this kernel lacks) counts as 0."""
    counts: dict[str, float] = {}
    for line in path.read_text().splitlines():
        fields = line.split(",")
        if len(fields) < 3 or line.startswith("#"):
            continue
        with contextlib.suppress(ValueError):
            counts[fields[2]] = float(fields[0])
    return counts


def tree_pids(pid: int) -> list[int]:
    import psutil  # benchmarks/.venv provides it

    return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]


def measure(scenario: Scenario, server: Server, seconds: int, raw: Path) -> dict[str, float]:
    """Counts per completed request of one server tree under *seconds* of wrk."""
    import instructions
    import loadgen
    import procs
    import suite

    port = procs.free_port(suite.HOST)
    out = raw / f"{scenario.name}-{server.name}.perf.csv"
    with loadgen.Wrk() as wrk, procs.running(
            instructions.launch(scenario, server, port, raw / f"{server.name}.log"),
            suite.HOST, port) as srv:
        procs.check_response(srv, suite.probe(scenario))
        suite.run_load(wrk, srv, instructions.spec(scenario, port, 1))
        pids = ",".join(map(str, tree_pids(srv.proc.pid)))
        perf = subprocess.Popen(["perf", "stat", "-x,", "-o", str(out),
                                 "-e", ",".join(perf_events()), "-p", pids])
        try:
            time.sleep(ATTACH)
            result = suite.run_load(wrk, srv, instructions.spec(scenario, port, seconds))
        finally:
            perf.send_signal(signal.SIGINT)
            perf.wait(30)
    counts = read_counts(out)
    per = {name: sum(counts.get(event, 0.0) for event in events) / max(1, result.requests)
           for name, events in COLUMNS.items()}
    per["requests"] = result.requests
    per["errors"] = result.errors
    return per


def table(rows: list[tuple[str, str, dict[str, float]]]) -> str:
    head = ["scenario", "server", "requests", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario, server, per in rows:
        cells = [scenario, server, f"{per['requests']:.0f}"]
        cells += [f"{per[name]:.3f}" for name in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        scenarios = pick("scenario", args.scenarios, SCENARIOS)
        servers = pick("server", args.servers, SERVERS)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        print(f"error: not installed: {', '.join(missing)}", file=sys.stderr)
        return EXIT_MISSING
    run.bootstrap(args, argv, Path(__file__))
    import procs

    rows: list[tuple[str, str, dict[str, float]]] = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="octo-syscalls-") as tmp:
        for scenario in scenarios:
            for server in servers:
                if not server.serves(scenario):
                    continue
                try:
                    per = measure(scenario, server, args.seconds, Path(tmp))
                except (procs.ServerError, RuntimeError, OSError) as exc:
                    print(f"{scenario.name} {server.name}: FAILED: {exc}", flush=True)
                    failed += 1
                    continue
                rows.append((scenario.name, server.name, per))
                print(f"{scenario.name} {server.name}: {per['syscalls']:.2f} syscalls/request",
                      flush=True)
    print(f"\nper completed request (wrk -t1 -c64 -d{args.seconds}s, server on core 0, "
          f"perf stat of the whole tree):\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(
            [{"scenario": sc, "server": sv, **per} for sc, sv, per in rows], indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
