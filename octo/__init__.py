"""octo: a persistent-process ASGI application server."""

from octo._version import __version__
from octo.config import Config, ConfigError
from octo.http.cycle import ClientDisconnected
from octo.runtime.app import Octo, resolve
from octo.runtime.cache import Cache, Lock, LockTimeout
from octo.runtime.concurrent import TaskTimeout, concurrently
from octo.runtime.container import Container, ContainerError, Lifetime, ScopeError
from octo.runtime.events import (
    Event,
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
from octo.runtime.tasks import TaskFailed, TaskWorkerLost

__all__ = [
    "Bytes",
    "Cache",
    "ClientDisconnected",
    "Config",
    "ConfigError",
    "Container",
    "ContainerError",
    "Event",
    "Float",
    "Int",
    "Lifetime",
    "Lock",
    "LockTimeout",
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
]
