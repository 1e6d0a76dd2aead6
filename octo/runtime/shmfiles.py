"""Where table files live and how they are cleaned up.

Its own small module because the master needs the cleanup (at start and stop) but nothing
else of the tables: importing ``octo.runtime.table`` (ctypes, mmap) into the master would
put it into every forked worker too, used or not.
"""

from __future__ import annotations

import contextlib
import os

SHM_DIR = "/dev/shm"
PREFIX = "octo-"


def table_path(server_id: str, name: str, schema: str) -> str:
    return os.path.join(SHM_DIR, f"{PREFIX}{server_id}-{name}-{schema}.tbl")


def list_tables(server_id: str | None = None) -> list[str]:
    """File names of this server's tables (of every octo server without *server_id*)."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    prefix = PREFIX if server_id is None else f"{PREFIX}{server_id}-"
    return [n for n in names if n.startswith(prefix) and n.endswith(".tbl")]


def remove_tables(server_id: str) -> int:
    """The master, at stop: remove this server's table files."""
    removed = 0
    for name in list_tables(server_id):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(SHM_DIR, name))
            removed += 1
    return removed


def remove_stale_tables() -> int:
    """At start: remove table files of servers whose master process is gone (kill -9)."""
    removed = 0
    for name in list_tables():
        pid_text = name[len(PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and not pid_exists(int(pid_text)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(SHM_DIR, name))
                removed += 1
    return removed


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
