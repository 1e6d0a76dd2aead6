"""octo: a persistent-process ASGI application server."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from octo._version import __version__

if TYPE_CHECKING:
    from octo.config import Config, ConfigError
    from octo.errors import ClientDisconnected, ClientDisconnectedWS, TaskTimeout
    from octo.runtime.app import Octo, resolve, resolve_sync
    from octo.runtime.bridge import NotAwaited
    from octo.runtime.cache import Cache, Lock, LockTimeout
    from octo.runtime.concurrent import concurrently
    from octo.runtime.container import Container, ContainerError, Lifetime, ScopeError
    from octo.runtime.events import (
        Event,
        LongWaitDetected,
        OperationTerminated,
        RequestHandled,
        RequestReceived,
        RequestTerminated,
        TaskReceived,
        TickReceived,
        WorkerErrorOccurred,
        WorkerStarting,
        WorkerStopping,
    )
    from octo.runtime.sandbox import Operation, current_operation
    from octo.runtime.shmlock import LockReentered
    from octo.runtime.table import (
        Bytes,
        Float,
        Int,
        Str,
        Table,
        TableError,
        TableFull,
        ValueTooLarge,
    )
    from octo.runtime.tasks import TaskFailed, TaskQueueFull, TaskWorkerLost

# The public names and the modules defining them. They are imported on first use, not with
# the package: every octo process imports ``octo``, and a worker serving a plain ASGI app
# has no use for the runtime (tables, tasks, cache...), which cost it several MB of RSS.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["Config", "ConfigError"], "octo.config"),
    **dict.fromkeys(["ClientDisconnected", "ClientDisconnectedWS", "TaskTimeout"],
                    "octo.errors"),
    **dict.fromkeys(["Octo", "resolve", "resolve_sync"], "octo.runtime.app"),
    "NotAwaited": "octo.runtime.bridge",
    **dict.fromkeys(["Cache", "Lock", "LockTimeout"], "octo.runtime.cache"),
    "concurrently": "octo.runtime.concurrent",
    **dict.fromkeys(["Container", "ContainerError", "Lifetime", "ScopeError"],
                    "octo.runtime.container"),
    **dict.fromkeys(["Event", "LongWaitDetected", "OperationTerminated", "RequestHandled",
                     "RequestReceived", "RequestTerminated", "TaskReceived", "TickReceived",
                     "WorkerErrorOccurred", "WorkerStarting", "WorkerStopping"],
                    "octo.runtime.events"),
    **dict.fromkeys(["Operation", "current_operation"], "octo.runtime.sandbox"),
    "LockReentered": "octo.runtime.shmlock",
    **dict.fromkeys(["Bytes", "Float", "Int", "Str", "Table", "TableError", "TableFull",
                     "ValueTooLarge"], "octo.runtime.table"),
    **dict.fromkeys(["TaskFailed", "TaskQueueFull", "TaskWorkerLost"], "octo.runtime.tasks"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'octo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Bytes",
    "Cache",
    "ClientDisconnected",
    "ClientDisconnectedWS",
    "Config",
    "ConfigError",
    "Container",
    "ContainerError",
    "Event",
    "Float",
    "Int",
    "Lifetime",
    "Lock",
    "LockReentered",
    "LockTimeout",
    "LongWaitDetected",
    "NotAwaited",
    "Octo",
    "Operation",
    "OperationTerminated",
    "RequestHandled",
    "RequestReceived",
    "RequestTerminated",
    "ScopeError",
    "Str",
    "Table",
    "TableError",
    "TableFull",
    "TaskFailed",
    "TaskQueueFull",
    "TaskReceived",
    "TaskTimeout",
    "TaskWorkerLost",
    "TickReceived",
    "ValueTooLarge",
    "WorkerErrorOccurred",
    "WorkerStarting",
    "WorkerStopping",
    "__version__",
    "concurrently",
    "current_operation",
    "resolve",
    "resolve_sync",
]
