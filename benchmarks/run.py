"""Side-by-side HTTP benchmark of octo against uvicorn, granian, hypercorn and a raw-protocol
ceiling.

    python benchmarks/run.py            # 3 rounds x 4 s, every scenario and server (make bench)
    python benchmarks/run.py --quick    # CI smoke: 1 round x 2 s, hello/json/post_echo,
                                        # octo and uvicorn; exit 0 when no run failed or erred
    python benchmarks/run.py --list     # scenarios and servers

Each run starts a fresh server pinned to one core (``taskset -c 0``) on a free loopback port,
checks one response, samples its idle RSS (serving worker and whole process tree), warms it
up, then loads it from the other core (``taskset -c 1 wrk -t1 -c64 -d4s --latency``, or
``octo bench`` where wrk is missing) and stops its whole process tree. Servers alternate
round by round; each round ends with octo bench checked against wrk on the same octo server.
The report goes to benchmarks/results/<date>.md with a chart <date>.png (and latest.png), the
raw load-generator output and server logs to benchmarks/results/raw/ (not committed).

This file is only the command line and the bootstrap: benchmarks/setup.sh builds
benchmarks/.venv (competitors plus a copy of octo), then this script re-executes itself in
that venv and hands over to suite.py. Scenarios and servers are the tables in catalog.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from catalog import SCENARIOS, SERVERS
from loadgen import AUTO, GENERATORS

BENCH_DIR = Path(__file__).resolve().parent
# BENCH_VENV: a second venv, e.g. built by another Python (PYTHON=python3.12 for setup.sh).
VENV_PYTHON = Path(os.environ.get("BENCH_VENV", BENCH_DIR / ".venv")) / "bin" / "python"
SETUP_DONE_ENV = "OCTO_BENCH_SETUP_DONE"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark octo against uvicorn, granian and hypercorn.")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke run: 1 round of 2 s (1 s warm-up), scenarios hello, "
                             "json, post_echo, servers octo and uvicorn, no octo bench vs wrk "
                             "check, unless overridden")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 4)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per run (default 1)")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    parser.add_argument("--servers", help="comma-separated server names (default: all)")
    parser.add_argument("--load-generator", choices=[AUTO, *sorted(GENERATORS)], default=AUTO,
                        help="auto (default): wrk if installed (setup.sh tries apt-get), "
                             "else octo bench")
    parser.add_argument("--calibrate", action=argparse.BooleanOptionalAction,
                        help="each round, also load one octo server with wrk and with octo "
                             "bench to compare them (default: on, off with --quick)")
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the server")
    parser.add_argument("--client-cpu", type=int, default=1, help="core for the load generator")
    parser.add_argument("--noisy-retries", type=int,
                        help="repeat a run this often while other processes used > 10%% of a "
                             "core during it (default 1; 0 with --quick)")
    parser.add_argument("--quiet-timeout", type=int,
                        help="seconds to wait at most, before each run, for other processes to "
                             "use < 10%% of a core (default 30; 5 with --quick)")
    parser.add_argument("--output", type=Path,
                        help="Markdown report (default benchmarks/results/<date>[-quick].md)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--raw-dir", type=Path,
                        help="raw load output and server logs (default "
                             "benchmarks/results/raw/<time>/)")
    parser.add_argument("--octo-rev",
                        help="measure octo as committed at this git revision (default: the "
                             "work tree as it is when the suite starts)")
    parser.add_argument("--skip-setup", action="store_true",
                        help="no setup.sh and no re-exec: use the current interpreter as is")
    parser.add_argument("--list", action="store_true", help="list scenarios and servers, exit")
    return parser.parse_args(argv)


def list_catalog() -> None:
    print("scenarios:")
    for scenario in SCENARIOS:
        print(f"  {scenario.name:<16} {scenario.description}")
    print("servers:")
    for server in SERVERS:
        only = f" (only {', '.join(sorted(server.only))})" if server.only else ""
        print(f"  {server.name:<16} {server.note}{only}")


def setup_flags(generator: str) -> list[str]:
    """wrk required (``wrk``), wanted but optional (``auto``), or not needed."""
    if generator == "wrk":
        return []
    return ["--wrk-optional"] if generator == AUTO else ["--no-wrk"]


def bootstrap(args: argparse.Namespace, argv: Sequence[str],
              script: Path = Path(__file__)) -> None:
    """Run setup.sh, then re-execute *script* inside benchmarks/.venv (or $BENCH_VENV);
    returns only once inside it. *args* needs skip_setup, load_generator and octo_rev."""
    if args.skip_setup or os.environ.get(SETUP_DONE_ENV) == "1":
        return
    setup = ["bash", str(BENCH_DIR / "setup.sh"), *setup_flags(args.load_generator)]
    if args.octo_rev:
        setup.append(f"--octo-rev={args.octo_rev}")
    status = subprocess.run(setup, check=False).returncode
    if status != 0:
        print(f"error: benchmarks/setup.sh failed (exit {status}); nothing was measured",
              file=sys.stderr)
        sys.exit(status)
    os.environ[SETUP_DONE_ENV] = "1"
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), str(script.resolve()), *argv])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.list:
        list_catalog()
        return 0
    bootstrap(args, argv)
    import suite  # imported only now: it needs psutil, which benchmarks/.venv provides

    return suite.main(args, argv)


if __name__ == "__main__":
    sys.exit(main())
