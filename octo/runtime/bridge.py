"""Sync code reaching the runtime: the ``*_sync`` entry points and the misuse checks.

A sync Django view runs in a thread (asgiref's ``sync_to_async``) while the worker's event
loop waits for it; a plain-function tick, task or ``concurrently`` callable likewise. The
request's operation scope travels to that thread in the context ``sync_to_async`` copies
(``concurrently`` and the tick and task runners copy it too). ``octo.resolve_sync``,
``cache.remember_sync``, ``tasks.run_sync`` and ``tasks.dispatch_sync`` run their work on
the operation's event loop and block only the calling thread until it is done: the
container and the dispatch queue are touched by the loop alone, so they need no locks and
a sync view gets the very objects an async view of the same request would.

Two mistakes raise at once instead of hanging or passing silently: a ``*_sync`` call on an
event loop's own thread (it would wait for the loop it is blocking), and an async entry
point called where no loop runs in the thread (sync code calling ``octo.resolve(X)``
without ``await`` would otherwise get a coroutine that never runs).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from octo.runtime.sandbox import current_operation

T = TypeVar("T")

# How often a thread waiting for the loop checks that the loop still runs (a worker that
# stops while a sync view waits must not leave that thread waiting forever).
LOOP_CHECK = 0.5


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None (sync code, a worker thread)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def require_loop(call: str, sync_twin: str,
                 home: asyncio.AbstractEventLoop | None = None) -> None:
    """Raise when sync code of a running worker calls async *call* without ``await``: no
    event loop runs in this thread, but this thread belongs to an operation (a request,
    tick or task, whose loop runs elsewhere) or the runtime's *home* loop runs. A script's
    ``asyncio.run(call)`` (no operation, no runtime loop) is left alone."""
    if running_loop() is not None:
        return
    op = current_operation()
    if (op is not None and op.loop is not None) or (home is not None and home.is_running()):
        raise RuntimeError(f"{call} is async: use await {call} in async code, or "
                           f"{sync_twin} in sync code (a sync view, a thread)")


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


def _settle(task: asyncio.Task[T], done: concurrent.futures.Future[T], call: str) -> None:
    if task.cancelled():  # the loop is shutting down
        done.set_exception(RuntimeError(f"{call} was cancelled on the event loop"))
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(task.result())
