"""The master under real load: crashes, hangs, recycling, reloads, scaling, boot errors."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import ROOT, run_command, run_server

from octo.master.control import request as control_request

LOAD = Path(__file__).resolve().parent / "load.py"

APP_SOURCE = '''
import asyncio, os, sys, time

VERSION = "{version}"
HOARD = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/slow":
        await asyncio.sleep(float(scope["query_string"] or b"0.05"))
    elif path == "/block":
        time.sleep(float(scope["query_string"] or b"5"))
    elif path == "/block-until":  # block the loop until the file named in the query exists
        print("APP: blocking", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(scope["query_string"].decode()) and time.monotonic() < deadline:
            time.sleep(0.01)
    elif path == "/grow":
        HOARD.append(bytearray(8 * 1024 * 1024))
    body = (str(os.getpid()) if path == "/pid" else VERSION).encode()
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": body}})
'''


def write_app(directory: Path, version: str) -> None:
    path = directory / "versioned.py"
    path.write_text(textwrap.dedent(APP_SOURCE.format(version=version)))
    # Same-second rewrites must not reuse a stale bytecode cache.
    for cached in (directory / "__pycache__").glob("versioned*.pyc"):
        cached.unlink()


class Load:
    """A load process hitting *url* with *concurrency* keep-alive connections until
    :meth:`stop`; *seconds* is only a deadline that ends a load a hung test forgot."""

    running: list[subprocess.Popen[str]] = []

    def __init__(self, url: str, seconds: float = 120.0, concurrency: int = 8) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(LOAD), url, str(seconds), str(concurrency)],
            stdout=subprocess.PIPE, text=True)
        self.seconds = seconds
        Load.running.append(self.process)

    def stop(self) -> dict[str, Any]:
        """Stop the load (each connection finishes the request in hand); its counts."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        return json.loads(out)  # type: ignore[no-any-return]


def status(ctl: Path) -> dict[str, Any]:
    return control_request(str(ctl), {"cmd": "status"})


def ready_pids(ctl: Path) -> set[int]:
    return {w["pid"] for w in status(ctl)["workers"] if w["state"] == "ready"}


def served(ctl: Path, pids: set[int]) -> int:
    """Requests served by these workers, as their last heartbeats published."""
    return sum(w["requests"] for w in status(ctl)["workers"] if w["pid"] in pids)


def served_except(ctl: Path, pids: set[int]) -> int:
    """Requests served by the workers now running other than *pids* (their successors)."""
    return sum(w["requests"] for w in status(ctl)["workers"] if w["pid"] not in pids)


WAIT = 30.0  # deadline for something that normally takes well under a second


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture(autouse=True)
def _no_load_outlives_its_test() -> Iterator[None]:
    yield
    for process in Load.running:
        if process.poll() is None:  # the test failed before it stopped its load
            process.kill()
        process.communicate()
    Load.running.clear()


@pytest.fixture
def appdir(tmp_path: Path) -> Path:
    write_app(tmp_path, "v1")
    return tmp_path


@pytest.fixture
def master(appdir: Path) -> Iterator[Any]:
    ctl = appdir / "octo.ctl"

    def start(*args: str, **kwargs: Any) -> Any:
        return run_server("versioned:app", "--app-dir", str(appdir), "--control", str(ctl),
                          "--no-access-log", *args, **kwargs)

    start.ctl = ctl  # type: ignore[attr-defined]
    yield start


