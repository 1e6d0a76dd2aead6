"""Side-by-side HTTP benchmark of octo against uvicorn, granian and a raw-protocol ceiling.

    python benchmarks/run.py            # 3 rounds x 10 s, every scenario (make bench)
    python benchmarks/run.py --quick    # 1 round x 3 s, hello only (make bench-quick)
    python benchmarks/run.py --list     # scenarios and servers

Each run starts a fresh server pinned to one core (``taskset -c 0``) on a free loopback port,
samples its idle RSS, checks one response, warms it up, then loads it from the other core
(``taskset -c 1 wrk -t1 -c64 -d10s --latency``) and stops its whole process tree. Servers
alternate round by round. The report goes to benchmarks/results/<date>.md, the raw wrk output
and server logs to benchmarks/results/raw/ (not committed).

This file is only the command line and the bootstrap: benchmarks/setup.sh builds
benchmarks/.venv (competitors plus an editable octo), then this script re-executes itself in
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
from loadgen import GENERATORS

BENCH_DIR = Path(__file__).resolve().parent
VENV_PYTHON = BENCH_DIR / ".venv" / "bin" / "python"
SETUP_DONE_ENV = "OCTO_BENCH_SETUP_DONE"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py",
                                     description="Benchmark octo against uvicorn and granian.")
    parser.add_argument("--quick", action="store_true",
                        help="1 round of 3 s (1 s warm-up), hello only, unless overridden")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per run (default 2)")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    parser.add_argument("--servers", help="comma-separated server names (default: all)")
    parser.add_argument("--load-generator", choices=sorted(GENERATORS), default="wrk")
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the server")
    parser.add_argument("--client-cpu", type=int, default=1, help="core for the load generator")
    parser.add_argument("--noisy-retries", type=int, default=1,
                        help="repeat a run this often while other processes used > 10%% of a "
                             "core during it (default 1)")
    parser.add_argument("--output", type=Path,
                        help="Markdown report (default benchmarks/results/<date>[-quick].md)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
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


def bootstrap(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Run setup.sh, then re-execute inside benchmarks/.venv; returns only once inside it."""
    if args.skip_setup or os.environ.get(SETUP_DONE_ENV) == "1":
        return
    setup = ["bash", str(BENCH_DIR / "setup.sh")]
    if args.load_generator != "wrk":
        setup.append("--no-wrk")
    status = subprocess.run(setup, check=False).returncode
    if status != 0:
        print(f"error: benchmarks/setup.sh failed (exit {status}); nothing was measured",
              file=sys.stderr)
        sys.exit(status)
    os.environ[SETUP_DONE_ENV] = "1"
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), str(Path(__file__).resolve()), *argv])


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
