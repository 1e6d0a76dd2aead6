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


def events(log: Path) -> list[tuple[str, int]]:
    """The (start|end, pid) lines of tests/apps/stalling_tick_app.py, in order."""
    if not log.exists():
        return []
    return [(kind, int(pid)) for kind, pid in
            (line.split() for line in log.read_text().splitlines() if line)]


def overlaps(log: Path, dead: frozenset[int] = frozenset()) -> list[int]:
    """Positions of the starts that came while another run had not ended (a pid in *dead*
    was killed: its run ended when it died, which the caller knows happened by then)."""
    going: set[int] = set()
    found = []
    for at, (kind, pid) in enumerate(events(log)):
        if kind == "start":
            going -= dead
            if going:
                found.append(at)
            going.add(pid)
        else:
            going.discard(pid)
    return found


def wait_for(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE * 2
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_tick_never_overlaps_when_its_leader_stalls_past_the_lease(tmp_path) -> None:
    """Each run blocks its worker's loop for longer than the 1 s lease, so the lead moves to
    the other worker while the run goes on: that worker must wait for the run to end."""
    log = tmp_path / "ticks.log"
    env = {"OCTO_TEST_TICK_FILE": str(log), "OCTO_TEST_TICK_STALL": "1.6"}
    with run_server("apps.stalling_tick_app:asgi", *APP_DIR, "--workers", "2",
                    "--no-access-log", env=env) as srv:
        # Until the lead has moved between the workers at least twice, with runs by both.
        wait_for(lambda: [kind for kind, _ in events(log)].count("end") >= 5 and
                 len({pid for _, pid in events(log)}) >= 2, "runs in both workers")
        log_text = srv.log()
    found = overlaps(log)
    assert not found, f"runs overlapped at lines {found}: {events(log)}"
    assert len(re.findall(r"now runs the tick schedule", log_text)) >= 2, log_text


def test_a_leader_killed_in_the_middle_of_a_run_does_not_stop_the_tick(tmp_path) -> None:
    """The run's mark in shared memory names a dead process: the next leader runs the tick."""
    log = tmp_path / "ticks.log"
    env = {"OCTO_TEST_TICK_FILE": str(log), "OCTO_TEST_TICK_STALL": "hold"}
    try:
        with run_server("apps.stalling_tick_app:asgi", *APP_DIR, "--workers", "2",
                        "--no-access-log", env=env) as srv:
            wait_for(lambda: events(log), "the first run")
            (kind, holder), = events(log)
            assert kind == "start"
            # The holder's loop is blocked, so the other worker leads by now or soon, and
            # skips the tick while the holder lives; kill -9 the holder in its run.
            wait_for(lambda: srv.log().count("now runs the tick schedule") >= 2,
                     "the other worker to take the lead")
            os.kill(holder, signal.SIGKILL)
            wait_for(lambda: any(kind == "start" and pid != holder
                                 for kind, pid in events(log)), "a run after the kill")
            assert "died in the middle of a run" in srv.log()
            (tmp_path / "release").write_text("")
    finally:
        (tmp_path / "release").write_text("")  # no worker stays blocked past the test
    assert not overlaps(log, dead=frozenset({holder})), events(log)
