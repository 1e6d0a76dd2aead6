"""``benchmarks/ws_echo.py`` end to end, briefly: real servers, real client processes.

The script checks every echo byte for byte and exits non-zero on a wrong echo, a lost
connection or a server that does not start; here it runs one short round per engine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ws_echo.py"


def test_ws_echo_measures_octo_on_both_engines() -> None:
    if shutil.which("taskset") is None or not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("ws_echo.py pins server and clients to CPUs 0 and 1 with taskset")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "1", "--rounds", "1", "--connections", "4",
         "--procs", "2", "--servers", "octo/websockets,octo/wsproto"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    medians = dict(re.findall(r"^(\S+)\s+median\s+([\d,]+) msg/s", done.stdout, re.M))
    assert set(medians) == {"octo/websockets", "octo/wsproto"}, done.stdout
    for name, rate in medians.items():
        assert int(rate.replace(",", "")) > 100, f"{name}: {rate} msg/s"
