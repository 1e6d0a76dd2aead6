"""``octo.Octo``: the runtime an app declares at import time and wraps around its ASGI app."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

from octo import handoff
from octo.logs import error_log
from octo.runtime import events as ev
from octo.runtime import rundir
from octo.runtime.bridge import checked, coroutine_function, refuse_loop_thread, run_on_loop
from octo.runtime.cache import Cache, Lock
from octo.runtime.container import MISSING, Container, ContainerError, name_of
from octo.runtime.leaks import LeakDetector
from octo.runtime.sandbox import Operation, OperationScope, current_operation
from octo.runtime.table import Column, Int, Table
from octo.runtime.tasks import DEFAULT_QUEUE_SIZE, Tasks, graceful_timeout
from octo.runtime.tick import Tick, TickRunner
from octo.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


_BOOTED: weakref.WeakSet[Octo] = weakref.WeakSet()


def booted_runtimes() -> list[Octo]:
    """The runtimes booted in this process (their events hear LongWaitDetected)."""
    return list(_BOOTED)


class Octo:
    """Container, events and per-request sandbox for one application.

    Declare bindings and listeners at import time, then ``asgi = rt.wrap(app)``. Under
    ``octo serve`` the runtime boots in each worker at lifespan startup (warming singletons
    before the worker accepts connections); under any other ASGI server it boots the same
    way, or on the first request if that server runs no lifespan.
    """

    def __init__(self, cache_rows: int = 1024, cache_value_size: int = 1024,
                 task_queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.cache_rows = cache_rows
        self.cache_value_size = cache_value_size
        self._cache: Cache | None = None
        self._locks: Table | None = None
        self.container = Container()
        self.events = ev.Events()
        self.ticks = TickRunner(self)
        # rt.tasks.run(fn, ...) / rt.tasks.dispatch(fn, ...); dispatch queues up to
        # task_queue_size tasks per process while every task worker is busy.
        self.tasks = Tasks(task_queue_size)
        self._tick_stats: Table | None = None
        self.booted = False
        self._boot_lock: asyncio.Lock | None = None
        self.leaks: LeakDetector | None = None
        self.gc_threshold = handoff.settings().gc_threshold * 1024 * 1024
        self._rss_after_gc = 0

    def listen(self, event_type: type[ev.E], listener: Callable[[ev.E], Any]) -> None:
        self.events.listen(event_type, listener)

    def table(self, name: str, rows: int, columns: Mapping[str, Column],
              key_size: int = 64) -> Table:
        """A table shared by all workers under ``octo serve`` (process-local elsewhere)."""
        directory = rundir.current()  # inherited from an octo serve master
        if directory is None:
            error_log.warning("table %r: not under octo serve, so it lives in this process "
                              "only", name)
            return Table(name, rows, columns, key_size)
        return Table(name, rows, columns, key_size, directory.server_id)

    @property
    def cache(self) -> Cache:
        """The shared cache (``cache_rows`` x ``cache_value_size`` bytes, set at Octo())."""
        if self._cache is None:
            table = self.table("cache", self.cache_rows, Cache.columns(self.cache_value_size),
                               key_size=128)
            self._cache = Cache(table, self._lock_table(), self)
        return self._cache

    def tick(self, name: str, every: float, immediate: bool = False,
             one_server: bool = False) -> Callable[[F], F]:
        """Run the decorated function every *every* seconds, once per server."""
        def register(fn: F) -> F:
            self.ticks.add(Tick(name, fn, every, immediate, one_server))
            return fn
        return register

    @property
    def tick_stats(self) -> Table:
        """Per tick: runs, skipped (still running when due) and errors, shared by workers;
        also which worker runs it now (``owner``/``run``, see ``octo.runtime.tick``)."""
        if self._tick_stats is None:
            self._tick_stats = self.table("ticks", 256, {"runs": Int, "skipped": Int,
                                                         "errors": Int, "owner": Int,
                                                         "run": Int})
        return self._tick_stats

    def lock(self, name: str, ttl: float = 10.0) -> Lock:
        """A lock shared by all workers; a dead owner's lock expires after *ttl*."""
        return Lock(self._lock_table(), name, ttl)

    def _lock_table(self) -> Table:
        if self._locks is None:
            self._locks = self.table("locks", 1024, Lock.columns(), key_size=128)
        return self._locks

    def wrap(self, app: Any) -> ASGIApp:
        """Serve *app* inside the sandbox."""
        if handoff.settings().detect_leaks:
            self.leaks = LeakDetector(self.container, app)
        return Sandboxed(self, app)

    async def boot(self) -> None:
        if self.booted:
            return
        if self._boot_lock is None:
            self._boot_lock = asyncio.Lock()
        async with self._boot_lock:
            if self.booted:
                return
            # Sync code of this process without an operation (a thread it started) reaches
            # the runtime through this loop.
            self.tasks.home_loop = asyncio.get_running_loop()
            await self.events.dispatch(ev.WorkerStarting())
            await self.container.boot()
            self.booted = True
            _BOOTED.add(self)
            self.ticks.start()

    async def stop(self) -> None:
        if self.booted:
            await self.ticks.stop()
            await self.tasks.drain(graceful_timeout())
            await self.events.dispatch(ev.WorkerStopping())
            await self.container.shutdown()
            self.booted = False

    async def finish(self, op: Operation) -> None:
        """After an operation: dispose its scope, apply the flush list, tidy memory."""
        from octo.runtime.container import run_finalizers

        await run_finalizers(op.finalizers)
        op.instances.clear()
        self.container.apply_flush()
        if self.leaks is not None:
            self.leaks.check()
        if self.gc_threshold:
            self._collect_if_grown()

    def _collect_if_grown(self) -> None:
        import psutil

        rss = psutil.Process().memory_info().rss
        if not self._rss_after_gc:
            self._rss_after_gc = rss
        elif rss - self._rss_after_gc > self.gc_threshold:
            gc.collect()
            self._rss_after_gc = psutil.Process().memory_info().rss
            error_log.debug("--gc-threshold: collected, RSS %d -> %d", rss, self._rss_after_gc)


