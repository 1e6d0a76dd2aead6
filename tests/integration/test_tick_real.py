"""Ticks under real forked workers: once per server, and leader takeover after kill -9."""

from __future__ import annotations

import os
import re
import signal
import time

import httpx
from server import ROOT, run_server

APP_DIR = ("--app-dir", str(ROOT / "tests"))


def reading(url: str) -> tuple[int, int]:
    n, pid = httpx.get(url, timeout=5).text.split()
    return int(n), int(pid)


def test_tick_runs_once_per_server_and_survives_leader_kill() -> None:
    with run_server("apps.tick_app:asgi", *APP_DIR, "--workers", "4",
                    "--no-access-log") as srv:
        start_n, _ = reading(srv.url)
        time.sleep(2.0)
        n, leader = reading(srv.url)
        # every=0.2 s for 2 s: about 10 runs. Once per worker would be about 40.
        assert 7 <= n - start_n <= 12, n - start_n
        leaders = re.findall(r"worker (\d+) now runs the tick schedule", srv.log())
        assert leaders == [str(leader)]
        os.kill(leader, signal.SIGKILL)
        killed = time.monotonic()
        while True:
            n2, new_leader = reading(srv.url)
            if new_leader not in (0, leader) and n2 > n:
                break
            assert time.monotonic() - killed < 3.0, "no worker took over the ticks"
            time.sleep(0.05)
        took_over = time.monotonic() - killed
        assert took_over < 2.0, f"takeover after {took_over:.2f}s"


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
            time.sleep(2.0)
            lines = log.read_text().split()
    finally:
        redis.terminate()
        redis.wait(10)
    # every=0.2 s for ~2 s on two hosts: about 10 runs in all, not about 20.
    assert 6 <= len(lines) <= 13, len(lines)
