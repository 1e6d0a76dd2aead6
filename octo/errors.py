"""Public exceptions that several layers raise or catch, defined once.

A leaf module: it imports nothing of octo, so any module may use it without an import
cycle (``octo.TaskTimeout`` is raised by ``concurrently``, by the tasks client and, pickled,
by a task worker; ``ClientDisconnected`` by the HTTP and the WebSocket layer).
"""

from __future__ import annotations

from typing import Any


class TaskTimeout(TimeoutError):
    """Callables (``concurrently``) or a task (``rt.tasks.run``) did not finish in time;
    ``pending`` names them, ``timeout`` is the limit in seconds."""

    def __init__(self, pending: list[str], timeout: float, message: str | None = None) -> None:
        super().__init__(message or f"{len(pending)} of the callables did not finish within "
                         f"{timeout}s: " + ", ".join(pending))
        self.pending = pending
        self.timeout = timeout

    def __reduce__(self) -> tuple[Any, ...]:
        # A task worker sends it back pickled: rebuild it from all three arguments.
        return (type(self), (self.pending, self.timeout, str(self)))


class ClientDisconnected(OSError):
    """The client has gone. A WebSocket's ``send`` raises it (ASGI spec 2.4); inside the
    HTTP server, a write that finds the client gone: HTTP scopes declare spec 2.3, so an
    app's ``send`` after a disconnect is a no-op (see RequestCycle._swallow), never this."""


class ClientDisconnectedWS(ClientDisconnected):
    """A WebSocket's ``send`` after its client went away (or while it closes): one
    ``except octo.ClientDisconnected`` handles both protocols."""


__all__ = ["ClientDisconnected", "ClientDisconnectedWS", "TaskTimeout"]
