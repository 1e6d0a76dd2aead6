"""``--watch``: notice changed source files so the master can roll the workers.

Two backends behind one ``poll()``: watchfiles (optional extra), run in a small forked child
that reports through a pipe so the master stays single-threaded; or a plain mtime scan when
watchfiles is not installed. Changed ``*.py`` files are compiled (never imported) first: a
syntax error is logged and the running workers keep serving.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from octo.logs import error_log

SCAN_INTERVAL = 0.5
SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache",
             ".pytest_cache", ".ruff_cache"}


def wanted(path: str, includes: list[str]) -> bool:
    name = os.path.basename(path)
    return name.endswith(".py") or any(fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(path, pat)
                                       for pat in includes)


def syntax_errors(paths: Iterable[str]) -> list[str]:
    """Compile each changed Python file; return one message per file that does not compile."""
    problems = []
    for path in paths:
        if not path.endswith(".py") or not os.path.isfile(path):
            continue
        try:
            source = Path(path).read_bytes()
            compile(source, path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            problems.append(f"{exc.filename}:{exc.lineno}: {exc.msg}")
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
    return problems


class PollingWatcher:
    """mtime scan of the tree, at most every SCAN_INTERVAL seconds."""

    backend = "polling"

    def __init__(self, root: str, includes: list[str]) -> None:
        self.root = root
        self.includes = includes
        self.snapshot = self._scan()
        self.next_scan = time.monotonic() + SCAN_INTERVAL

    def _scan(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
            for name in filenames:
                path = os.path.join(dirpath, name)
                if wanted(path, self.includes):
                    with contextlib.suppress(OSError):
                        found[path] = os.stat(path).st_mtime_ns
        return found

    def poll(self) -> list[str]:
        if time.monotonic() < self.next_scan:
            return []
        self.next_scan = time.monotonic() + SCAN_INTERVAL
        current = self._scan()
        changed = [p for p, m in current.items() if self.snapshot.get(p) != m]
        changed += [p for p in self.snapshot if p not in current]
        self.snapshot = current
        return sorted(changed)

    def close(self) -> None:
        pass


class WatchfilesWatcher:
    """watchfiles in a forked child; changed paths arrive one per line on a pipe."""

    backend = "watchfiles"

    def __init__(self, root: str, includes: list[str]) -> None:
        self.read_fd, write_fd = os.pipe()
        master = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the child
            self._child(root, includes, write_fd, master)
        os.close(write_fd)
        os.set_blocking(self.read_fd, False)
        self.buffer = b""
        self.ended = False  # the child is gone (end of file): nothing more will come

    @staticmethod
    def _child(root: str, includes: list[str], write_fd: int,
               master: int) -> None:  # pragma: no cover
        code = 0
        try:
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD,
                        signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(sig, signal.SIG_DFL)  # the master's handlers are not ours
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            # Nothing of the master's but the pipe: a listening socket kept open here would
            # keep accepting into a backlog after the master stopped listening (or died).
            os.closerange(3, write_fd)
            os.closerange(write_fd + 1, os.sysconf("SC_OPEN_MAX"))
            import watchfiles

            def keep(_change: object, path: str) -> bool:
                return wanted(path, includes) and not (set(Path(path).parts) & SKIP_DIRS)

            # Wake twice a second to see whether the master is gone (this child holds no
            # lifeline: it closed every descriptor but the pipe).
            for changes in watchfiles.watch(root, watch_filter=keep, raise_interrupt=False,
                                            rust_timeout=500, yield_on_timeout=True):
                if os.getppid() != master:
                    break
                if not changes:
                    continue
                lines = "".join(f"{path}\n" for _, path in changes)
                os.write(write_fd, lines.encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)

    def poll(self) -> list[str]:
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.read_fd, 65536):
                self.buffer += chunk
            self.ended = True
        *lines, self.buffer = self.buffer.split(b"\n")
        return sorted({line.decode() for line in lines if line})

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, 0)
        os.close(self.read_fd)


def make_watcher(root: str, includes: list[str]) -> PollingWatcher | WatchfilesWatcher:
    """watchfiles when installed (and not disabled by OCTO_WATCH_BACKEND=polling)."""
    if os.environ.get("OCTO_WATCH_BACKEND") != "polling":
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            error_log.info("--watch: watchfiles not installed, polling for changes")
        else:
            return WatchfilesWatcher(root, includes)
    return PollingWatcher(root, includes)
