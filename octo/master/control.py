"""The control socket: a Unix socket speaking one JSON object per line.

Requests: ``{"cmd": "status"}``, ``{"cmd": "reload"}``, ``{"cmd": "stop"}``,
``{"cmd": "scale", "workers": N}``. Each gets one JSON line back and the connection closes,
except a reload or stop sent with ``"wait": true``: the master answers at once, keeps the
connection, and for a reload sends a second line when the reload has ended (every worker
runs the new generation, or it was abandoned); a stop's connection is closed by the
master's exit. The master serves the socket from its own loop, one short exchange at a time.

Both ends check who is at the other one (``SO_PEERCRED``): the master answers only its own
user and root, and ``octo status|stop|...`` talk only to a server run by their own user or
root. The socket is created mode 0600, in the server's private runtime directory unless
--control/--pid/--uds put it elsewhere. Where it is is decided by :func:`control_address`,
for the server and its clients alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from typing import Any, Protocol

from octo.config import Config
from octo.logs import error_log
from octo.runtime.rundir import (
    RuntimeDir,
    RuntimeDirError,
    SocketPlace,
    default_root,
    peer_credentials,
    trusted_uid,
)
from octo.runtime.shmfiles import control_socket_name

REQUEST_TIMEOUT = 1.0  # server side: a client has this long to send its request line
REPLY_TIMEOUT = 5.0  # client side: the master answers within this (it serves between passes)
RELOAD_WAIT = 60.0  # client side: default wait for a reload to end
STOP_MARGIN = 10.0  # client side: waited beyond the master's own stop deadline
MAX_WAITERS = 64  # connections held open for --wait at once
PER_PASS = 8  # control connections served per pass of the master's loop


class Refused(Exception):
    """A command the server will not carry out; the client gets the message as its error."""


class Controlled(Protocol):
    def status(self) -> dict[str, Any]: ...
    def reload(self) -> int: ...
    def stop(self, graceful: bool) -> float: ...
    def scale(self, count: int) -> None: ...
    def reload_outcome(self, generation: int) -> tuple[bool, str] | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class ControlAddress:
    """Where a server's control socket is: *path* when the user chose the place, else
    *name* in the runtime directory *root*. *chosen_by* names the setting that chose the
    path ("" for the runtime directory)."""

    path: str | None
    root: str
    name: str
    chosen_by: str

    @property
    def shown(self) -> str:
        return self.path or os.path.join(self.root, self.name)


def control_address(config: Config, port: int | None = None) -> ControlAddress:
    """The control socket of the server *config* describes: --control, else next to --pid,
    else next to --uds, else one per port in --runtime-dir. ``octo serve`` passes the port it
    actually bound (--fd, --port 0); the clients build *config* from the same sources (flags,
    ``OCTO_*``, ``[tool.octo]``), so both ends always agree."""
    root = config.runtime_dir or default_root()
    name = socket_name(config.port if port is None else port)
    if config.control:
        return ControlAddress(config.control, root, name, "given by --control")
    if config.pid:
        return ControlAddress(f"{config.pid}.ctl", root, name, f"next to --pid {config.pid}")
    if config.uds:
        return ControlAddress(f"{config.uds}.ctl", root, name, f"next to --uds {config.uds}")
    return ControlAddress(None, root, name, "")


def socket_name(port: int | None) -> str:
    """The control socket's name in the runtime directory (one per port)."""
    return control_socket_name(port)


def default_path(port: int | None = None, uds: str | None = None, pid: str | None = None,
                 runtime_dir: str | None = None) -> str:
    """The control socket's path for these settings (see control_address)."""
    return control_address(Config(port=port or 8000, uds=uds, pid=pid,
                                  runtime_dir=runtime_dir), port).shown


@dataclasses.dataclass(slots=True)
class Waiter:
    """A client waiting for a reload (*generation*) or a stop (None) to end."""

    conn: socket.socket
    generation: int | None


