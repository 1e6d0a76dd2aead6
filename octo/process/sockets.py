"""The listening sockets: bound once by the master (or by each worker with --reuse-port),
from --host/--port, --uds or an inherited --fd."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from octo.config import Config

if TYPE_CHECKING:
    from octo.runtime.rundir import SocketPlace


def describe(sock: socket.socket, tls: bool) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def bind_master_sockets(config: Config) -> tuple[list[socket.socket], SocketPlace | None]:
    """The master's listening socket(s), and for --uds the place it bound (unlinked when
    the server stops listening)."""
    if config.uds is not None and config.fd is None:
        sock, place = _bind_uds(config.uds, config.backlog)
        return [sock], place
    return bind_sockets(config), None


def bind_sockets(config: Config, reuse_port: bool = False) -> list[socket.socket]:
    """Create the listening socket(s) named by --fd, --uds or --host/--port."""
    if config.fd is not None:
        sock = socket.socket(fileno=config.fd)
        sock.setblocking(False)
        return [sock]
    if config.uds is not None:
        sock, place = _bind_uds(config.uds, config.backlog)
        place.close()
        return [sock]
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"octo: cannot bind {config.host}:{config.port}: {exc.strerror}") \
            from None
    sock.listen(config.backlog)
    sock.setblocking(False)
    return [sock]


def _bind_uds(path: str, backlog: int) -> tuple[socket.socket, SocketPlace]:
    """The --uds socket, mode 0666 like uvicorn's: an old socket of this user at the path is
    replaced, anything else (another user's file, a non-socket) stops the start with one
    line. The place knows the inode bound, to unlink only this socket later."""
    from octo.runtime.rundir import RuntimeDirError, SocketPlace

    try:
        place = SocketPlace.at(path)
        try:
            sock = place.listen(backlog, "--uds", mode=0o666, replace_live=True)
        except BaseException:
            place.close()
            raise
    except FileNotFoundError:
        raise SystemExit(f"octo: cannot bind --uds {path}: its directory does not "
                         "exist") from None
    except RuntimeDirError as exc:
        raise SystemExit(f"octo: {exc}") from None
    sock.setblocking(False)
    return sock, place