def test_kill_9_worker_under_load_is_replaced_fast(master: Any) -> None:
    with master("--workers", "2") as srv:
        ctl = master.ctl
        wait_for(lambda: len(ready_pids(ctl)) == 2, WAIT, "two ready workers")
        before = ready_pids(ctl)
        victim = min(before)
        load = Load(srv.url + "/slow?0.02", concurrency=8)
        wait_for(lambda: served(ctl, {victim}) >= 20, WAIT, "the load to reach the victim")
        survivors_had = served(ctl, before - {victim})
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: len(ready_pids(ctl) - {victim}) == 2, WAIT, "a replacement worker")
        replaced_in = time.monotonic() - killed_at
        # The victim's connections came back at once, to the survivor: the load goes on.
        wait_for(lambda: served_except(ctl, {victim}) >= survivors_had + 50, WAIT,
                 "the load to go on after the kill")
        result = load.stop()
    counts = result["counts"]
    failed = sum(v for k, v in counts.items() if k != "ok")
    # Only the victim's in-flight requests may fail: at most one per connection it held.
    assert failed <= 8, counts
    # Replaced at once (it takes a fraction of a second), not after a crash backoff.
    assert replaced_in < 5.0, f"replacement took {replaced_in:.2f}s"


def test_rolling_reload_under_load_zero_failures(master: Any, appdir: Path) -> None:
    with master("--workers", "2") as srv:
        ctl = master.ctl
        wait_for(lambda: len(ready_pids(ctl)) == 2, WAIT, "two ready workers")
        old = ready_pids(ctl)
        load = Load(srv.url + "/slow?0.01", concurrency=8)
        wait_for(lambda: served(ctl, old) >= 50, WAIT, "the load to reach the old workers")
        write_app(appdir, "v2")
        os.kill(srv.pid, signal.SIGHUP)
        wait_for(lambda: len(ready_pids(ctl)) == 2 and not ready_pids(ctl) & old, WAIT,
                 "two new workers")
        wait_for(lambda: served_except(ctl, old) >= 50, WAIT,
                 "the new workers to serve the load")
        result = load.stop()
        assert httpx.get(srv.url + "/", timeout=5).text == "v2"
    assert result["counts"].keys() == {"ok"}, result["counts"]
    assert result["bodies"][0] == "v1" and result["bodies"][-1] == "v2"


def test_max_requests_recycling_under_load_zero_failures(master: Any) -> None:
    with master("--workers", "2", "--max-requests", "100", "--max-requests-jitter", "20") as srv:
        ctl = master.ctl
        wait_for(lambda: len(ready_pids(ctl)) == 2, WAIT, "two ready workers")
        first = ready_pids(ctl)
        load = Load(srv.url + "/", concurrency=8)
        wait_for(lambda: len(ready_pids(ctl)) == 2 and not ready_pids(ctl) & first, WAIT,
                 "both workers to be recycled")
        wait_for(lambda: served_except(ctl, first) >= 20, WAIT,
                 "the new workers to serve the load")
        result = load.stop()
        assert "max requests reached" in srv.log()
    assert result["counts"].keys() == {"ok"}, result["counts"]


def test_max_memory_recycling_under_load_zero_failures(master: Any) -> None:
    with master("--workers", "1", "--max-memory", "80") as srv:
        ctl = master.ctl
        wait_for(lambda: len(ready_pids(ctl)) == 1, WAIT, "a ready worker")
        [first] = ready_pids(ctl)
        load = Load(srv.url + "/", concurrency=4)
        wait_for(lambda: served(ctl, {first}) >= 20, WAIT, "the load to reach the worker")
        for _ in range(10):  # ~80 MB more than the limit allows
            httpx.get(srv.url + "/grow", timeout=10)
        wait_for(lambda: first not in ready_pids(ctl) and len(ready_pids(ctl)) == 1, WAIT,
                 "memory recycling")
        wait_for(lambda: served_except(ctl, {first}) >= 20, WAIT,
                 "the new worker to serve the load")
        result = load.stop()
        assert "RSS above --max-memory 80.0 MB" in srv.log()
    assert result["counts"].keys() == {"ok"}, result["counts"]


