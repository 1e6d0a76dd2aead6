"""The server's private runtime directory, and the Unix sockets that live in or beside it.

Every runtime file of a server (its shared-memory tables, its task socket and, unless
``--control``/``--pid``/``--uds`` put it elsewhere, its control socket) lives in one
directory that belongs to the server's user and that nobody else may enter (mode 0700):
``--runtime-dir``, else ``$XDG_RUNTIME_DIR/octo`` when that directory is private to this
user, else ``/dev/shm/octo-<uid>`` (tables must be in shared memory to be fast), else
``octo-<uid>`` in the temp directory. ``octo status|stop|...`` resolve it the same way.

The master creates the directory (or adopts it after checking that it is a real directory
of its own user with no group/other access, and refuses to start otherwise) and holds it
open. Workers inherit that descriptor over fork: every file is created through it
(``openat`` with ``O_EXCL|O_NOFOLLOW``, then checked with ``fstat``) and every socket is
bound or reached through ``/proc/self/fd/N/name``, so a symlink or another directory
swapped in at the path after the check changes nothing for a running server.

Trusted are the server's user and root. Whoever else can neither list, create nor open
anything in the directory, and a socket reached anyway (through a link, a wrong chmod)
serves only peers whose ``SO_PEERCRED`` uid is the server's or root's; clients likewise
talk only to a server run by their own user or root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket
import stat
import struct
import tempfile
from collections.abc import Iterator

PRIVATE_BITS = 0o077  # no group/other access at all
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_ADVICE = "remove it, or choose another --runtime-dir"


class RuntimeDirError(Exception):
    """A runtime directory, file or socket that is not safe to use (a one-line message)."""


class ForeignPeer(RuntimeDirError):
    """The process at the other end of a Unix socket is neither this user nor root."""


def default_root() -> str:
    """Where this user's servers keep their runtime files when --runtime-dir is not given."""
    uid = os.geteuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    # An inherited XDG_RUNTIME_DIR of another user (sudo -E) is not ours: ignore it.
    if xdg and os.path.isabs(xdg) and _is_private_dir(xdg, uid):
        return os.path.join(xdg, "octo")
    if os.path.isdir("/dev/shm"):
        return f"/dev/shm/octo-{uid}"
    return os.path.join(tempfile.gettempdir(), f"octo-{uid}")


