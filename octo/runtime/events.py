"""Lifecycle events and their listeners (Octane's WorkerStarting, RequestReceived, ...)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

from octo.logs import error_log


@dataclasses.dataclass(slots=True)
class Event:
    """Base class: ``rt.listen(Event, fn)`` hears every event."""


@dataclasses.dataclass(slots=True)
class WorkerStarting(Event):
    pass


@dataclasses.dataclass(slots=True)
class WorkerStopping(Event):
    pass


@dataclasses.dataclass(slots=True)
class RequestReceived(Event):
    scope: MutableMapping[str, Any]


@dataclasses.dataclass(slots=True)
class RequestHandled(Event):
    scope: MutableMapping[str, Any]
    status: int | None


@dataclasses.dataclass(slots=True)
class RequestTerminated(Event):
    scope: MutableMapping[str, Any]
    status: int | None
    disconnected: bool


@dataclasses.dataclass(slots=True)
class TickReceived(Event):
    name: str


@dataclasses.dataclass(slots=True)
class TaskReceived(Event):
    name: str


@dataclasses.dataclass(slots=True)
class OperationTerminated(Event):
    kind: str


@dataclasses.dataclass(slots=True)
class LongWaitDetected(Event):
    """Requests waited longer than ``--max-wait-time`` before the app was called (Horizon's
    ``LongWaitDetected``): fired once per episode, in one worker, by ``--metrics``'s watch.
    *wait* is the mean queue wait in seconds over the last second, *threshold* the limit."""

    wait: float
    threshold: float


@dataclasses.dataclass(slots=True)
class WorkerErrorOccurred(Event):
    error: BaseException


E = TypeVar("E", bound=Event)
Listener = Callable[[Any], Any]


class Events:
    def __init__(self) -> None:
        self.listeners: dict[type[Event], list[Listener]] = {}

    def listen(self, event_type: type[E], listener: Callable[[E], Any]) -> None:
        self.listeners.setdefault(event_type, []).append(listener)

    async def dispatch(self, event: Event) -> None:
        """Call the listeners of the event's class and its bases; a raising listener is
        logged and the others still run."""
        if not self.listeners:
            return
        for cls in type(event).__mro__:
            for listener in self.listeners.get(cls, ()):
                try:
                    result = listener(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    error_log.exception("listener %r for %s raised", listener,
                                        type(event).__name__)
