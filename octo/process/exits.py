"""Worker exit codes, defined once: the worker returns them, the master reads them to tell
a boot failure (stop everything, or abandon a reload) from a crash (respawn)."""

from __future__ import annotations

import contextlib
import signal

EXIT_OK = 0
EXIT_BOOT_ERROR = 3  # lifespan startup failed
EXIT_APP_LOAD_ERROR = 4  # module:attr could not be imported or is not an ASGI app
EXIT_TASK_TIMEOUT = 5  # a task outlived its deadline: the master replaces the task worker
BOOT_ERRORS = (EXIT_BOOT_ERROR, EXIT_APP_LOAD_ERROR)


def describe_exit(code: int) -> str:
    """A child's exit status (``waitstatus_to_exitcode``) for a log line."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return {EXIT_OK: "exit 0", EXIT_BOOT_ERROR: "exit 3: lifespan startup failed",
            EXIT_APP_LOAD_ERROR: "exit 4: app could not be loaded"}.get(code, f"exit {code}")
