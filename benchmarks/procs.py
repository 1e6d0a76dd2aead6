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
SETTLE = 0.5  # seconds between "accepts connections" and the idle RSS sample
STOP_TIMEOUT = 5.0  # seconds after SIGTERM before SIGKILL


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
def running(launch: Launch, host: str, port: int) -> Iterator[Running]:
    """Run the server for the block; its process tree is stopped however the block ends."""
    argv = launch.argv if launch.cpu is None else ["taskset", "-c", str(launch.cpu),
                                                   *launch.argv]
    with launch.log.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=launch.cwd, env=dict(launch.env),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Running(proc, host, port, launch.log)
    try:
        wait_ready(server)
        yield server
    finally:
        stop_tree(proc)


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


def check_response(server: Running, probe: Probe) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
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


def tree_rss(pid: int) -> int:
    """Resident set size in bytes of *pid* and all its descendants."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by *pid* and its live descendants."""
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (it stops its own workers); SIGKILL what is left of its process tree
    after STOP_TIMEOUT."""
    try:
        root = psutil.Process(proc.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    with contextlib.suppress(psutil.NoSuchProcess):
        if tree:
            tree[0].terminate()
    _, alive = psutil.wait_procs(tree, timeout=STOP_TIMEOUT)
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
