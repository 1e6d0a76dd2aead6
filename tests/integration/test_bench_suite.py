"""The benchmark suite's quick mode, end to end: ``benchmarks/setup.sh`` builds (or refreshes)
benchmarks/.venv, then ``benchmarks/run.py --quick`` measures octo and uvicorn for a few
seconds each and writes its report. Skipped, with the reason, when the setup cannot install
packages (no package index reachable) or the machine cannot pin two cores; about a minute.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
VENV_PYTHON = BENCH / ".venv" / "bin" / "python"
SETUP_TIMEOUT = 600  # a first build downloads the competitors and matplotlib
RUN_TIMEOUT = 300  # 6 runs of ~3 s of load, plus waits for a quiet machine


def load_generator() -> str:
    """wrk where installed; else octo bench, so no apt-get runs inside the test suite."""
    return "wrk" if shutil.which("wrk") else "octo-bench"


def set_up(generator: str) -> None:
    flags = [] if generator == "wrk" else ["--no-wrk"]
    try:
        done = subprocess.run(["bash", str(BENCH / "setup.sh"), *flags], cwd=ROOT,
                              capture_output=True, text=True, timeout=SETUP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.skip(f"benchmarks/setup.sh took over {SETUP_TIMEOUT} s (package index slow?)")
    if done.returncode == 1:
        pytest.skip("benchmarks/setup.sh could not install the benchmark packages:\n"
                    + done.stderr[-2000:])
    assert done.returncode == 0, done.stderr


def test_quick_mode_writes_a_report_with_every_server(tmp_path: Path) -> None:
    if shutil.which("taskset") is None or not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("the suite pins server and load generator to CPUs 0 and 1 with taskset")
    generator = load_generator()
    set_up(generator)
    report = tmp_path / "quick.md"
    env = {k: v for k, v in os.environ.items() if k != "OCTO_BENCH_SETUP_DONE"}
    done = subprocess.run(
        [str(VENV_PYTHON), str(BENCH / "run.py"), "--quick", "--skip-setup",
         "--load-generator", generator, "--output", str(report),
         "--raw-dir", str(tmp_path / "raw"), "--json", str(tmp_path / "quick.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
    assert done.returncode == 0, done.stderr[-4000:]
    text = report.read_text()
    for server in ("octo", "uvicorn"):
        assert f"| {server} | {generator} |" in text, server
    for scenario in ("hello", "json", "post_echo"):
        assert f"## {scenario}\n" in text, scenario
    assert "FAILED" not in text
    assert report.with_suffix(".png").stat().st_size > 0
