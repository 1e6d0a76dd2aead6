"""Ticks under real forked workers: once per server, and leader takeover after kill -9."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
from server import ROOT, run_server

APP_DIR = ("--app-dir", str(ROOT / "tests"))


EVERY = 0.2  # tests/apps/tick_app.py and fleet_tick_app.py
DEADLINE = 30.0  # only ends a hung test


def reading(url: str) -> tuple[int, int]:
    n, pid = httpx.get(url, timeout=10).text.split()
    return int(n), int(pid)


def at_most_once_per_interval(runs: int, seconds: float) -> bool:
    """A tick every EVERY seconds can run at most this often in *seconds*: a slow machine
    runs it less often, never more; once per worker (or per host) would be a multiple."""
    return runs <= seconds / EVERY + 2


def test_tick_runs_once_per_server_and_survives_leader_kill() -> None:
    with run_server("apps.tick_app:asgi", *APP_DIR, "--workers", "4",
                    "--no-access-log") as srv:
        start = time.monotonic()
        start_n, _ = reading(srv.url)
        deadline = start + DEADLINE
        while (n := reading(srv.url)[0]) - start_n < 6:
            assert time.monotonic() < deadline, f"only {n - start_n} tick runs in {DEADLINE}s"
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        # Four workers each running the tick would reach 6 runs four times as fast.
        assert at_most_once_per_interval(n - start_n, elapsed), (n - start_n, elapsed)
        n, leader = reading(srv.url)
        leaders = re.findall(r"worker (\d+) now runs the tick schedule", srv.log())
        assert leaders and leaders[-1] == str(leader), (leaders, leader)
        os.kill(leader, signal.SIGKILL)
        # The lease expires LEADER_TTL after the last renewal; then another worker leads.
        deadline = time.monotonic() + DEADLINE
        while True:
            n2, new_leader = reading(srv.url)
            if new_leader not in (0, leader) and n2 > n:
                break
            assert time.monotonic() < deadline, f"no worker took over the ticks in {DEADLINE}s"
            time.sleep(0.05)
        assert re.findall(r"worker (\d+) now runs the tick schedule", srv.log())[-1] == \
            str(new_leader)


def test_one_server_tick_runs_on_one_host_of_a_fleet(tmp_path) -> None:
    import contextlib
    import shutil
    import socket
    import subprocess

    import pytest

    pytest.importorskip("redis", reason="redis-py not installed (extra octo-server[redis])")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (.ci/run installs it with apt-get)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    log = tmp_path / "ticks.log"
    env = {"OCTO_TEST_TICK_FILE": str(log)}
    args = ("apps.fleet_tick_app:asgi", *APP_DIR, "--redis-url", f"redis://127.0.0.1:{port}/0")
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        with run_server(*args, env=env), run_server(*args, env=env):
            # Both hosts run their schedule now; count the runs from here on.
            start = time.monotonic()
            first = runs(log)
            deadline = start + DEADLINE
            while runs(log) - first < 6:
                assert time.monotonic() < deadline, f"{runs(log) - first} runs in {DEADLINE}s"
                time.sleep(0.05)
            elapsed = time.monotonic() - start
            counted = runs(log) - first
    finally:
        redis.terminate()
        redis.wait(10)
    # One run per interval for the fleet: both hosts running it would be twice as many.
    assert at_most_once_per_interval(counted, elapsed), (counted, elapsed)


def runs(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0