def test_blocked_loop_gets_stack_dump_and_replacement(master: Any) -> None:
    with master("--workers", "2", "--timeout", "1") as srv:
        ctl = master.ctl
        wait_for(lambda: len(ready_pids(ctl)) == 2, WAIT, "two ready workers")
        before = ready_pids(ctl)
        with httpx.Client(timeout=10) as blocker:
            try:
                blocker.get(srv.url + "/block?6")
            except httpx.HTTPError:
                pass  # the worker was killed under the request: that one may fail
        # Afterwards both slots are healthy again.
        wait_for(lambda: len(ready_pids(ctl)) == 2 and ready_pids(ctl) != before, WAIT,
                 "a replacement for the blocked worker")
        assert httpx.get(srv.url + "/", timeout=10).text == "v1"
        log = srv.log()
    assert "event loop blocked" in log and "liveness limit" in log
    assert "Most recent call first" in log or "most recent call first" in log
    assert "versioned.py" in log  # the dumped stack names the blocking frame


def test_other_workers_serve_while_one_is_blocked(master: Any, appdir: Path) -> None:
    release = appdir / "release"
    with master("--workers", "2", "--timeout", "120") as srv:
        wait_for(lambda: len(ready_pids(master.ctl)) == 2, WAIT, "two ready workers")
        blocker = subprocess.Popen([sys.executable, "-c", "import httpx; print(httpx.get("
                                    f"'{srv.url}/block-until?{release}', timeout=90).text)"],
                                   stdout=subprocess.PIPE, text=True)
        try:
            srv.wait_for_log("APP: blocking", timeout=WAIT)  # one worker's loop is stuck
            with httpx.Client(timeout=30) as client:
                result = [client.get(srv.url + "/").status_code for _ in range(20)]
            # All answered while the blocked request was still held (the order, not a time).
            assert blocker.poll() is None, "the blocked request ended first"
        finally:
            release.touch()
            out, _ = blocker.communicate(timeout=60)
    assert result == [200] * 20
    assert out.strip() == "v1"


