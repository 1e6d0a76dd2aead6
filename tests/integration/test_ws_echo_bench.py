"""``benchmarks/ws_echo.py`` end to end, briefly: real servers, real client processes.

The script checks every echo byte for byte and exits non-zero on a wrong echo, a lost
connection or a server that does not start; here it runs one short round per engine. The
rates it prints are not checked: on a slow, busy machine they are low, and that is no bug.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "ws_echo.py"
# The script starts the servers with the console scripts next to its interpreter.
OCTO_SCRIPT = Path(sys.executable).parent / "octo"


def test_ws_echo_measures_octo_on_both_engines() -> None:
    if shutil.which("taskset") is None or not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("ws_echo.py pins server and clients to CPUs 0 and 1 with taskset")
    if not OCTO_SCRIPT.exists():
        pytest.skip(f"no octo console script next to {sys.executable} (ws_echo.py starts "
                    f"{OCTO_SCRIPT}); make test installs one in .venv")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "1", "--rounds", "1", "--connections", "4",
         "--procs", "2", "--servers", "octo/websockets,octo/wsproto"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    medians = dict(re.findall(r"^(\S+)\s+median\s+([\d,]+) msg/s", done.stdout, re.M))
    assert set(medians) == {"octo/websockets", "octo/wsproto"}, done.stdout