class ControlServer:
    def __init__(self, where: str | SocketPlace, target: Controlled) -> None:
        self.place = SocketPlace.at(where) if isinstance(where, str) else where
        self.path = self.place.path
        self.target = target
        self.refused: set[int] = set()  # uids already logged as refused
        self.waiters: list[Waiter] = []
        try:
            self.sock = self.place.listen(16)
        except RuntimeDirError as exc:
            self.place.close()
            raise SystemExit(f"octo: {exc}") from None
        self.sock.setblocking(False)

    def handle_pending(self) -> None:
        """Serve the connections waiting now, a few at most (the loop has other work)."""
        for _ in range(PER_PASS):
            if not self.handle_one():
                return

    def handle_one(self) -> bool:
        """Serve one connection; False when none was waiting."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return False
        keep = False
        try:
            if self._trusted(conn):
                keep = self._converse(conn)
        finally:
            if not keep:
                conn.close()
        return True

    def _converse(self, conn: socket.socket) -> bool:
        """Answer one request; True when the connection is kept for a --wait."""
        conn.settimeout(REQUEST_TIMEOUT)
        try:
            request = json.loads(_read_line(conn, time.monotonic() + REQUEST_TIMEOUT))
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
            reply = self.dispatch(request)
        except (OSError, ValueError) as exc:
            request, reply = {}, {"ok": False, "error": f"bad request: {exc}"}
        if reply.get("waiting") and len(self.waiters) >= MAX_WAITERS:
            reply = {"ok": False, "error": f"{MAX_WAITERS} clients already wait on this "
                                           "server; try again without --wait"}
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            return False
        if not reply.get("waiting"):
            return False
        generation = reply.get("generation") if request.get("cmd") == "reload" else None
        self.waiters.append(Waiter(conn, generation))
        return True

    def _trusted(self, conn: socket.socket) -> bool:
        """Only this user and root may command the server; others get a closed socket."""
        pid, uid = peer_credentials(conn)
        if trusted_uid(uid):
            return True
        if uid not in self.refused:
            self.refused.add(uid)
            error_log.warning("control: refused a connection from uid %d (pid %d) on %s: "
                              "only uid %d and root may control this server (further "
                              "refusals of uid %d are not logged)", uid, pid, self.path,
                              os.geteuid(), uid)
        return False

    def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        reply: dict[str, Any] = {"ok": True}
        try:
            if cmd == "status":
                return {"ok": True, **self.target.status()}
            if cmd == "reload":
                reply["generation"] = self.target.reload()
            elif cmd == "stop":
                reply["deadline"] = self.target.stop(graceful=not request.get("fast", False))
            elif cmd == "scale":
                count = request.get("workers")
                if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                    return {"ok": False, "error": "workers must be a whole number, at least 1"}
                self.target.scale(count)
            else:
                return {"ok": False, "error": f"unknown command {cmd!r}"}
        except Refused as exc:
            error_log.warning("control: %s refused: %s", cmd, exc)
            return {"ok": False, "error": str(exc)}
        error_log.info("control: %s", cmd)
        if request.get("wait") and cmd in ("reload", "stop"):
            reply["waiting"] = True
        return reply

    def settle(self) -> None:
        """Send their second line to the clients whose reload has ended."""
        for waiter in list(self.waiters):
            if waiter.generation is None:
                continue  # a stop: the master's exit closes the connection
            outcome = self.target.reload_outcome(waiter.generation)
            if outcome is None:
                continue
            ok, message = outcome
            reply: dict[str, Any] = {"ok": ok, "generation": waiter.generation, "done": ok}
            if not ok:
                reply["error"] = message
            self.waiters.remove(waiter)
            with contextlib.suppress(OSError):
                waiter.conn.sendall(json.dumps(reply).encode() + b"\n")
            waiter.conn.close()

    def close_inherited(self) -> None:
        """In a forked worker: drop the master's control sockets (a waiting client must see
        the master's exit, not a copy held by a worker), leaving the files alone."""
        self.sock.close()
        self.place.close()
        for waiter in self.waiters:
            waiter.conn.close()
        self.waiters.clear()

    def close(self) -> None:
        """At the master's exit. A stop's waiters are answered by the exit itself: their
        descriptors are detached, so the interpreter's shutdown cannot close them early
        and the client sees the end of file only once the master process is gone."""
        self.settle()
        for waiter in self.waiters:
            waiter.conn.detach()
        self.waiters.clear()
        self.sock.close()
        self.place.remove()
        self.place.close()