def _is_private_dir(path: str, uid: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & PRIVATE_BITS


def trusted_uid(uid: int) -> bool:
    """The peers a server or client talks to: its own user and root."""
    return uid in (os.geteuid(), 0)


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected Unix socket."""
    pid, uid, _ = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                _UCRED.size))
    return pid, uid


def check_server(sock: socket.socket, path: str) -> None:
    """Client side: raise ForeignPeer unless *sock*'s server runs as this user or root."""
    pid, uid = peer_credentials(sock)
    if not trusted_uid(uid):
        raise ForeignPeer(f"refusing {path}: it is served by uid {uid} (pid {pid}), which "
                          f"is neither this user (uid {os.geteuid()}) nor root")


def _proc_path(fd: int, name: str) -> str | None:
    """``/proc/self/fd/N/name``: *name* in the directory held open as *fd*, not by path."""
    proc = f"/proc/self/fd/{fd}"
    return f"{proc}/{name}" if os.path.isdir(proc) else None


class RuntimeDir:
    """A private directory, checked and held open; ``path`` is for messages."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.server_id = ""  # set by the master (``serve_from``)
        self.key = b""  # per-server secret: in memory only, inherited over fork
        self.task_socket = ""  # name of the task socket, when the server has task workers

    @classmethod
    def create(cls, path: str) -> RuntimeDir:
        """The master: make *path* (mode 0700) or adopt it if it is already ours."""
        path = os.path.abspath(path)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise RuntimeDirError(f"cannot create the runtime directory {path}: "
                                  f"{exc.strerror}") from None
        try:
            return cls(path, _open_private_dir(path, owners=(os.geteuid(),)))
        except FileNotFoundError:
            # Removed or renamed between mkdir() and open(): someone else can write its
            # parent directory.
            raise RuntimeDirError(f"runtime directory {path} vanished while it was being "
                                  f"opened: refusing to use it ({_ADVICE})") from None

    @classmethod
    def open(cls, path: str) -> RuntimeDir:
        """A client: the existing directory, if it is this user's (or root's) and private.

        FileNotFoundError when it does not exist (no server has run there)."""
        path = os.path.abspath(path)
        return cls(path, _open_private_dir(path, owners=(os.geteuid(), 0)))

    def join(self, name: str) -> str:
        return os.path.join(self.path, name)

    def open_file(self, name: str) -> int:
        """A private regular file of this user, created when missing: never through a
        link, never a file another user made or linked."""
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            try:
                fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=self.fd)
            except FileExistsError:
                fd = os.open(name, flags, dir_fd=self.fd)
        except OSError as exc:
            raise RuntimeDirError(f"cannot open {self.join(name)}: {exc.strerror}") from None
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1
                or st.st_mode & PRIVATE_BITS):
            os.close(fd)
            raise RuntimeDirError(f"refusing {self.join(name)}: not a private file of this "
                                  f"user (uid {st.st_uid}, mode {st.st_mode:o}, "
                                  f"{st.st_nlink} links)")
        return fd

    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive among this user's servers: binding a socket, sweeping stale ones."""
        return _flocked(self.fd)

    def remove(self, name: str) -> bool:
        """Unlink *name* if this user owns it; a symlink is removed, never followed."""
        try:
            if os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_uid != os.geteuid():
                return False
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            return False
        return True

    def socket(self, name: str, owns_fd: bool = False) -> SocketPlace:
        """The place of socket *name* in this directory (closing it closes the directory
        too when *owns_fd*)."""
        return SocketPlace(self.fd, name, self.join(name), owns_fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _open_private_dir(path: str, owners: tuple[int, ...]) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENOTDIR and os.path.islink(path):
            raise RuntimeDirError(f"runtime directory {path} is a symbolic link: refusing to "
                                  f"use it ({_ADVICE})") from None
        raise RuntimeDirError(f"cannot open the runtime directory {path}: "
                              f"{exc.strerror}") from None
    st = os.fstat(fd)
    problem = advice = None
    if st.st_uid not in owners:
        problem = f"belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})"
        advice = _ADVICE
    elif st.st_mode & PRIVATE_BITS:
        problem = f"has mode {stat.S_IMODE(st.st_mode):04o}: group/other may enter it"
        advice = "chmod 700 it, or choose another --runtime-dir"
    if problem is not None:
        os.close(fd)
        raise RuntimeDirError(f"runtime directory {path} {problem}: refusing to use it "
                              f"({advice})")
    return fd


class SocketPlace:
    """Where one Unix socket lives: its directory, held open, and its name there."""

    def __init__(self, dir_fd: int, name: str, path: str, owns_fd: bool) -> None:
        self.dir_fd = dir_fd
        self.name = name
        self.path = path
        self.owns_fd = owns_fd
        self.inode: tuple[int, int] | None = None  # of the socket this process bound

    @classmethod
    def at(cls, path: str) -> SocketPlace:
        """A path the user chose (--control, next to --pid/--uds): its directory as it is."""
        parent, name = os.path.split(os.path.abspath(path))
        try:
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise RuntimeDirError(f"cannot open the directory of {path}: "
                                  f"{exc.strerror}") from None
        return cls(fd, name, path, owns_fd=True)

    @property
    def address(self) -> str:
        """What bind() and connect() get: the name inside the held directory."""
        return _proc_path(self.dir_fd, self.name) or self.path

    def lstat(self) -> os.stat_result | None:
        try:
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def listen(self, backlog: int, what: str = "--control", mode: int = 0o600,
               replace_live: bool = False) -> socket.socket:
        """Bind a socket created with *mode* (0600: only this user may connect), replacing
        a stale socket of this user (or a live one with *replace_live*); refuse anything
        else found at the path."""
        with _flocked(self.dir_fd):  # no other server sweeps or binds here meanwhile
            existing = self.lstat()
            if existing is not None:
                self._replace(existing, what, replace_live)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # The mode comes from the umask at bind(): no chmod through a path that could
            # have been swapped for a link, and no moment with a wider mode.
            mask = os.umask(0o777 & ~mode)
            try:
                sock.bind(self.address)
            except OSError as exc:
                sock.close()
                raise RuntimeDirError(f"cannot bind {self.path}: {exc.strerror}") from None
            finally:
                os.umask(mask)
            bound = self.lstat()
            if bound is not None:
                self.inode = (bound.st_dev, bound.st_ino)
            sock.listen(backlog)
        return sock

    def _replace(self, st: os.stat_result, what: str, replace_live: bool) -> None:
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeDirError(f"{self.path} exists and is not a socket: refusing to "
                                  f"replace it (remove it, or choose another {what})")
        if st.st_uid != os.geteuid():
            raise RuntimeDirError(f"{self.path} belongs to uid {st.st_uid}: refusing to use "
                                  f"or replace it (remove it, or choose another {what})")
        if not replace_live and self.answers():
            raise RuntimeDirError(f"another server already answers on {self.path}")
        with contextlib.suppress(FileNotFoundError):  # gone meanwhile: as good
            os.unlink(self.name, dir_fd=self.dir_fd)  # left by a server that was killed

    def answers(self) -> bool:
        """Something listens on the socket (a refused connection: a dead server's)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            try:
                probe.connect(self.address)
            except OSError:
                return False
        return True

    def connect(self, timeout: float) -> socket.socket:
        """A client connection, only to a server run by this user or root (ForeignPeer)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self.address)
            check_server(sock, self.path)
        except BaseException:
            sock.close()
            raise
        return sock

    def remove(self) -> None:
        """Unlink the socket this process bound (not one another server put there since)."""
        st = self.lstat()
        if st is not None and (st.st_dev, st.st_ino) == self.inode:
            with contextlib.suppress(OSError):
                os.unlink(self.name, dir_fd=self.dir_fd)

    def close(self) -> None:
        if self.owns_fd:
            with contextlib.suppress(OSError):
                os.close(self.dir_fd)


@contextlib.contextmanager
def _flocked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


# -- this server's directory: set in the master, inherited by every worker over fork --------

_current: RuntimeDir | None = None
_process_key: bytes | None = None


def serve_from(directory: RuntimeDir, server_id: str) -> None:
    """The master, before forking: this server's directory, id and secret key."""
    global _current
    directory.server_id = server_id
    directory.key = secrets.token_bytes(32)
    _current = directory


def current() -> RuntimeDir | None:
    """The runtime directory of the server this process belongs to (None outside serve)."""
    return _current


def server_key() -> bytes:
    """A secret shared by this server's processes only, never written anywhere: the
    master's key under ``octo serve``, else one for this process."""
    global _process_key
    if _current is not None:
        return _current.key
    if _process_key is None:
        _process_key = secrets.token_bytes(32)
    return _process_key
