"""Per-operation sandbox: each request, tick or task runs in its own scope.

The scope travels in a context variable, so concurrent requests in one worker never see
each other's scoped objects, and anything the request spawns with the context (tasks,
``concurrently``) sees the request's scope.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, MutableMapping
from typing import Any

_current: contextvars.ContextVar[Operation | None] = contextvars.ContextVar(
    "octo_operation", default=None)


class Operation:
    """One request, tick or task: its scoped instances and their disposals."""

    __slots__ = ("kind", "scope", "instances", "finalizers", "state", "status", "disconnected",
                 "loop")

    def __init__(self, kind: str, scope: MutableMapping[str, Any] | None = None) -> None:
        self.kind = kind
        self.scope = scope
        self.instances: dict[Any, Any] = {}
        self.finalizers: list[Callable[[], Any]] = []
        self.state: dict[str, Any] = {}
        self.status: int | None = None
        self.disconnected = False
        # The event loop the operation runs on (set by enter()): sync code of this operation,
        # in another thread, runs the runtime's coroutines there (octo.runtime.bridge).
        self.loop: asyncio.AbstractEventLoop | None = None


def current_operation() -> Operation | None:
    return _current.get()


def enter(op: Operation) -> contextvars.Token[Operation | None]:
    """Make *op* the current operation (of this context); it runs on the running loop."""
    if op.loop is None:
        try:
            op.loop = asyncio.get_running_loop()
        except RuntimeError:
            pass  # entered from sync code: its sync entry points have no loop to use
    return _current.set(op)


def leave(token: contextvars.Token[Operation | None]) -> None:
    _current.reset(token)
