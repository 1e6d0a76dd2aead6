"""Sync code reaching the runtime: the ``*_sync`` entry points and the misuse checks.

A sync Django view runs in a thread (asgiref's ``sync_to_async``) while the worker's event
loop waits for it; a plain-function tick, task or ``concurrently`` callable likewise. The
request's operation scope travels to that thread in the context ``sync_to_async`` copies
(``concurrently`` and the tick and task runners copy it too). ``octo.resolve_sync``,
``tasks.run_sync`` and ``tasks.dispatch_sync`` run their work on the operation's event loop
and block only the calling thread until it is done: the container and the dispatch queue
are touched by the loop alone, so they need no locks and a sync view gets the very objects
an async view of the same request would. In a thread of asgiref's ``sync_to_async`` the
trip goes through asgiref's ``async_to_sync``, which lets the waiting thread run what the
coroutine hands back to it with ``sync_to_async(thread_sensitive=True)`` (a factory making
a Django ORM query), where a plain wait would deadlock.

Two mistakes get a clear error instead of a hang or a silent no-op:

- a ``*_sync`` call on an event loop's own thread raises at once (it would wait for the
  loop it is blocking);
- an async entry point (``octo.resolve``, ``cache.remember``, ``tasks.run``,
  ``tasks.dispatch``) called from sync code of a request, tick or task returns a checked
  coroutine: awaiting it works as ever (``async_to_sync(octo.resolve)(X)``, Django's own
  idiom, creates the coroutine in the sync thread and awaits it on the loop), but using it
  as the value raises :class:`NotAwaited` naming the sync twin, and dropping it unawaited
  logs an error saying it never ran. Raising at the call itself would break
  ``async_to_sync``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import os
import sys
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

from octo.logs import error_log
from octo.runtime.sandbox import current_operation

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

# How often a thread waiting for the loop checks that the loop still runs (a worker that
# stops while a sync view waits must not leave that thread waiting forever).
LOOP_CHECK = 0.5


class NotAwaited(AttributeError):
    """The result of an async entry point used without ``await`` (in sync code). An
    AttributeError, since it is raised by attribute access on the unawaited coroutine."""


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None (sync code, a worker thread)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def coroutine_function(fn: F) -> F:
    """Mark *fn*, a plain function returning a coroutine, as a coroutine function, for
    ``inspect.iscoroutinefunction`` (3.12+), ``asyncio.iscoroutinefunction`` and asgiref
    (whose ``async_to_sync`` warns about unmarked ones)."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        return mark(fn)  # type: ignore[no-any-return]
    fn._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    return fn


def checked(coro: Coroutine[Any, Any, T], call: str, sync_twin: str,
            home: asyncio.AbstractEventLoop | None = None) -> Coroutine[Any, Any, T]:
    """*coro* as it is where an event loop runs in this thread (async code) or where no
    octo runtime is at work (a script's ``asyncio.run``); wrapped in a
    :class:`CheckedCoroutine` in sync code of an operation (a request, tick or task, whose
    loop runs elsewhere) or of a process whose runtime's *home* loop runs."""
    if running_loop() is not None:
        return coro
    op = current_operation()
    if (op is not None and op.loop is not None) or (home is not None and home.is_running()):
        return CheckedCoroutine(coro, call, sync_twin)
    return coro


class CheckedCoroutine(Coroutine[Any, Any, T]):
    """A coroutine made in sync code: a coroutine to whoever awaits it, an error (naming
    the sync twin) to whoever takes it for its result, an error log line if dropped."""

    __slots__ = ("_coro", "_call", "_twin", "_started", "_reported")

    def __init__(self, coro: Coroutine[Any, Any, T], call: str, twin: str) -> None:
        self._coro = coro
        self._call = call
        self._twin = twin
        self._started = False
        self._reported = False

    def send(self, value: Any) -> Any:
        self._started = True
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        self._started = True
        return self._coro.throw(*args)

    def close(self) -> None:
        self._started = True
        self._coro.close()

    def __await__(self) -> Generator[Any, None, T]:
        self._started = True
        return self._coro.__await__()

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("cr_", "__")):  # what asyncio and debuggers read of coroutines
            return getattr(self._coro, name)
        self._reported = True
        # Taken for its result: it will not be awaited. Closed now, as the error (its
        # traceback holds this object) may keep it alive past Python's own check.
        self._coro.close()
        raise NotAwaited(f"{self._call} is async and was not awaited, so this is a "
                         f"coroutine, not its result: use {self._twin} in sync code (a sync "
                         f"view, a thread), or await {self._call} in async code")

    def __del__(self) -> None:
        if self._started:
            return
        self._coro.close()  # octo's message below replaces Python's "never awaited" warning
        if not self._reported:
            error_log.error("%s was called without await in sync code, so it never ran: "
                            "use %s there (or await it in async code)", self._call,
                            self._twin)


def refuse_loop_thread(call: str, async_twin: str) -> None:
    """Raise if an event loop runs in this thread: *call* blocks, which would stall it (and
    deadlock when it waits for that very loop)."""
    if running_loop() is not None:
        raise RuntimeError(f"{call} blocks its thread and was called on the event loop's "
                           f"thread, which it would stall or deadlock: use {async_twin} in "
                           "async code")


def run_on_loop(loop: asyncio.AbstractEventLoop | None,
                make: Callable[[], Coroutine[Any, Any, T]], call: str) -> T:
    """Run ``make()`` on *loop* (running in another thread) in a copy of this thread's
    context, and return its result or raise its exception here."""
    if loop is None or loop.is_closed() or not loop.is_running():
        raise RuntimeError(f"{call}: no running event loop serves this operation (sync "
                           "entry points work in threads of a request, tick or task)")
    if _in_sync_to_async_of(loop):
        return _via_asgiref(make)
    ctx = contextvars.copy_context()  # the operation scope (and any contextvar) goes along
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:
        if not done.set_running_or_notify_cancel():
            return
        try:
            task = loop.create_task(make(), context=ctx)
        except BaseException as exc:
            done.set_exception(exc)
            return
        task.add_done_callback(lambda t: _settle(t, done, call))

    try:
        loop.call_soon_threadsafe(start)
    except RuntimeError:  # closed in the meantime
        raise RuntimeError(f"{call}: the event loop has stopped") from None
    while True:
        finished, _ = concurrent.futures.wait([done], timeout=LOOP_CHECK)
        if finished:
            return done.result()
        if loop.is_closed() or not loop.is_running():
            raise RuntimeError(f"{call}: the event loop stopped before it was done")


def _in_sync_to_async_of(loop: asyncio.AbstractEventLoop) -> bool:
    """Is this thread one that asgiref's sync_to_async runs for *loop*? (asgiref is only
    looked at when something, Django, has imported it.)"""
    module = sys.modules.get("asgiref.sync")
    if module is None:
        return False
    local = module.SyncToAsync.threadlocal
    return (getattr(local, "main_event_loop", None) is loop
            and getattr(local, "main_event_loop_pid", None) == os.getpid())


def _via_asgiref(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    from asgiref.sync import async_to_sync

    async def run() -> T:
        return await make()

    return async_to_sync(run)()


def _settle(task: asyncio.Task[T], done: concurrent.futures.Future[T], call: str) -> None:
    if task.cancelled():  # the loop is shutting down
        done.set_exception(RuntimeError(f"{call} was cancelled on the event loop"))
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(task.result())
