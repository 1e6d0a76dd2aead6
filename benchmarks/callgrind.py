"""Instructions per request: every server's whole process tree under callgrind, beside its
req/s from an ordinary run made by the same invocation.

    .venv/bin/python benchmarks/callgrind.py                   # make bench-instructions
    .venv/bin/python benchmarks/callgrind.py --servers octo,granian --scenarios hello --repeat 2
    PYTHON=python3.12 BENCH_VENV=benchmarks/.venv312 .venv/bin/python benchmarks/callgrind.py

Wall-clock req/s on a shared machine moves with the machine and with whatever else runs on
it; the user-space instructions a server executes per request hardly do (0.1-2 % between
two runs, see benchmarks/README.md). Per scenario and server (the servers, apps and venv
are run.py's, from catalog.py and setup.sh):

1. the req/s run: the server pinned to core 0, one checked request, 1 s of warm-up, then
   ``taskset -c 1 wrk -t1 -c64 -d4s --latency`` (a single run: the suite's rounds are the
   throughput measurement, this is only the figure to read the instructions beside);
2. the callgrind run: ``valgrind --tool=callgrind --trace-children=yes`` around the same
   command, pinned to core 0 (about 50x slower); wrk warms it up for 3 s (which also gives
   its rate under valgrind); once the tree is idle, ``--idle`` seconds without load (and
   as many after the window) give what it executes on its own per second; then cgload.py
   on core 1 opens 64 connections, the tree accepts them and settles, the window opens,
   exactly N requests go out in a closed loop (N = the warm-up rate x ``--seconds``), the
   tree settles again, the window closes (the connections only after it). Each boundary
   is a ``callgrind_control --dump`` of every process of the tree (by pid: never every
   callgrind run on the machine). Instructions per request = the window's Ir / N.

Why not wrk and ``--zero`` for the window: wrk stops with a request in flight on each of
its 64 connections, which the server mostly still answers and wrk does not count (with
~170 Django requests in a window under valgrind, an error of up to a third); and
``callgrind_control --zero`` leaves behind costs the next dump still reports, while a dump
resets exactly (each window's self costs add up to its summary line; cgprofile checks it).
Connections are opened before the window, so it holds only requests and what the tree
does on its own meanwhile (octo's master loop, clock ticks). That part grows with the
window's length, i.e. with how slowly valgrind runs on a busy machine, not with the
requests: the figure reported is net of it (the window's length times the idle Ir/s);
the raw count is reported beside it.

The per-object breakdown (interpreter, octo's compiled modules, httptools, uvloop, granian,
...) comes from the same dumps; the raw files stay in benchmarks/results/raw/ for
``callgrind_annotate``.

This file is the command line and the bootstrap (setup.sh, then a re-exec inside
benchmarks/.venv, as run.py does); instructions.py measures and reports, cgload.py is the
window's load, cgprofile.py reads callgrind's files.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import run
from catalog import SCENARIOS, SERVERS, pick

SERVERS_DEFAULT = "octo,octo-pure,uvicorn,granian,asgi-floor"
SCENARIOS_DEFAULT = "hello,starlette_json,django"
TOOLS = ("valgrind", "callgrind_control", "wrk", "taskset")
EXIT_USAGE, EXIT_MISSING = 2, 3


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/callgrind.py",
        description="Instructions per request under callgrind, beside req/s.")
    parser.add_argument("--servers", default=SERVERS_DEFAULT,
                        help=f"comma-separated (default {SERVERS_DEFAULT})")
    parser.add_argument("--scenarios", default=SCENARIOS_DEFAULT,
                        help=f"comma-separated (default {SCENARIOS_DEFAULT})")
    parser.add_argument("--repeat", type=int, default=1,
                        help="passes over every scenario and server (default 1; 2 shows "
                             "how repeatable the counts are)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of the measured window under valgrind (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of wrk under valgrind before the window (default 3)")
    parser.add_argument("--idle", type=float, default=3.0,
                        help="seconds of idle server counted before and after each "
                             "window: what the tree spends per second on its own, taken "
                             "out of the count (default 3)")
    parser.add_argument("--idle-only", action="store_true",
                        help="measure only the idle tree: after one request, --idle "
                             "seconds of nothing; its Ir/s by process (use --idle 20 or "
                             "more: a server may wake only every few seconds)")
    parser.add_argument("--rate-seconds", type=int, default=4,
                        help="seconds of the ordinary wrk run for req/s (default 4; 0: none)")
    parser.add_argument("--quiet-timeout", type=float, default=30.0,
                        help="seconds to wait, before each req/s run, for other processes "
                             "to use under 10 %% of a core (default 30; the counts do not "
                             "need it)")
    parser.add_argument("--top", type=int, default=12,
                        help="functions per measurement listed in the report (default 12)")
    parser.add_argument("--output", type=Path,
                        help="Markdown report (default benchmarks/results/<date>-"
                             "instructions.md)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--raw-dir", type=Path,
                        help="callgrind files and server logs (default "
                             "benchmarks/results/raw/<time>-instructions/)")
    parser.add_argument("--octo-rev", help="measure octo as committed at this revision")
    parser.add_argument("--skip-setup", action="store_true",
                        help="no setup.sh and no re-exec: use the current interpreter as is")
    args = parser.parse_args(argv)
    # For run.bootstrap: wrk is required, except to measure the idle tree (no load).
    args.load_generator = "none" if args.idle_only else "wrk"
    return args



def usage_error(args: argparse.Namespace) -> str:
    """What is wrong with the command line, '' if nothing."""
    try:
        pick("scenario", args.scenarios, SCENARIOS)
        pick("server", args.servers, SERVERS)
    except ValueError as exc:
        return str(exc)
    if args.repeat < 1 or min(args.seconds, args.warmup, args.idle) <= 0 or \
            args.rate_seconds < 0:
        return "--repeat must be >= 1, --seconds, --warmup and --idle > 0, --rate-seconds >= 0"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if problem := usage_error(args):
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    needed = [t for t in TOOLS if t != "wrk"] if args.idle_only else TOOLS  # no load
    if missing := [tool for tool in needed if shutil.which(tool) is None]:
        print(f"error: not installed: {', '.join(missing)} (apt-get install -y valgrind wrk)",
              file=sys.stderr)
        return EXIT_MISSING
    run.bootstrap(args, argv, Path(__file__))
    import instructions  # only now: it needs psutil, which benchmarks/.venv provides

    if args.idle_only:
        return instructions.main_idle(args, argv)
    return instructions.main(args, argv)


if __name__ == "__main__":
    sys.exit(main())
