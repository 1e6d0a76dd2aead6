"""The control socket: a Unix socket speaking one JSON object per line.

Requests: ``{"cmd": "status"}``, ``{"cmd": "reload"}``, ``{"cmd": "stop"}``,
``{"cmd": "scale", "workers": N}``. Each gets one JSON line back and the connection closes.
The master serves it from its own loop, one short exchange at a time.

Both ends check who is at the other one (``SO_PEERCRED``): the master answers only its own
user and root, and ``octo status|stop|...`` talk only to a server run by their own user or
root. The socket is created mode 0600, in the server's private runtime directory unless
--control/--pid/--uds put it elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import Any, Protocol

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

REQUEST_TIMEOUT = 1.0


class Controlled(Protocol):
    def status(self) -> dict[str, Any]: ...
    def reload(self) -> None: ...
    def stop(self, graceful: bool) -> None: ...
    def scale(self, count: int) -> None: ...


def socket_name(port: int | None) -> str:
    """The control socket's name in the runtime directory (one per port)."""
    return control_socket_name(port)


def explicit_path(control: str | None = None, uds: str | None = None,
                  pid: str | None = None) -> str | None:
    """The path the user chose: --control, else next to --pid or --uds, else None (the
    runtime directory)."""
    if control:
        return control
    if pid:
        return f"{pid}.ctl"
    if uds:
        return f"{uds}.ctl"
    return None


def default_path(port: int | None = None, uds: str | None = None, pid: str | None = None,
                 runtime_dir: str | None = None) -> str:
    """Where the control socket lives when --control is not given: next to --pid or --uds,
    else one per port in the runtime directory."""
    return explicit_path(None, uds, pid) or os.path.join(runtime_dir or default_root(),
                                                         socket_name(port))


class ControlServer:
    def __init__(self, where: str | SocketPlace, target: Controlled) -> None:
        self.place = SocketPlace.at(where) if isinstance(where, str) else where
        self.path = self.place.path
        self.target = target
        self.refused: set[int] = set()  # uids already logged as refused
        try:
            self.sock = self.place.listen(16)
        except RuntimeDirError as exc:
            self.place.close()
            raise SystemExit(f"octo: {exc}") from None
        self.sock.setblocking(False)

    def handle_one(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            if not self._trusted(conn):
                return
            conn.settimeout(REQUEST_TIMEOUT)
            try:
                reply = self.dispatch(json.loads(_read_line(conn)))
            except (OSError, ValueError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

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
        if cmd == "status":
            return {"ok": True, **self.target.status()}
        if cmd == "reload":
            self.target.reload()
        elif cmd == "stop":
            self.target.stop(graceful=not request.get("fast", False))
        elif cmd == "scale":
            count = int(request["workers"])
            if count < 1:
                return {"ok": False, "error": "workers must be at least 1"}
            self.target.scale(count)
        else:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        error_log.info("control: %s", cmd)
        return {"ok": True}

    def close(self) -> None:
        self.sock.close()
        self.place.remove()
        self.place.close()


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > 65536:
            raise ValueError("request too long")
    return data


class NotRunning(Exception):
    """No server answers on the control socket."""


def locate(port: int | None, uds: str | None = None, pid: str | None = None,
           control: str | None = None, runtime_dir: str | None = None) -> SocketPlace:
    """Client side: the control socket the server with these settings binds, found the
    same way the server finds it. RuntimeDirError for an unsafe runtime directory,
    NotRunning when there is none."""
    path = explicit_path(control, uds, pid)
    if path is not None:
        return _place_at(path)
    root = runtime_dir or default_root()
    try:
        directory = RuntimeDir.open(root)
    except FileNotFoundError:
        raise NotRunning(f"no octo server is running (nothing answers on "
                         f"{os.path.join(root, socket_name(port))})") from None
    return directory.socket(socket_name(port), owns_fd=True)  # held for this request only


def _place_at(path: str) -> SocketPlace:
    try:
        return SocketPlace.at(path)
    except FileNotFoundError:
        raise NotRunning(f"no octo server is running (nothing answers on {path})") from None


def request(where: str | SocketPlace, message: dict[str, Any],
            timeout: float = 5.0) -> dict[str, Any]:
    """Client side, used by ``octo status|reload|stop|scale``: ForeignPeer (a
    RuntimeDirError) when the socket is served by another user, NotRunning when nothing
    answers."""
    place = _place_at(where) if isinstance(where, str) else where
    try:
        try:
            sock = place.connect(timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunning(f"no octo server is running (nothing answers on "
                             f"{place.path})") from exc
        with sock:
            sock.sendall(json.dumps(message).encode() + b"\n")
            reply: dict[str, Any] = json.loads(_read_line(sock))
            return reply
    finally:
        place.close()