class Sandboxed:
    """The wrapped ASGI app."""

    def __init__(self, runtime: Octo, app: ASGIApp) -> None:
        self.runtime = runtime
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind in ("http", "websocket"):
            await self._request(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        if not runtime.booted:
            await runtime.boot()  # a server without lifespan: boot on first use
        async with OperationScope("request", runtime, scope) as op:
            await self._serve(op, scope, receive, send)

    async def _serve(self, op: Operation, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's call, as operation *op*: its status and a disconnect are recorded for
        the closing events."""

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] in ("http.disconnect", "websocket.disconnect"):
                op.disconnected = True
            return message

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                op.status = message["status"]
            await send(message)

        dispatch = self.runtime.events.dispatch
        try:
            await dispatch(ev.RequestReceived(scope))
            await self.app(scope, tracked_receive, tracked_send)
            await dispatch(ev.RequestHandled(scope, op.status))
        except BaseException as exc:
            if isinstance(exc, OSError):
                op.disconnected = True
            await dispatch(ev.WorkerErrorOccurred(exc))
            raise

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Boot the runtime on startup and stop it on shutdown, around the app's own
        lifespan if it has one."""
        runtime = self.runtime
        phase = {"startup": False, "handled": False}

        async def inner_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                phase["startup"] = True
                await runtime.boot()
            return message

        async def inner_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await runtime.stop()
                phase["handled"] = True
            elif message["type"] == "lifespan.startup.failed":
                phase["handled"] = True
            await send(message)

        try:
            await self.app(scope, inner_receive, inner_send)
        except Exception as exc:
            if phase["handled"]:
                raise
            error_log.debug("app has no lifespan (%s: %s); octo runs its own",
                            type(exc).__name__, exc)
        if not phase["handled"]:
            await self._own_lifespan(receive, send, phase["startup"])

    async def _own_lifespan(self, receive: Receive, send: Send, started: bool) -> None:
        runtime = self.runtime
        if not started:
            message = await receive()
            assert message["type"] == "lifespan.startup"
        try:
            await runtime.boot()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": f"{exc}"})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        await runtime.stop()
        await send({"type": "lifespan.shutdown.complete"})


def unwrapped_runtime_warning(app: Any, target: str) -> str | None:
    """The warning for ``octo serve main:app`` when ``main`` creates an ``octo.Octo()``
    runtime but *app* is not wrapped by it: its ticks never run, its container never boots
    and ``octo.resolve`` fails in every request. None when *app* is wrapped (or no runtime)."""
    import sys

    if isinstance(app, Sandboxed):
        return None
    module_name = target.partition(":")[0]
    module = sys.modules.get(module_name)
    names = vars(module) if module is not None else {}
    runtimes = [name for name, value in names.items() if isinstance(value, Octo)]
    if not runtimes:
        return None
    wrapped = [name for name, value in names.items() if isinstance(value, Sandboxed)]
    hint = (f"serve {module_name}:{wrapped[0]} instead" if wrapped else
            f"serve {runtimes[0]}.wrap(app), e.g. asgi = {runtimes[0]}.wrap(app) and "
            f"octo serve {module_name}:asgi")
    return (f"{target} is served without the octo runtime {module_name}.{runtimes[0]}: its "
            f"ticks will not run and octo.resolve() fails in requests; {hint}")


@coroutine_function
def resolve(key: type[T]) -> Coroutine[Any, Any, T]:
    """The container's instance of *key* for the current request, tick or task:
    ``await octo.resolve(X)``. Sync code (a sync Django view, a thread) calls
    :func:`resolve_sync` instead; there this one's coroutine, unless awaited (as
    ``async_to_sync`` does), raises ``NotAwaited`` naming ``resolve_sync`` when used as
    the instance, rather than passing for it."""
    return checked(_resolve(key), f"octo.resolve({name_of(key)})",
                   f"octo.resolve_sync({name_of(key)})")


async def _resolve(key: type[T]) -> T:
    runtime, _ = _operation_runtime(key, "octo.resolve")
    return await runtime.container.resolve(key)


def resolve_sync(key: type[T]) -> T:
    """:func:`resolve` for sync code running in a thread of the current request, tick or
    task (a sync Django view, a plain-function tick or task, a ``concurrently`` callable).

    Factories run on the operation's event loop, as for ``await octo.resolve(X)`` (so they
    must not block it, and the objects are the same ones async code of the operation gets);
    an instance already built is returned without the trip to the loop. Raises on an event
    loop's own thread, where ``await octo.resolve(X)`` is the way."""
    call = f"octo.resolve_sync({name_of(key)})"
    refuse_loop_thread(call, f"await octo.resolve({name_of(key)})")
    runtime, op = _operation_runtime(key, "octo.resolve_sync")
    value = runtime.container.built(key, op)
    if value is not MISSING:
        return cast(T, value)
    return run_on_loop(op.loop, lambda: runtime.container.resolve(key), call)


def _operation_runtime(key: Any, call: str) -> tuple[Octo, Operation]:
    op = current_operation()
    if op is None or "runtime" not in op.state:
        raise ContainerError(f"{call}({name_of(key)}) outside a request, "
                             "tick or task run by an octo runtime: is the app served wrapped, "
                             "as asgi = rt.wrap(app)?")
    return op.state["runtime"], op