def test_import_error_stops_master_with_bounded_forks(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import nonexistent_dependency\n")
    # A fork loop would never end: the subprocess timeout ends the test then.
    proc = subprocess.run([sys.executable, "-m", "octo", "serve", "broken:app", "--app-dir",
                           str(tmp_path), "--workers", "3", "--port", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4, proc.stderr
    assert "nonexistent_dependency" in proc.stderr
    assert proc.stderr.count("booting") <= 3  # one boot per worker, never a fork loop


def test_max_execution_time_gives_504_and_worker_survives(master: Any) -> None:
    with master("--max-execution-time", "0.5") as srv:
        wait_for(lambda: len(ready_pids(master.ctl)) == 1, WAIT, "a ready worker")
        [pid] = ready_pids(master.ctl)
        response = httpx.get(srv.url + "/slow?5", timeout=10)
        assert response.status_code == 504
        assert httpx.get(srv.url + "/pid", timeout=5).text == str(pid)
        assert "exceeded --max-execution-time" in srv.log()


def test_control_commands_and_status_table(master: Any) -> None:
    with master("--workers", "1") as srv:
        ctl = master.ctl
        wait_for(lambda: len(ready_pids(ctl)) == 1, WAIT, "a ready worker")
        octo = [sys.executable, "-m", "octo"]
        scaled = subprocess.run([*octo, "scale", "3", "--control", str(ctl)], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert scaled.returncode == 0
        wait_for(lambda: len(ready_pids(ctl)) == 3, WAIT, "three workers")
        table = subprocess.run([*octo, "status", "--control", str(ctl)], cwd=ROOT,
                               capture_output=True, text=True, timeout=60).stdout
        assert "PID" in table and "REQUESTS" in table and table.count("ready") == 3
        as_json = json.loads(subprocess.run([*octo, "status", "--json", "--control", str(ctl)],
                                            cwd=ROOT, capture_output=True, text=True,
                                            timeout=60).stdout)
        assert {"pid", "rss", "heartbeat_age", "in_flight"} <= as_json["workers"][0].keys()
        os.kill(srv.pid, signal.SIGTTOU)
        wait_for(lambda: len(status(ctl)["workers"]) == 2, WAIT, "scale down to two")
        stopped = subprocess.run([*octo, "stop", "--control", str(ctl)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0
        assert srv.process.wait(15) == 0
    missing = subprocess.run([*octo, "status", "--control", str(ctl)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no octo server is running" in missing.stderr



def test_connections_spread_evenly_across_workers(master: Any) -> None:
    import socket

    with master("--workers", "4") as srv:
        ctl = master.ctl
        wait_for(lambda: len(ready_pids(ctl)) == 4, WAIT, "four ready workers")
        host, port = srv.host, srv.port
        socks = [socket.create_connection((host, port), timeout=5) for _ in range(40)]
        try:
            for sock in socks:  # a burst: every connection asks at once
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            for sock in socks:
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            # Heartbeats publish the counts: wait until they add up to what is open.
            wait_for(lambda: sum(w["connections"] for w in status(ctl)["workers"]) == 40,
                     WAIT, "the heartbeats to publish 40 open connections")
            spread = sorted(w["connections"] for w in status(ctl)["workers"])
        finally:
            for sock in socks:
                sock.close()
    assert sum(spread) == 40, spread
    # Even on a busy machine the balanced spread of 40 over 4 stays within 8..12; accepting
    # without holding back gives the like of [3, 9, 10, 18].
    assert spread[0] >= 5 and spread[-1] <= 15, f"uneven spread {spread}"


@pytest.mark.parametrize("backend", ["watchfiles", "polling"])
def test_watch_reloads_changed_code_and_survives_syntax_errors(
        master: Any, appdir: Path, backend: str) -> None:
    if backend == "watchfiles":
        pytest.importorskip("watchfiles", reason="watchfiles extra not installed")
    with master("--watch", env={"OCTO_WATCH_BACKEND": backend}) as srv:
        srv.wait_for_log(f"({backend})")
        (appdir / "versioned.py").write_text("def broken(:\n")
        srv.wait_for_log("not reloading, syntax error", timeout=10)
        assert httpx.get(srv.url + "/", timeout=10).text == "v1"  # old worker still serving
        broken_at = (appdir / "versioned.py").stat().st_mtime_ns
        write_app(appdir, "v2")
        # A later mtime than the broken file's, even within one timestamp tick.
        later = broken_at + 10**9
        os.utime(appdir / "versioned.py", ns=(later, later))
        wait_for(lambda: httpx.get(srv.url + "/", timeout=10).text == "v2", WAIT, "new code")


def test_max_lifetime_recycles(master: Any) -> None:
    with master("--max-lifetime", "1.5") as srv:
        wait_for(lambda: len(ready_pids(master.ctl)) == 1, WAIT, "a ready worker")
        [first] = ready_pids(master.ctl)
        load = Load(srv.url + "/", concurrency=4)
        wait_for(lambda: first not in ready_pids(master.ctl)
                 and len(ready_pids(master.ctl)) == 1, WAIT, "the worker to be recycled")
        wait_for(lambda: served_except(master.ctl, {first}) >= 20, WAIT,
                 "the new worker to serve the load")
        result = load.stop()
        assert "--max-lifetime 1.5s reached" in srv.log()
    assert result["counts"].keys() == {"ok"}, result["counts"]


def test_pid_file_and_log_config(master: Any, appdir: Path) -> None:
    pid_file = appdir / "octo.pid"
    log_config = appdir / "logging.json"
    log_config.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "CUSTOM %(levelname)s %(message)s"}},
        "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "loggers": {"octo": {"handlers": ["err"], "propagate": False}},
    }))
    with master("--pid", str(pid_file), "--log-config", str(log_config)) as srv:
        assert int(pid_file.read_text()) == srv.pid
        assert "CUSTOM INFO" in srv.log()
    assert not pid_file.exists()


def test_reuse_port_gives_each_worker_its_own_socket(appdir: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctl = appdir / "rp.ctl"
    proc = subprocess.Popen([sys.executable, "-m", "octo", "serve", "versioned:app", "--app-dir",
                             str(appdir), "--port", str(port), "--workers", "2", "--reuse-port",
                             "--control", str(ctl)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: ctl.exists() and len(ready_pids(ctl)) == 2, WAIT, "two workers")
        seen = set()
        for _ in range(40):  # new connections hash across the workers' own sockets
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("GET", "/pid", headers={"Connection": "close"})
                seen.add(conn.getresponse().read().decode())
            finally:
                conn.close()
        assert seen == {str(p) for p in ready_pids(ctl)}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


SLOW_SHUTDOWN_APP = '''
import asyncio, pathlib


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await asyncio.sleep(2.5)  # e.g. closing a pool: awaiting, not blocking
                pathlib.Path("shutdown-done").touch()
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''


def test_slow_lifespan_shutdown_is_not_taken_for_a_blocked_loop(tmp_path: Path) -> None:
    """A worker retired by a reload keeps beating while its app shuts down, so a shutdown
    that awaits longer than --timeout is not killed as a hang."""
    (tmp_path / "slowstop.py").write_text(SLOW_SHUTDOWN_APP)
    ctl = tmp_path / "octo.ctl"
    with run_server("slowstop:app", "--app-dir", str(tmp_path), "--control", str(ctl),
                    "--timeout", "1", "--no-access-log", cwd=tmp_path) as srv:
        wait_for(lambda: len(ready_pids(ctl)) == 1, WAIT, "a ready worker")
        [old] = ready_pids(ctl)
        control_request(str(ctl), {"cmd": "reload"})
        srv.wait_for_log(f"worker {old} exited", timeout=WAIT)
        log = srv.log()
    assert "event loop blocked" not in log, log
    assert f"worker {old} exited (exit 0)" in log
    assert (tmp_path / "shutdown-done").exists()


BUSY_APP = '''
import asyncio, os, time


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def chew():
    for _ in range(3):
        spin(0.3)  # bursts well under --timeout: the loop is saturated, never blocked long
        await asyncio.sleep(0)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/busy":
        await asyncio.gather(*[chew() for _ in range(4)])  # 1.2 s per loop pass, for 3.6 s
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
'''


def test_saturated_but_running_loop_is_not_taken_for_a_blocked_one(tmp_path: Path) -> None:
    """Every pass over the ready queue takes 1.2 s, under --timeout 2: the heartbeat must
    come once a pass (it came every second pass, 2.4 s apart, when the clock task wrote it).
    The passes spin on the wall clock, so a slower machine does not lengthen them, but each
    burst ends only when the process next runs: on a starved machine 40 bursts of 30 ms
    made a pass of 1.9 s, 4 bursts of 0.3 s stretch it far less."""
    (tmp_path / "busy.py").write_text(BUSY_APP)
    with run_server("busy:app", "--app-dir", str(tmp_path), "--workers", "1",
                    "--timeout", "2", "--no-access-log") as srv:
        pid = httpx.get(srv.url + "/", timeout=10).text
        try:
            busy = httpx.get(srv.url + "/busy", timeout=60).text
        except httpx.HTTPError as exc:
            raise AssertionError(f"/busy failed ({exc!r}); log:\n{srv.log()}") from exc
        assert busy == pid
        log = srv.log()
    assert "event loop blocked" not in log, log


# -- an idle master is woken by what happens, not by a clock ------------------------------

# The master with its passes an hour apart at most: what these tests see happen was woken
# by the event itself (a worker's slot changing state, a signal, a heartbeat's deadline),
# not found by some later pass. They send no control request: each would wake it.
UNPOLLED = ("import sys; import octo.master.arbiter as arbiter; arbiter.IDLE_LIMIT = 3600.0; "
            "from octo.cli import main; main()")


def unpolled(appdir: Path, *args: str, **kwargs: Any) -> Any:
    # Its control socket and runtime directory of its own: nobody else's `octo status`
    # (which asks every server it finds) may wake it.
    run = appdir / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    return run_command([sys.executable, "-c", UNPOLLED, "serve", "versioned:app"],
                       "--app-dir", str(appdir), "--no-access-log", "--control",
                       str(appdir / "octo.ctl"), "--runtime-dir", str(run), *args, **kwargs)


def pid_of(url: str) -> int:
    """The pid of the worker answering a request on a new connection."""
    return int(httpx.get(url + "/pid", timeout=60).text)


def test_max_requests_replacement_wakes_an_idle_master(appdir: Path) -> None:
    """The worker at its --max-requests stops listening and asks for a replacement through
    its slot; the requests after it wait in the master's backlog until the replacement
    serves them, and the replacement serving retires the old worker."""
    with unpolled(appdir, "--workers", "1", "--max-requests", "20", "--timeout", "3600") \
            as srv:
        first = pid_of(srv.url)
        pids = [pid_of(srv.url) for _ in range(25)]  # past the limit (probes count too)
        assert first in pids and pids[-1] != first
        srv.wait_for_log(f"worker {first} exited", timeout=WAIT)
        log = srv.log()
    assert f"recycling worker {first}: max requests reached" in log


def test_an_idle_master_kills_a_blocked_worker_at_its_heartbeats_deadline(
        appdir: Path) -> None:
    """No pass is due but the heartbeat's check, --timeout after its last beat: the worker
    blocked for up to a minute is killed while it blocks, and replaced."""
    release = appdir / "release"
    with unpolled(appdir, "--workers", "1", "--timeout", "2") as srv:
        first = pid_of(srv.url)
        blocker = subprocess.Popen([sys.executable, "-c", "import httpx; print(httpx.get("
                                    f"'{srv.url}/block-until?{release}', timeout=90).text)"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True)
        try:
            srv.wait_for_log("APP: blocking", timeout=WAIT)
            srv.wait_for_log("event loop blocked", timeout=WAIT)
            out, _ = blocker.communicate(timeout=WAIT)
            # Killed under the request, which got no answer (once the loop blocked longer
            # than the file takes to appear, the worker would have answered "v1").
            assert blocker.returncode != 0 and out == ""
            assert pid_of(srv.url) != first  # the replacement serves
        finally:
            release.touch()
            if blocker.poll() is None:
                blocker.kill()
                blocker.communicate()


def test_a_rolling_reload_runs_on_wake_ups_alone(appdir: Path) -> None:
    """SIGHUP wakes the master; then each replacement serving, each old worker's exit
    (SIGCHLD) moves the reload on."""
    with unpolled(appdir, "--workers", "2", "--timeout", "3600") as srv:
        write_app(appdir, "v2")
        os.kill(srv.pid, signal.SIGHUP)
        srv.wait_for_log("reload: every worker runs generation 1", timeout=WAIT)
        answers = {httpx.get(srv.url + "/", timeout=10).text for _ in range(10)}
    assert answers == {"v2"}


def test_a_connection_after_an_idle_spell_gets_a_fresh_clock(master: Any) -> None:
    """With no connection open the worker's clock waits for one: the first connection
    after an idle spell must date its deadlines and its Date header from now, not from
    the clock's last tick (an idle spell longer than --timeout-keep-alive would otherwise
    close it before its request)."""
    with master("--workers", "1", "--timeout-keep-alive", "3") as srv:
        time.sleep(4)  # the idle spell itself: nothing is open
        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            time.sleep(1)  # a client that connects, then sends, within the keep-alive
            sock.sendall(b"GET / HTTP/1.1\r\nHost: octo\r\n\r\n")
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(4096)
                assert chunk, f"closed before an answer: {received!r}"
                received += chunk
        answered = time.time()
    head = received.split(b"\r\n\r\n")[0].decode().split("\r\n")
    assert head[0] == "HTTP/1.1 200 OK"
    [date] = [line.split(":", 1)[1] for line in head if line.lower().startswith("date:")]
    assert abs(parsedate_to_datetime(date).timestamp() - answered) <= 2.0  # not 5 s old
