"""Process supervision through real masters and workers: a killed master, bounded scaling,
stopping (refusing at once, waiting for the exit), reload outcomes, where clients find the
control socket, and --max-requests counted per response."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from server import ROOT, Server, run_server

from octo.master.control import NoAnswer, NotRunning
from octo.master.control import request as control_request

APP = '''
import asyncio, os

VERSION = "{version}"


async def wait_for_file(path):
    for _ in range(6000):  # the test creates it; 60 s at most, never forever
        if os.path.exists(path):
            return
        await asyncio.sleep(0.01)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                {startup}
                await send({{"type": "lifespan.startup.complete"}})
            elif message["type"] == "lifespan.shutdown":
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    if scope["path"] == "/hold":
        marker = scope["query_string"].decode()
        open(marker + ".started", "w").close()  # the test waits for it
        await wait_for_file(marker)
    body = (str(os.getpid()) if scope["path"] == "/pid" else VERSION).encode()
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": body}})
'''

STARTS = "pass"
FAILS = ('await send({"type": "lifespan.startup.failed", "message": "the database is down"})'
         "; return")
HANGS = "await asyncio.sleep(3600)"


def write_app(directory: Path, version: str = "v1", startup: str = STARTS) -> None:
    (directory / "sup.py").write_text(textwrap.dedent(APP.format(version=version,
                                                                 startup=startup)))
    for cached in (directory / "__pycache__").glob("sup*.pyc"):
        cached.unlink()  # a same-second rewrite must not reuse the old bytecode


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll *predicate* until it returns something true; the deadline only ends a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def status(ctl: Path) -> dict[str, Any]:
    return control_request(str(ctl), {"cmd": "status"})


def ready(ctl: Path, role: str = "http") -> list[dict[str, Any]]:
    """The ready workers of *role*; none while the control socket is not up yet."""
    try:
        workers = status(ctl)["workers"]
    except (NotRunning, NoAnswer, ConnectionRefusedError):
        return []
    return [w for w in workers if w["state"] == "ready" and w["role"] == role]


def octo(*args: str, cwd: Path | str = ROOT, env: Mapping[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "octo", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def can_bind(host: str, port: int) -> bool:
    """A new server could bind the port (nothing listens on it any more)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError:
            return False
    return True


def reusable_socket() -> socket.socket:
    """A listening socket for --fd made as octo makes its own (SO_REUSEADDR), so that a
    connection still open on the port does not stop a new server from binding it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Held:
    """A request the app holds until the test creates the marker file."""

    def __init__(self, url: str, marker: Path, transport: httpx.HTTPTransport | None = None):
        self.marker = marker
        self.result: list[Any] = []
        self.thread = threading.Thread(target=self._get, args=(url, transport), daemon=True)
        self.thread.start()

    def _get(self, url: str, transport: httpx.HTTPTransport | None) -> None:
        try:
            with httpx.Client(transport=transport, timeout=60) as client:
                response = client.get(f"{url}/hold?{self.marker}")
            self.result.append((response.status_code, response.text))
        except httpx.HTTPError as exc:
            self.result.append(exc)

    def wait_in_flight(self, ctl: Path) -> None:
        """Until the app holds the request and the status says so. The status alone is not
        enough: it is the workers' last heartbeat, which may still show the readiness
        probe in flight."""
        started = Path(f"{self.marker}.started")
        wait_for(started.exists, 10, "the app to hold the request")
        wait_for(lambda: in_flight(ctl) == 1, 10, "the held request in flight")

    def release(self) -> Any:
        self.marker.touch()
        self.thread.join(60)
        assert self.result, "the held request never ended"
        return self.result[0]


def in_flight(ctl: Path) -> int:
    return sum(w["in_flight"] for w in status(ctl)["workers"])


@pytest.fixture
def appdir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


@contextlib.contextmanager
def serving(appdir: Path, *args: str, **kwargs: Any) -> Iterator[Server]:
    with run_server("sup:app", "--app-dir", str(appdir), "--control", str(appdir / "octo.ctl"),
                    "--no-access-log", *args, **kwargs) as srv:
        yield srv


# -- 1. workers do not outlive their master -----------------------------------------------

def test_killed_master_takes_its_workers_and_port_with_it(appdir: Path) -> None:
    """kill -9 of the master: the HTTP and task workers stop listening at once (a new server
    can bind the port), finish the request in flight, and exit; nothing answers status."""
    ctl = appdir / "octo.ctl"
    pids: list[int] = []
    try:
        with serving(appdir, "--workers", "2", "--task-workers", "1",
                     expect_clean_exit=False, sock=reusable_socket()) as srv:
            wait_for(lambda: len(ready(ctl)) == 2 and len(ready(ctl, "task")) == 1, 20,
                     "two HTTP workers and a task worker")
            pids = [w["pid"] for w in status(ctl)["workers"]]
            held = Held(srv.url, appdir / "release")
            held.wait_in_flight(ctl)
            os.kill(srv.pid, signal.SIGKILL)
            srv.process.wait(10)
            wait_for(lambda: can_bind(srv.host, srv.port), 15,
                     "the orphaned workers to close the listening socket")
            assert held.release() == (200, "v1")  # the drain let it finish
            wait_for(lambda: all(gone(pid) for pid in pids), 30, f"workers {pids} to exit")
        result = octo("status", "--control", str(ctl))
        assert result.returncode == 1 and "no octo server is running" in result.stderr
    finally:
        for pid in pids:  # never leave strays behind, whatever failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_killed_master_stops_workers_that_are_still_booting(appdir: Path) -> None:
    """A worker whose lifespan startup never ends notices the master's death too."""
    write_app(appdir, startup=HANGS)
    ctl = appdir / "octo.ctl"
    pids: list[int] = []
    try:
        with serving(appdir, expect_clean_exit=False,
                     ready=lambda s: ctl.exists() and "booting" in s.log()) as srv:
            pids = wait_for(lambda: [w["pid"] for w in status(ctl)["workers"]], 10,
                            "the booting worker in the status")
            os.kill(srv.pid, signal.SIGKILL)
            wait_for(lambda: all(gone(pid) for pid in pids), 30, f"worker {pids} to exit")
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- 2. bounded scaling -------------------------------------------------------------------

