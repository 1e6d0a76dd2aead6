"""Per-operation sandbox: each request, tick or task runs in its own scope.

The scope travels in a context variable, so concurrent requests in one worker never see
each other's scoped objects, and anything the request spawns with the context (tasks,
``concurrently``) sees the request's scope.

Every operation has the same life, written once in :class:`OperationScope`: enter (the
operation becomes current) → the caller's events and work → finish (the scope disposed, the
flush list applied) → the terminated events → leave.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, MutableMapping
from types import TracebackType
from typing import Any, Protocol

from octo.runtime import events as ev

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


class Host(Protocol):
    """What an operation needs of the runtime it belongs to (octo.Octo)."""

    events: ev.Events

    async def finish(self, op: Operation) -> None: ...


def terminated(op: Operation) -> list[ev.Event]:
    """The events that close *op*, in order: a request's RequestTerminated (with its status
    and whether the client went away), then every operation's OperationTerminated."""
    closing: list[ev.Event] = []
    if op.kind == "request" and op.scope is not None:
        closing.append(ev.RequestTerminated(op.scope, op.status, op.disconnected))
    closing.append(ev.OperationTerminated(op.kind))
    return closing


class OperationScope:
    """``async with OperationScope("tick", runtime) as op:`` runs the block as one
    operation of *host* (None: a task worker serving an app without a runtime, where the
    operation only carries the context)."""

    __slots__ = ("op", "host", "token")

    def __init__(self, kind: str, host: Host | None,
                 scope: MutableMapping[str, Any] | None = None) -> None:
        self.op = Operation(kind, scope)
        self.host = host
        if host is not None:
            self.op.state["runtime"] = host

    async def __aenter__(self) -> Operation:
        self.token = enter(self.op)
        return self.op

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self.host is not None:
                await self.host.finish(self.op)
                for event in terminated(self.op):
                    await self.host.events.dispatch(event)
        finally:
            leave(self.token)
