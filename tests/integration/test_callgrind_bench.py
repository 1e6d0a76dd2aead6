"""benchmarks/callgrind.py end to end, shortened: octo (master + worker) serving hello under
callgrind, a window of a few hundred requests, and the report with its per-object split.
Skipped, with the reason, without valgrind, wrk or two pinnable cores, or when setup.sh
cannot install the benchmark packages; about two minutes (valgrind is ~50x slower).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_bench_suite import BENCH, ROOT, TEST_VENV

RUN_TIMEOUT = 900  # octo imports for ~15 s under valgrind, twice on a slow machine


def test_instructions_per_request_of_octo_hello(tmp_path: Path) -> None:
    missing = [t for t in ("valgrind", "callgrind_control", "wrk", "taskset")
               if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("the benchmark pins the server and the client to CPUs 0 and 1")
    report = tmp_path / "instructions.md"
    # The suite's code is the same in any venv that has the server: the test venv, as the
    # quick-mode test does (no package index, no venv build inside the suite).
    env = {**{k: v for k, v in os.environ.items() if k != "OCTO_BENCH_SETUP_DONE"},
           "BENCH_VENV": str(TEST_VENV)}
    done = subprocess.run(
        [sys.executable, str(BENCH / "callgrind.py"), "--skip-setup", "--servers", "octo",
         "--scenarios", "hello", "--seconds", "1", "--warmup", "1", "--idle", "0.5",
         "--rate-seconds", "1", "--quiet-timeout", "0", "--output", str(report),
         "--json", str(tmp_path / "i.json"), "--raw-dir", str(tmp_path / "raw")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
    assert done.returncode == 0, done.stderr[-4000:]
    [result] = json.loads((tmp_path / "i.json").read_text())["results"]
    [window] = result["windows"]
    assert result["failures"] == [] and result["rates"][0]["rps"] > 0
    assert window["requests"] >= 128  # the floor of a window: two per connection
    assert len(window["processes"]) == 2  # master and worker, each dumped
    # Every instruction is in some group; the interpreter carries most of it, the compiled
    # core and the loop some (not httptools: a hello head is read by octo's own scanner,
    # octo.http.quickhead, which llhttp only backs up).
    groups = window["groups"]
    assert sum(groups.values()) == window["instructions"]
    assert groups["interpreter (libpython)"] > window["instructions"] / 2
    assert groups.get("octo compiled", 0) > 0 and groups["uvloop"] > 0
    # The report's count is net of what the idle tree spends in the window's time.
    idle = window["idle_per_second"] * window["seconds"]
    assert 0 < idle < window["instructions"] / 2
    net = (window["instructions"] - idle) / window["requests"]
    row = re.search(r"^\| hello \| octo \| [\d,]+ \|  \| ([\d,]+) \|", report.read_text(),
                    re.MULTILINE)
    assert row is not None and int(row.group(1).replace(",", "")) == round(net)
    # Each window's dumps are kept for callgrind_annotate.
    assert list((tmp_path / "raw").glob("run1-hello-octo/callgrind/callgrind.out.*.*"))


def test_idle_instructions_per_second_of_octo(tmp_path: Path) -> None:
    """``--idle-only``: the idle tree's Ir/s, process by process (about half a minute: the
    boot under valgrind). No load generator is needed."""
    missing = [t for t in ("valgrind", "callgrind_control", "taskset")
               if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    if 0 not in os.sched_getaffinity(0):
        pytest.skip("the benchmark pins the server to CPU 0")
    env = {**{k: v for k, v in os.environ.items() if k != "OCTO_BENCH_SETUP_DONE"},
           "BENCH_VENV": str(TEST_VENV)}
    done = subprocess.run(
        [sys.executable, str(BENCH / "callgrind.py"), "--skip-setup", "--idle-only",
         "--servers", "octo", "--scenarios", "hello", "--idle", "1",
         "--json", str(tmp_path / "idle.json"), "--raw-dir", str(tmp_path / "raw")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
    assert done.returncode == 0, done.stderr[-4000:]
    [result] = json.loads((tmp_path / "idle.json").read_text())["results"]
    assert result["failures"] == [] and result["seconds"] >= 1
    # The master and its worker, each dumped over the same idle stretch (the master may
    # sleep through it all; the worker's pulse beats twice a second); the table says so.
    counts = [p["instructions"] for p in result["processes"]]
    assert len(counts) == 2 and min(counts) >= 0 and max(counts) > 0
    tree = sum(p["instructions"] for p in result["processes"]) / result["seconds"]
    assert re.search(rf"^hello\s+octo\s+{tree:,.0f}\s", done.stdout, re.MULTILINE)