def test_scale_above_max_workers_is_refused_in_one_line(appdir: Path) -> None:
    ctl = appdir / "octo.ctl"
    with serving(appdir, "--max-workers", "3") as srv:
        wait_for(lambda: len(ready(ctl)) == 1, 20, "a ready worker")
        refused = octo("scale", "4", "--control", str(ctl))
        assert refused.returncode == 1, refused
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
        assert "cannot scale to 4 workers: above --max-workers 3" in refused.stderr
        assert status(ctl)["target"] == 1 and status(ctl)["max_workers"] == 3
        assert octo("scale", "2", "--control", str(ctl)).returncode == 0
        os.kill(srv.pid, signal.SIGTTIN)
        srv.wait_for_log("scaling from 2 to 3 worker(s)", timeout=10)
        os.kill(srv.pid, signal.SIGTTIN)
        srv.wait_for_log("SIGTTIN: cannot scale to 4 workers", timeout=10)
        wait_for(lambda: len(ready(ctl)) == 3, 30, "three ready workers")
        assert status(ctl)["target"] == 3


def test_big_scale_up_keeps_serving_control_and_signals(appdir: Path) -> None:
    """Scaling to 100 forks a few workers per pass: status answers in between, and SIGINT
    stops the server before it has forked them all."""
    ctl = appdir / "octo.ctl"
    with serving(appdir, "--max-workers", "100", expect_clean_exit=False) as srv:
        wait_for(lambda: len(ready(ctl)) == 1, 20, "a ready worker")
        assert control_request(str(ctl), {"cmd": "scale", "workers": 100})["ok"]
        during = status(ctl)
        os.kill(srv.pid, signal.SIGINT)
        assert during["target"] == 100
        assert len(during["workers"]) < 100, "status waited for the whole scale-up"
        assert srv.process.wait(60) == 0
        forked = srv.log().count(" exited (")  # the master reaps (and logs) every worker
    assert forked < 100, f"{forked} workers forked before SIGINT was served"


def test_control_client_timeouts_are_one_line(tmp_path: Path) -> None:
    """A control socket that accepts but never answers (same user, so it passes the peer
    check): every command gives up after --timeout with one line, no traceback."""
    path = tmp_path / "mute.ctl"
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(path))
    mute.listen(16)
    try:
        for command in (["status"], ["scale", "2"], ["stop"], ["reload"], ["stop", "--no-wait"]):
            result = octo(*command, "--control", str(path), "--timeout", "1")
            assert result.returncode == 1, (command, result)
            assert result.stderr.count("\n") == 1, (command, result.stderr)
            assert "Traceback" not in result.stderr
            assert f"no answer from {path} within 1 s" in result.stderr, result.stderr
    finally:
        mute.close()


# -- 3. a stop stops listening first --------------------------------------------------------

