"""The benchmark suite end to end, in two parts.

``benchmarks/run.py --quick`` measures octo and uvicorn and writes its report. The suite's
code (plan, servers pinned with taskset, load, RSS samples, report, chart) is the same in
any venv that has the servers, so the test runs it in the test venv (``BENCH_VENV`` is the
suite's own switch for another venv) with 1 s runs: no package index, no venv build.

``benchmarks/setup.sh`` builds benchmarks/.venv (granian, hypercorn, matplotlib, ... from the
package index, a minute or more) and refreshes octo in it on every run. Only the refresh is
tested here, when benchmarks/.venv exists (``make bench-quick`` builds it) or when
OCTO_TEST_BENCH_SETUP=1 asks for the build; otherwise the test skips, saying so.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
BENCH_VENV = BENCH / ".venv"
TEST_VENV = Path(sys.executable).parent.parent  # the venv make test set up
SETUP_TIMEOUT = 900  # a first build downloads the competitors and matplotlib
RUN_TIMEOUT = 300  # 6 runs of 1 s of load, plus start, probe and stop of each server


def load_generator() -> str:
    """wrk where installed; else octo bench, so no apt-get runs inside the test suite."""
    return "wrk" if shutil.which("wrk") else "octo-bench"


def needs_two_cores() -> None:
    if shutil.which("taskset") is None or not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("the suite pins server and load generator to CPUs 0 and 1 with taskset")


def test_quick_mode_writes_a_report_with_every_server(tmp_path: Path) -> None:
    needs_two_cores()
    missing = [name for name in ("octo", "uvicorn") if not (TEST_VENV / "bin" / name).exists()]
    if missing:
        pytest.skip(f"no {', '.join(missing)} console script in {TEST_VENV}/bin (the suite "
                    "starts the servers with them); make test installs both in .venv")
    generator = load_generator()
    report = tmp_path / "quick.md"
    env = {**{k: v for k, v in os.environ.items() if k != "OCTO_BENCH_SETUP_DONE"},
           "BENCH_VENV": str(TEST_VENV)}
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--skip-setup",
         "--duration", "1", "--warmup", "0", "--quiet-timeout", "0",
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
    if importlib.util.find_spec("matplotlib") is not None:
        assert report.with_suffix(".png").stat().st_size > 0
    else:  # the report says why it has no chart (benchmarks/.venv has matplotlib)
        assert "No chart: matplotlib is not installed" in text


def test_setup_refreshes_the_benchmark_venv_with_a_copy_of_octo() -> None:
    build = os.environ.get("OCTO_TEST_BENCH_SETUP") == "1"
    if not (BENCH_VENV / ".installed").exists() and not build:
        pytest.skip("benchmarks/.venv is not built (make bench-quick builds it from the "
                    "package index; OCTO_TEST_BENCH_SETUP=1 lets this test build it)")
    flags = [] if load_generator() == "wrk" else ["--no-wrk"]
    try:
        done = subprocess.run(["bash", str(BENCH / "setup.sh"), *flags], cwd=ROOT,
                              capture_output=True, text=True, timeout=SETUP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.skip(f"benchmarks/setup.sh took over {SETUP_TIMEOUT} s (package index slow?)")
    if done.returncode == 1 and build:
        pytest.skip("benchmarks/setup.sh could not install the benchmark packages:\n"
                    + done.stderr[-2000:])
    assert done.returncode == 0, done.stderr
    # The competitors are there, and octo is a copy in the venv, not the work tree: edits
    # made while a suite runs must not change what it measures.
    probe = subprocess.run(
        [str(BENCH_VENV / "bin" / "python"), "-c",
         "import granian, hypercorn, uvicorn, matplotlib, octo; print(octo.__file__)"],
        cwd=BENCH_VENV, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    installed = Path(probe.stdout.strip()).resolve()
    assert BENCH_VENV.resolve() in installed.parents, installed
