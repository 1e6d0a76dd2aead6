"""What crosses the fork: the one record a worker's runtime is given by the server.

A forked worker sets it with :func:`receive` before it imports the app, and the runtime
(octo.Octo, its ticks and tasks) reads it with :func:`settings`; nothing of it travels
through the environment, so ``OCTO_<SETTING>`` stays the user's namespace. Under another
ASGI server there is no hand-off: :func:`settings` reads the same few settings from the
user's ``OCTO_<SETTING>`` variables instead (``OCTO_REDIS_URL``, ``OCTO_DETECT_LEAKS``, ...).

The other thing a worker inherits is this server's private runtime directory, with its id
and secret key (octo.runtime.rundir.current): an open file descriptor and a key that must
never be written anywhere, held by the master too.

A leaf module: it imports nothing of octo, so the runtime can depend on it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Literal

Role = Literal["http", "task"]

# The variable an app reads to tell a task worker from an HTTP worker (a lifespan that
# opens a database only where requests are served); octo itself reads the hand-off.
ROLE_VARIABLE = "OCTO_ROLE"


@dataclasses.dataclass(frozen=True, slots=True)
class Handoff:
    """Everything the server tells a worker's runtime, fixed before the app is imported."""

    role: Role | None  # None: not a worker of octo serve (uvicorn, a test)
    app_dir: str  # absolute; the leak detector's root
    graceful_timeout: float  # seconds a stopping worker gives its queued dispatched tasks
    detect_leaks: bool
    gc_threshold: float  # MB of RSS growth between collections; 0: off
    redis_url: str  # for one_server ticks; "": none

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Handoff:
        """The settings of a runtime outside octo serve, from ``OCTO_<SETTING>``."""
        return cls(role=None,
                   app_dir=os.path.abspath(environ.get("OCTO_APP_DIR", os.getcwd())),
                   graceful_timeout=_number(environ.get("OCTO_GRACEFUL_TIMEOUT", ""), 30.0),
                   detect_leaks=environ.get("OCTO_DETECT_LEAKS") == "1",
                   gc_threshold=_number(environ.get("OCTO_GC_THRESHOLD", ""), 0.0),
                   redis_url=environ.get("OCTO_REDIS_URL", ""))


def _number(text: str, default: float) -> float:
    try:
        return max(0.0, float(text)) if text.strip() else default
    except ValueError:
        return default


_current: Handoff | None = None


def receive(handoff: Handoff) -> None:
    """In a worker, before the app is imported: what the server hands over."""
    global _current
    _current = handoff
    if handoff.role == "task":
        os.environ[ROLE_VARIABLE] = handoff.role


def settings() -> Handoff:
    """The hand-off of this worker, or the runtime's settings from the environment."""
    return _current if _current is not None else Handoff.from_environ(os.environ)