def refused_at_once(connect: Callable[[], socket.socket]) -> bool:
    """True once a connection is refused (or finds no socket); one that is accepted meanwhile
    is closed and the next attempt made."""
    try:
        with connect():
            return False
    except (ConnectionRefusedError, FileNotFoundError):
        return True


def test_graceful_stop_refuses_new_connections_while_it_drains(appdir: Path) -> None:
    ctl = appdir / "octo.ctl"
    with serving(appdir, "--workers", "2") as srv:
        wait_for(lambda: len(ready(ctl)) == 2, 20, "two ready workers")
        held = Held(srv.url, appdir / "release")
        try:
            held.wait_in_flight(ctl)
            os.kill(srv.pid, signal.SIGTERM)
            srv.wait_for_log("graceful stop", timeout=10)

            def connect() -> socket.socket:
                return socket.create_connection((srv.host, srv.port), timeout=5)

            wait_for(lambda: refused_at_once(connect), 10, "new connections to be refused")
            assert refused_at_once(connect)
            assert in_flight(ctl) == 1  # still draining: the master and a worker still run
        finally:
            outcome = held.release()
        assert outcome == (200, "v1")
        assert srv.process.wait(30) == 0


def test_graceful_stop_unlinks_the_uds_path_first(appdir: Path) -> None:
    uds, ctl = appdir / "app.sock", appdir / "octo.ctl"
    proc = subprocess.Popen([sys.executable, "-m", "octo", "serve", "sup:app", "--app-dir",
                             str(appdir), "--uds", str(uds), "--control", str(ctl),
                             "--no-access-log"], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ctl.exists() and len(ready(ctl)) == 1, 20, "a ready worker")
        held = Held("http://octo", appdir / "release", httpx.HTTPTransport(uds=str(uds)))
        try:
            held.wait_in_flight(ctl)
            proc.send_signal(signal.SIGTERM)

            def connect() -> socket.socket:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(str(uds))
                except OSError:
                    sock.close()
                    raise
                return sock

            wait_for(lambda: refused_at_once(connect), 10, "the --uds socket to refuse")
            assert not uds.exists()
        finally:
            outcome = held.release()
        assert outcome == (200, "v1")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# -- 4. stop and reload say how they ended ------------------------------------------------