def _read_line(conn: socket.socket, deadline: float | None = None) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        if deadline is not None:
            conn.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > 65536:
            raise ValueError("request too long")
    return data


class NotRunning(Exception):
    """No server answers on the control socket."""


class NoAnswer(Exception):
    """The server did not answer in time, or not in octo's control protocol."""


def locate(address: ControlAddress) -> SocketPlace:
    """Client side: the control socket at *address* (see control_address). RuntimeDirError
    for an unsafe runtime directory, NotRunning when there is none."""
    if address.path is not None:
        return _place_at(address.path, address)
    try:
        directory = RuntimeDir.open(address.root)
    except FileNotFoundError:
        raise NotRunning(_not_running(address.shown, address)) from None
    return directory.socket(address.name, owns_fd=True)  # held for this request only


def _not_running(path: str, address: ControlAddress | None) -> str:
    why = f", the control socket {address.chosen_by}" if address and address.chosen_by else ""
    return f"no octo server is running (nothing answers on {path}{why})"


def _place_at(path: str, address: ControlAddress | None = None) -> SocketPlace:
    try:
        return SocketPlace.at(path)
    except FileNotFoundError:
        raise NotRunning(_not_running(path, address)) from None


def request(where: str | SocketPlace, message: dict[str, Any], timeout: float = REPLY_TIMEOUT,
            wait_timeout: float | None = None,
            address: ControlAddress | None = None) -> dict[str, Any]:
    """Client side, used by ``octo status|reload|stop|scale``: send *message*, return the
    reply. With ``message["wait"]``, return the second answer instead: a reload's outcome,
    or ``{"ok": True, "exited": True}`` once a stopping master has exited; *wait_timeout*
    bounds that wait (default: RELOAD_WAIT, or the master's own stop deadline plus
    STOP_MARGIN). Raises ForeignPeer (a RuntimeDirError) when the socket is served by
    another user, NotRunning when nothing answers, NoAnswer on a timeout."""
    place = _place_at(where) if isinstance(where, str) else where
    try:
        try:
            sock = place.connect(timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunning(_not_running(place.path, address)) from exc
        except TimeoutError:
            raise NoAnswer(f"{place.path} did not accept within {timeout:g} s") from None
        with sock:
            sock.sendall(json.dumps(message).encode() + b"\n")
            reply = _reply(sock, place.path, time.monotonic() + timeout,
                           f"no answer from {place.path} within {timeout:g} s")
            if not reply.get("waiting"):
                return reply
            return _wait(sock, place.path, message, reply, wait_timeout)
    finally:
        place.close()


def _wait(sock: socket.socket, path: str, message: dict[str, Any], ack: dict[str, Any],
          wait_timeout: float | None) -> dict[str, Any]:
    cmd = message.get("cmd")
    if wait_timeout is None:
        deadline = ack.get("deadline")
        wait_timeout = float(deadline) + STOP_MARGIN if cmd == "stop" and isinstance(
            deadline, (int, float)) else RELOAD_WAIT
    late = (f"the server has not stopped after {wait_timeout:g} s (it is still draining; "
            "`octo status` shows it)" if cmd == "stop" else
            f"the reload has not ended after {wait_timeout:g} s (it carries on; `octo "
            "status` shows the workers' generations)")
    final = _reply(sock, path, time.monotonic() + wait_timeout, late, eof_ok=True)
    if final:
        return final
    if cmd == "stop":
        return {"ok": True, "exited": True}
    return {"ok": False, "error": "the server exited before the reload ended"}


def _reply(sock: socket.socket, path: str, deadline: float, late: str,
           eof_ok: bool = False) -> dict[str, Any]:
    try:
        line = _read_line(sock, deadline)
    except TimeoutError:
        raise NoAnswer(late) from None
    except (OSError, ValueError) as exc:
        raise NoAnswer(f"{path}: the connection failed: {exc}") from None
    if not line and eof_ok:
        return {}
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise NoAnswer(f"{path} did not answer in octo's control protocol"
                       + (" (it closed the connection)" if not line else ""))
    return reply
