"""Workers do not outlive their master.

The master holds the write end of a pipe, the *lifeline*, that no other process keeps open.
However the master ends (``kill -9``, the OOM killer, a crash), the kernel closes it, and the
read end every worker inherited turns readable (end of file) at once: an HTTP worker watches
it from its event loop, a task worker from a thread. Every heartbeat also checks that the
worker's parent is still the master, should the pipe ever be lost (an app closing
descriptors it does not own). Either way the worker sends itself SIGTERM: a graceful drain
bounded by --graceful-timeout, as for ``octo stop``, or at once if it is still booting.

(``PR_SET_PDEATHSIG`` would need ctypes in every worker, ~0.4 MB of RSS each, only on
Linux, and is cleared when an app changes its uid; the pipe works everywhere.)
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading

from octo.logs import error_log

_noticed = False  # per process: the master is known gone, SIGTERM sent


class Lifeline:
    """The pipe; the master keeps both ends, each child closes the write end."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()  # close-on-exec: no exec'd program keeps it
        self.master_pid = os.getpid()

    def in_child(self) -> None:
        """Right after fork: only the master may hold the write end."""
        os.close(self.write_fd)

    def watch_from_thread(self) -> None:
        """For a child without an event loop: a daemon thread waits for the end of file."""
        threading.Thread(target=self._wait, name="octo-lifeline", daemon=True).start()

    def _wait(self) -> None:
        while True:
            # Wait, then read: an HTTP worker's event loop made the shared descriptor
            # non-blocking, so a bare read could fail with EAGAIN instead of waiting.
            try:
                select.select([self.read_fd], [], [])
                if not os.read(self.read_fd, 1):
                    break  # end of file: the master is gone
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return  # the descriptor itself is gone: nothing to watch (the heartbeat does)
        master_gone(self.master_pid)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def master_gone(master_pid: int) -> None:
    """Once per process: say so, and send this process SIGTERM."""
    global _noticed
    if _noticed:
        return
    _noticed = True
    error_log.warning("master %d is gone: worker %d stops (in-flight work gets "
                      "--graceful-timeout to finish)", master_pid, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)


def check_parent(master_pid: int) -> bool:
    """The heartbeat's check: False (and master_gone) once this process's parent is no
    longer *master_pid*."""
    if _noticed or os.getppid() != master_pid:
        master_gone(master_pid)
        return False
    return True
