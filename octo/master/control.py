"""The control socket: a Unix socket speaking one JSON object per line.

Requests: ``{"cmd": "status"}``, ``{"cmd": "reload"}``, ``{"cmd": "stop"}``,
``{"cmd": "scale", "workers": N}``. Each gets one JSON line back and the connection closes.
The master serves it from its own loop, one short exchange at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from typing import Any, Protocol

from octo.logs import error_log

REQUEST_TIMEOUT = 1.0


class Controlled(Protocol):
    def status(self) -> dict[str, Any]: ...
    def reload(self) -> None: ...
    def stop(self, graceful: bool) -> None: ...
    def scale(self, count: int) -> None: ...


def default_path(port: int | None = None, uds: str | None = None, pid: str | None = None) -> str:
    """Where the control socket lives when --control is not given: next to --pid or --uds,
    else one per port in the temp directory."""
    if pid:
        return f"{pid}.ctl"
    if uds:
        return f"{uds}.ctl"
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(base, f"octo-{port}.ctl")


class ControlServer:
    def __init__(self, path: str, target: Controlled) -> None:
        self.path = path
        self.target = target
        if os.path.exists(path):
            if _answers(path):
                raise SystemExit(f"octo: another server already answers on {path}")
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o600)
        self.sock.listen(16)
        self.sock.setblocking(False)

    def handle_one(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(REQUEST_TIMEOUT)
            try:
                reply = self.dispatch(json.loads(_read_line(conn)))
            except (OSError, ValueError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

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
        with contextlib.suppress(OSError):
            os.unlink(self.path)


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


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class NotRunning(Exception):
    """No server answers on the control socket."""


def request(path: str, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Client side, used by ``octo status|reload|stop|scale``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunning(f"no octo server is running (nothing answers on {path})") from exc
        sock.sendall(json.dumps(message).encode() + b"\n")
        reply: dict[str, Any] = json.loads(_read_line(sock))
        return reply
