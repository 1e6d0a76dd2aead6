"""Run ``octo serve`` as a real subprocess on a socket made by the test process.

The test process binds 127.0.0.1 port 0 and listens, hands the socket to the server with
``--fd`` (so there is no port race), waits until the server answers HTTP, and always stops it:
SIGTERM, then SIGKILL after a timeout. stderr (the server log) and stdout go to a file,
readable at any time with :meth:`Server.log` (until the ``with`` block ends)::

    from server import run_server

    with run_server("examples.hello.app:app", "--no-access-log") as srv:
        httpx.get(srv.url + "/")
        assert "Listening on" in srv.log()
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Deadlines that only end a hung test: the Django example (migrate, then boot) took over 30 s
# to answer with the machine at load average 16.
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
PROBE_TIMEOUT = 0.5


class ServerError(AssertionError):
    """The server did not start, did not stop in time, or exited badly; carries the log."""


@dataclasses.dataclass
class Server:
    """A running ``octo serve`` subprocess."""

    url: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    command: list[str]
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self, since: int = 0) -> str:
        """The server's stderr so far (from byte offset *since*)."""
        with self.log_path.open("rb") as fh:
            fh.seek(since)
            return fh.read().decode("utf-8", "replace")

    def log_size(self) -> int:
        """The current length of the log, to pass as ``since`` to :meth:`log` later."""
        return self.log_path.stat().st_size

    def wait_for_log(self, text: str, timeout: float = 15.0, since: int = 0) -> str:
        """Wait until *text* appears in the log; return the log or raise ServerError."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log(since)
            if text in log:
                return log
            if time.monotonic() > deadline:
                raise ServerError(f"{text!r} not in the server log after {timeout}s:\n{log}")
            time.sleep(0.02)

    @property
    def name(self) -> str:
        """The command line, with the interpreter shortened, for messages."""
        return " ".join(["python", *self.command[1:]])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to *timeout*, then SIGKILL; return the exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(timeout)
        assert self.process.returncode is not None, "octo serve did not exit"
        return self.process.returncode


ServerFactory = Callable[..., Server]
"""The ``octo_server`` fixture: ``octo_server("module:app", *args, **run_command_kwargs)``."""


def read_until_closed(sock: socket.socket, limit: float = 10.0, reset: bool = False) -> bytes:
    """Everything the server sends until it closes the connection. Fails the test when it
    is still open after *limit* seconds, or when it is reset instead of closed (unless
    *reset*: the caller allows it, and gets what came before)."""
    sock.settimeout(limit)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"connection still open after {limit}s; got "
                                 f"{out[:300]!r}") from None
        except ConnectionResetError:
            if reset:
                return out
            raise AssertionError(f"reset instead of closed; got {out[:300]!r}") from None
        if not chunk:
            return out
        out += chunk


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to an ephemeral port and listening, inheritable by a child."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _answers(url: str, path: str) -> bool:
    """True once the server gives any HTTP response on *path*.

    With http.client, not httpx: each ``httpx.get`` builds a client and its TLS context,
    loading the CA bundle (70 ms of CPU, 0.3 s on a busy 2-core machine, measured), and a
    booting server is probed every 50 ms, on the CPU it boots on.
    """
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                            timeout=PROBE_TIMEOUT)
    try:
        connection.request("GET", path)
        connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return True


def workers_listening(server: Server, count: int) -> bool:
    """True once *count* distinct workers have logged that they listen."""
    return len(set(re.findall(r"Listening on .* \(worker (\d+)\)", server.log()))) >= count


def _expected_workers(args: Sequence[str]) -> int:
    """The ``--workers N`` among *args* (1 without it)."""
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--workers" and value.isdigit():
            return int(value)
    return 1


def octo_command(app: str) -> list[str]:
    """``octo serve APP`` with the interpreter running the tests."""
    return [sys.executable, "-m", "octo", "serve", app]


def run_server(app: str, *args: str, **kwargs: Any) -> contextlib.AbstractContextManager[Server]:
    """Start ``python -m octo serve APP --fd N *args`` and yield a :class:`Server`.

    The keyword arguments are those of :func:`run_command`.
    """
    return run_command(octo_command(app), *args, **kwargs)


@contextlib.contextmanager
def run_command(command: Sequence[str], *args: str, env: Mapping[str, str] | None = None,
                cwd: Path | str = ROOT, ready_path: str = "/",
                ready: Callable[[Server], bool] | None = None,
                startup_timeout: float = STARTUP_TIMEOUT, stop_timeout: float = STOP_TIMEOUT,
                expect_clean_exit: bool = True,
                sock: socket.socket | None = None) -> Iterator[Server]:
    """Run ``*command --fd N *args``, a command that ends up serving with octo on fd N.

    *sock* is the listening socket to hand over (one from :func:`listening_socket`, when the
    test needs the port before the server starts); by default a new one is made; it is
    closed in this process either way. *env* is added to (and overrides) the current
    environment. The server counts as ready
    when *ready* returns true, by default when a GET of *ready_path* gets any HTTP response
    and every one of ``--workers N`` logged that it listens (a test counting the workers
    that answered would otherwise race a worker still booting on a slow machine).
    On leaving the block the server is stopped (SIGTERM, SIGKILL after *stop_timeout*);
    if the block itself did not raise and *expect_clean_exit* is set, the server must then
    have exited with status 0 on SIGTERM alone. stdout and stderr both go to the log.
    """
    sock = sock or listening_socket()
    host, port = sock.getsockname()[:2]
    fd = sock.fileno()
    argv = [*command, "--fd", str(fd), *args]
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with contextlib.ExitStack() as cleanup:
        log_dir = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="octo-it-"))
        log_path = Path(log_dir) / "server.log"
        with log_path.open("wb") as log_file:
            try:
                process = subprocess.Popen(argv, cwd=cwd, env=child_env, pass_fds=(fd,),
                                           stdin=subprocess.DEVNULL, stdout=log_file,
                                           stderr=subprocess.STDOUT)
            finally:
                # The child has its own copy; closing ours means a dead server refuses
                # connections instead of leaving them queued in our backlog.
                sock.close()
        server = Server(f"http://{host}:{port}", host, port, process, log_path, argv)
        try:
            workers = _expected_workers(args)
            _wait_ready(server, ready or (lambda s: _answers(s.url, ready_path)
                                          and workers_listening(s, workers)),
                        startup_timeout)
            yield server
        except BaseException:
            server.stop(stop_timeout)
            raise
        status = server.stop(stop_timeout)
        if expect_clean_exit:
            if server.killed:
                raise ServerError(f"{server.name} ignored SIGTERM for {stop_timeout}s and was "
                                  f"killed; log:\n{server.log()}")
            if status != 0:
                raise ServerError(f"{server.name} exited with status {status} on SIGTERM; "
                                  f"log:\n{server.log()}")


def _wait_ready(server: Server, ready: Callable[[Server], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not server.alive():
            raise ServerError(f"{server.name} exited with status {server.process.returncode} "
                              f"before it was ready; log:\n{server.log()}")
        if ready(server):
            return
        if time.monotonic() > deadline:
            raise ServerError(f"{server.name} did not answer within {timeout}s; "
                              f"log:\n{server.log()}")
        time.sleep(0.05)
