"""How a server's files in its runtime directory are named, and how they are cleaned up.

Its own small module because the master needs the cleanup (at start and stop) but nothing
else of the tables: importing ``octo.runtime.table`` (ctypes, mmap) into the master would
put it into every forked worker too, used or not. Files of one server start with its id
(the master's pid): ``<id>-<table>-<schema>.tbl`` and ``<id>-tasks.sock``; control sockets
are named for their port, ``octo-<port>.ctl``, so that ``octo status --port N`` finds them.
"""

from __future__ import annotations

import os
import stat

from octo.runtime.rundir import RuntimeDir

TABLE_SUFFIX = ".tbl"


def table_name(server_id: str, name: str, schema: str) -> str:
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"table name {name!r} cannot be a file name")
    return f"{server_id}-{name}-{schema}{TABLE_SUFFIX}"


def task_socket_name(server_id: str) -> str:
    return f"{server_id}-tasks.sock"


def control_socket_name(port: int | None) -> str:
    return f"octo-{port}.ctl"


def list_tables(directory: RuntimeDir, server_id: str) -> list[str]:
    """File names of this server's tables."""
    prefix = f"{server_id}-"
    return [n for n in directory.names() if n.startswith(prefix) and n.endswith(TABLE_SUFFIX)]


def remove_server_files(directory: RuntimeDir, server_id: str) -> int:
    """The master, at stop: remove this server's files (tables, task socket)."""
    prefix = f"{server_id}-"
    return sum(directory.remove(n) for n in directory.names() if n.startswith(prefix))


def remove_stale_files(directory: RuntimeDir) -> int:
    """At start: remove the files of servers whose master process is gone (kill -9): their
    tables and task sockets, and control sockets nothing listens on any more. Files named for
    this very process are stale too: a killed server whose pid has come round again.

    Only this user's entries of the private directory are candidates, and a symlink is
    unlinked, never followed. Under the directory's lock, so no other server binds a control
    socket between the probe and the unlink."""
    removed = 0
    with directory.lock():
        for name in directory.names():
            id_text = name.split("-", 1)[0]
            if "-" in name and id_text.isdigit():
                if int(id_text) == os.getpid() or not pid_exists(int(id_text)):
                    removed += directory.remove(name)
            elif name.startswith("octo-") and name.endswith(".ctl") and _dead_socket(
                    directory, name):
                removed += directory.remove(name)
    return removed


def _dead_socket(directory: RuntimeDir, name: str) -> bool:
    place = directory.socket(name)
    st = place.lstat()
    return st is not None and stat.S_ISSOCK(st.st_mode) and not place.answers()


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
