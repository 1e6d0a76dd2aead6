"""Start a server process pinned to one core, wait for it, measure it, stop its whole tree."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil

READY_TIMEOUT = 20.0  # seconds a server gets to accept connections
SETTLE = 0.5  # seconds between the pre-flight response and the idle RSS sample
STOP_TIMEOUT = 5.0  # seconds after SIGTERM before SIGKILL
PROBE_TIMEOUT = 10.0  # seconds the pre-flight request may take (a worker may still import)


class ServerError(RuntimeError):
    """The server failed to start, to answer correctly, or died; the message says which."""


@dataclasses.dataclass(slots=True)
class Launch:
    argv: list[str]
    env: Mapping[str, str]
    cwd: Path
    log: Path  # stdout and stderr of the server
    cpu: int | None = None


@dataclasses.dataclass(slots=True)
class Running:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        return file_tail(self.log)

    def raise_if_dead(self, when: str) -> None:
        if not self.alive():
            raise ServerError(self.with_log(f"died {when}: exit status {self.proc.returncode}"))

    def with_log(self, message: str) -> str:
        tail = self.log_tail()
        return f"{message}\n{tail}" if tail else message


def file_tail(path: Path, lines: int = 30) -> str:
    """The last *lines* lines of a log file, '' if it is empty or missing."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def free_port(host: str) -> int:
    """A port nothing listens on right now (the kernel's pick for an ephemeral bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(launch: Launch, host: str, port: int, *, ready_timeout: float = READY_TIMEOUT,
            stop_timeout: float = STOP_TIMEOUT) -> Iterator[Running]:
    """Run the server for the block; its process tree is stopped however the block ends.
    (A server under valgrind needs far longer than the defaults to start and to stop.)"""
    argv = launch.argv if launch.cpu is None else ["taskset", "-c", str(launch.cpu),
                                                   *launch.argv]
    with launch.log.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=launch.cwd, env=dict(launch.env),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Running(proc, host, port, launch.log)
    try:
        wait_ready(server, ready_timeout)
        yield server
    finally:
        stop_tree(proc, stop_timeout)


def wait_ready(server: Running, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.raise_if_dead("during startup")
        with contextlib.suppress(OSError), socket.create_connection(
                (server.host, server.port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServerError(server.with_log(f"not accepting connections after {timeout:.0f} s"))


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    """One request sent before any load, and what its response must show."""

    method: str
    path: str
    body: bytes
    headers: Mapping[str, str]
    status: int
    contains: bytes


def check_response(server: Running, probe: Probe,
                   timeout: float = PROBE_TIMEOUT) -> dict[str, str]:
    """Send the probe; raise ServerError unless the answer is as expected, else return its
    headers (lower-case names)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    what = f"pre-flight {probe.method} {probe.path}"
    try:
        conn.request(probe.method, probe.path, body=probe.body or None,
                     headers=dict(probe.headers))
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ServerError(server.with_log(f"{what} failed: {exc!r}")) from exc
    finally:
        conn.close()
    if response.status != probe.status or probe.contains not in data:
        raise ServerError(f"{what}: status {response.status}, body {data[:200]!r} "
                          f"(wanted {probe.status} containing {probe.contains!r})")
    return {name.lower(): value for name, value in response.getheaders()}


def tree(pid: int) -> list[psutil.Process]:
    """*pid* and its live descendants (empty when *pid* is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def serving_pid(server: Running, timeout: float = 2.0) -> int | None:
    """The process in the server's tree that accepts and serves connections: the worker of a
    pre-forked server, else the server itself. Found by opening one idle connection (no
    request) and looking for the process holding its far end; None if none did in time."""
    try:
        sock = socket.create_connection((server.host, server.port), timeout=timeout)
    except OSError:
        return None
    with sock:
        client_port = int(sock.getsockname()[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = _holder(server, client_port)
            if pid is not None:
                return pid
            time.sleep(0.02)
    return None


def _holder(server: Running, client_port: int) -> int | None:
    for proc in tree(server.proc.pid):
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="tcp"):
                if (conn.laddr and conn.laddr.port == server.port and conn.raddr
                        and conn.raddr.port == client_port):
                    return int(proc.pid)
    return None


def rss_by_pid(pid: int) -> dict[int, int]:
    """Resident set size in bytes of *pid* and each of its descendants."""
    sizes = {}
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            sizes[int(proc.pid)] = int(proc.memory_info().rss)
    return sizes


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by *pid* and its live descendants."""
    total = 0.0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def stop_tree(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the server (it stops its own workers); SIGKILL what is left of its process tree
    after *timeout* seconds."""
    processes = tree(proc.pid)
    with contextlib.suppress(psutil.NoSuchProcess):
        if processes:
            processes[0].terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT)


# Settings a server would read from the environment (OCTO_ACCESS_LOG, WEB_CONCURRENCY for
# uvicorn's workers...) or that slow Python down: never inherited by a measured server.
_SKEWING_PREFIXES = ("OCTO_", "UVICORN_", "GRANIAN_")
_SKEWING_NAMES = frozenset({"WEB_CONCURRENCY", "PYTHONDEVMODE", "PYTHONASYNCIODEBUG",
                            "PYTHONTRACEMALLOC", "PYTHONMALLOC", "PYTHONPROFILEIMPORTTIME"})


def server_env(apps_dir: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The parent environment minus server settings, with the apps importable."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(_SKEWING_PREFIXES) and key not in _SKEWING_NAMES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(apps_dir), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