def test_stop_returns_once_the_master_has_exited(appdir: Path) -> None:
    """`octo stop && octo serve` on the same port works: stop waits for the drain."""
    port, ctl = free_port(), appdir / "octo.ctl"
    command = [sys.executable, "-m", "octo", "serve", "sup:app", "--app-dir", str(appdir),
               "--port", str(port), "--control", str(ctl), "--no-access-log",
               "--workers", "2"]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    second = None
    try:
        wait_for(lambda: ctl.exists() and len(ready(ctl)) == 2, 20, "two ready workers")
        held = Held(f"http://127.0.0.1:{port}", appdir / "release")
        held.wait_in_flight(ctl)
        stop = subprocess.Popen([sys.executable, "-m", "octo", "stop", "--control", str(ctl)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        wait_for(lambda: status(ctl)["stopping"], 10, "the stop to begin")
        assert held.release() == (200, "v1")
        out, err = stop.communicate(timeout=60)
        assert (stop.returncode, out, err) == (0, "stopped\n", "")
        assert can_bind("127.0.0.1", port)  # at once: nothing of the old server listens
        assert proc.wait(5) == 0
        second = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
        wait_for(lambda: ctl.exists() and len(ready(ctl)) == 2, 20, "the next server")
        assert octo("stop", "--control", str(ctl)).returncode == 0
        assert second.wait(5) == 0
    finally:
        for p in (proc, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)


def test_reload_returns_once_every_worker_runs_the_new_code(appdir: Path) -> None:
    ctl = appdir / "octo.ctl"
    with serving(appdir, "--workers", "2", "--task-workers", "1") as srv:
        wait_for(lambda: len(ready(ctl)) == 2, 20, "two ready workers")
        write_app(appdir, "v2")
        result = octo("reload", "--control", str(ctl))
        assert (result.returncode, result.stdout) == (
            0, "reloaded: every worker runs generation 1\n"), result
        workers = status(ctl)["workers"]
        assert [(w["generation"], w["state"]) for w in workers] == [(1, "ready")] * 3, workers
        assert httpx.get(srv.url + "/", timeout=10).text == "v2"
        assert status(ctl)["reload"] == {"generation": 1, "state": "done", "error": ""}


def test_reload_with_code_that_does_not_boot_fails_with_the_reason(appdir: Path) -> None:
    ctl = appdir / "octo.ctl"
    with serving(appdir, "--workers", "2") as srv:
        wait_for(lambda: len(ready(ctl)) == 2, 20, "two ready workers")
        write_app(appdir, "v2", startup=FAILS)
        result = octo("reload", "--control", str(ctl))
        assert result.returncode == 1, result
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("octo: reload abandoned: new worker ")
        assert "the database is down" in result.stderr
        assert status(ctl)["reload"]["state"] == "abandoned"
        assert httpx.get(srv.url + "/", timeout=10).text == "v1"  # the old workers serve on
        table = octo("status", "--control", str(ctl)).stdout
        assert "reload to generation 1: abandoned" in table
        started = octo("reload", "--no-wait", "--control", str(ctl))
        assert (started.returncode, started.stdout) == (0, "reload started (generation 2)\n")


def test_reload_wait_has_a_timeout_and_a_stop_interrupts_it(appdir: Path) -> None:
    ctl = appdir / "octo.ctl"
    with serving(appdir) as srv:
        wait_for(lambda: len(ready(ctl)) == 1, 20, "a ready worker")
        write_app(appdir, "v2", startup=HANGS)
        late = octo("reload", "--control", str(ctl), "--timeout", "1")
        assert late.returncode == 1 and late.stderr.count("\n") == 1, late
        assert "the reload has not ended after 1 s" in late.stderr
        waiting = subprocess.Popen([sys.executable, "-m", "octo", "reload", "--control",
                                    str(ctl)], cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        srv.wait_for_log("reload: replacing", timeout=10, since=0)
        wait_for(lambda: srv.log().count("control: reload") == 2, 20, "the second reload")
        assert octo("stop", "--control", str(ctl)).returncode == 0
        _, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 1
        assert err == "octo: the server is stopping: the reload did not finish\n"


def test_reload_during_a_stop_is_refused(appdir: Path) -> None:
    ctl = appdir / "octo.ctl"
    with serving(appdir) as srv:
        wait_for(lambda: len(ready(ctl)) == 1, 20, "a ready worker")
        held = Held(srv.url, appdir / "release")
        try:
            held.wait_in_flight(ctl)
            assert octo("stop", "--no-wait", "--control", str(ctl)).stdout == "stopping\n"
            refused = octo("reload", "--control", str(ctl))
            assert (refused.returncode, refused.stderr) == (
                1, "octo: the server is stopping\n")
            scaled = octo("scale", "2", "--control", str(ctl))
            assert (scaled.returncode, scaled.stderr) == (1, "octo: the server is stopping\n")
        finally:
            assert held.release() == (200, "v1")
        assert srv.process.wait(30) == 0


# -- 5. clients find the control socket from the server's own settings ---------------------

@pytest.mark.parametrize("source", ["pyproject", "app-dir", "env", "flags"])
def test_control_commands_read_the_servers_settings(tmp_path: Path, source: str) -> None:
    appdir, runtime, elsewhere = tmp_path / "app", tmp_path / "run", tmp_path / "elsewhere"
    appdir.mkdir()
    elsewhere.mkdir()
    write_app(appdir)
    with run_server("sup:app", "--app-dir", str(appdir), "--runtime-dir", str(runtime),
                    "--no-access-log") as srv:
        settings = {"port": srv.port, "runtime-dir": str(runtime)}
        args: list[str] = []
        env = {"OCTO_PORT": "", "OCTO_RUNTIME_DIR": ""}
        cwd = elsewhere
        if source in ("pyproject", "app-dir"):
            (appdir / "pyproject.toml").write_text(
                "[tool.octo]\n" + "".join(f'{k} = {json.dumps(v)}\n' for k, v in settings.items()))
            if source == "pyproject":
                cwd = appdir
            else:
                args = ["--app-dir", str(appdir)]
        elif source == "env":
            env = {"OCTO_PORT": str(srv.port), "OCTO_RUNTIME_DIR": str(runtime)}
        else:
            args = ["--port", str(srv.port), "--runtime-dir", str(runtime)]
        env = {k: v for k, v in env.items() if v}
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
        result = subprocess.run([sys.executable, "-m", "octo", "status", "--json", *args],
                                cwd=cwd, env={**clean, **env}, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result
        assert json.loads(result.stdout)["master"] == srv.pid


def test_control_socket_next_to_the_pid_file_is_found_from_pyproject(tmp_path: Path) -> None:
    """With --uds and --pid the socket is next to the pid file; a client given the server's
    pyproject.toml finds it there, and one given only --uds says where it looked."""
    write_app(tmp_path)
    uds, pid = tmp_path / "app.sock", tmp_path / "octo.pid"
    (tmp_path / "pyproject.toml").write_text(f'[tool.octo]\nuds = "{uds}"\npid = "{pid}"\n')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
    proc = subprocess.Popen([sys.executable, "-m", "octo", "serve", "sup:app", "--no-access-log"],
                            cwd=tmp_path, env=clean, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: Path(f"{pid}.ctl").exists(), 20, "the control socket")
        found = subprocess.run([sys.executable, "-m", "octo", "status", "--json"], cwd=tmp_path,
                               env=clean, capture_output=True, text=True, timeout=60)
        assert found.returncode == 0 and json.loads(found.stdout)["master"] == proc.pid
        lost = subprocess.run([sys.executable, "-m", "octo", "status", "--uds", str(uds)],
                              cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)
        assert lost.returncode == 1
        assert lost.stderr == (f"octo: no octo server is running (nothing answers on {uds}.ctl, "
                               f"the control socket next to --uds {uds})\n")
        stopped = subprocess.run([sys.executable, "-m", "octo", "stop"], cwd=tmp_path, env=clean,
                                 capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0 and proc.wait(5) == 0
        assert not uds.exists() and not pid.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# -- 6. --max-requests counted per response -------------------------------------------------

def answers_per_worker(url: str, count: int, keep_alive: bool) -> Counter[str]:
    served: Counter[str] = Counter()
    # Without keep-alive each request opens a connection of its own: one client that keeps
    # none open (an httpx.get per request built a client and its TLS context each time,
    # 70 ms of CPU: the test took 18-35 s on a busy 2-core machine, 2.5 s this way).
    limits = httpx.Limits() if keep_alive else httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=10, limits=limits) as client:
        for _ in range(count):
            served[client.get(url + "/pid").text] += 1
    return served


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "new-connections"])
def test_max_requests_retires_a_worker_after_exactly_that_many(appdir: Path,
                                                                keep_alive: bool) -> None:
    ctl = appdir / "octo.ctl"
    # Ready by the control socket: a readiness probe over HTTP would count as a request.
    with serving(appdir, "--workers", "2", "--max-requests", "50", "--max-requests-jitter",
                 "0", ready=lambda s: ctl.exists() and len(ready(ctl)) == 2) as srv:
        served = answers_per_worker(srv.url, 180, keep_alive)
    assert max(served.values()) <= 50, served
    assert sorted(served.values()).count(50) >= 2, served


def test_max_requests_under_concurrency_overshoots_by_at_most_the_other_connections(
        appdir: Path) -> None:
    """Requests already on the wire of other keep-alive connections when the limit is hit
    are answered (with connection: close), never refused: at most one per connection."""
    connections = 4
    served: Counter[str] = Counter()
    errors: list[Exception] = []
    lock = threading.Lock()

    def client(url: str) -> None:
        try:
            with httpx.Client(timeout=10) as session:
                for _ in range(60):
                    pid = session.get(url + "/pid").text
                    with lock:
                        served[pid] += 1
        except httpx.HTTPError as exc:
            errors.append(exc)

    ctl = appdir / "octo.ctl"
    with serving(appdir, "--workers", "2", "--max-requests", "50", "--max-requests-jitter",
                 "0", ready=lambda s: ctl.exists() and len(ready(ctl)) == 2) as srv:
        threads = [threading.Thread(target=client, args=(srv.url,)) for _ in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert not errors, errors
    assert sum(served.values()) == connections * 60
    assert max(served.values()) <= 50 + connections - 1, served


def test_no_error_when_connecting_during_a_reload_loop(appdir: Path) -> None:
    """Reloads keep the listening socket: new connections during back-to-back reloads are
    all answered (none refused, none reset)."""
    ctl = appdir / "octo.ctl"
    with serving(appdir, "--workers", "2") as srv:
        wait_for(lambda: len(ready(ctl)) == 2, 20, "two ready workers")
        failures: list[Exception] = []
        answered = 0
        for generation in range(1, 4):
            assert control_request(str(ctl), {"cmd": "reload"})["ok"]
            while status(ctl)["reload"]["state"] == "running":
                try:
                    httpx.get(srv.url + "/", timeout=10)
                    answered += 1
                except httpx.HTTPError as exc:
                    failures.append(exc)
            assert status(ctl)["reload"] == {"generation": generation, "state": "done",
                                             "error": ""}
    assert not failures, failures
    assert answered > 0
