"""Warm threads for Django's sync code (``--reuse-sync-threads``, on by default).

Django's ASGIHandler runs each request inside ``asgiref.sync.ThreadSensitiveContext()``: the
request's sync code (sync views and middleware, the request signals) runs on one thread of
its own, started for that request and joined after it, by a thread started for the join
(asgiref 3.13). Measured under callgrind (Django 5.2, a sync JSON view, the handler called
in one process), those two threads cost 190k of the 2.32M instructions a request took.

Here each HTTP request gets a single-thread executor from a pool of this worker's instead,
through asgiref's own ``ThreadSensitiveContext(executor=...)``: the outermost context wins,
so Django's inside it adds nothing. The rule stays one thread per request at a time; the
threads stay alive between requests, as a WSGI server's threads do. An executor still
running something when its request ends (the request was cancelled while its sync code
ran) is not reused: it finishes that call and its thread ends.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from octo.logs import error_log
from octo.types import ASGIApp, Receive, Scope, Send

SPARE_MAX = 32  # idle threads kept; a burst above it starts (and ends) threads as Django does
DJANGO_ASGI = "django.core.handlers.asgi"


class SyncThread(ThreadPoolExecutor):
    """A one-thread executor that knows whether it still has work."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="octo-sync")
        self.pending: set[Future[Any]] = set()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self.pending.add(future)
        # Runs in the executor's thread (set.discard is one step under the GIL), before the
        # callback asyncio's run_in_executor adds next: by the time the request that
        # awaited the call goes on, the call is no longer pending.
        future.add_done_callback(self.pending.discard)
        return future


class SyncThreads:
    """This worker's idle executors, one handed to each request."""

    def __init__(self, spare_max: int = SPARE_MAX) -> None:
        self.spare: list[SyncThread] = []
        self.spare_max = spare_max

    def take(self) -> SyncThread:
        return self.spare.pop() if self.spare else SyncThread()

    def give(self, executor: SyncThread) -> None:
        if executor.pending or len(self.spare) >= self.spare_max:
            executor.shutdown(wait=False)  # its thread ends after what it runs
        else:
            self.spare.append(executor)

    def close(self) -> None:
        while self.spare:
            self.spare.pop().shutdown(wait=False)


def executor_context() -> Callable[..., Any] | None:
    """asgiref's ThreadSensitiveContext when a Django ASGI handler is loaded and the context
    takes an executor (asgiref 3.13 does), else None."""
    if DJANGO_ASGI not in sys.modules:
        return None
    from asgiref.sync import ThreadSensitiveContext

    if "executor" not in inspect.signature(ThreadSensitiveContext).parameters:
        error_log.info("--reuse-sync-threads: this asgiref has no "
                       "ThreadSensitiveContext(executor=...); Django starts a thread a request")
        return None
    return ThreadSensitiveContext


def reuse_sync_threads(app: ASGIApp, pool: SyncThreads | None = None) -> ASGIApp:
    """*app* with each HTTP request's thread-sensitive sync code on a pooled thread; *app*
    itself when no Django ASGI handler is loaded (nothing would use the threads)."""
    context = executor_context()
    if context is None:
        return app
    threads = pool if pool is not None else SyncThreads()

    async def with_warm_threads(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        executor = threads.take()
        try:
            async with context(executor=executor):
                await app(scope, receive, send)
        finally:
            threads.give(executor)

    return with_warm_threads


__all__ = ["SPARE_MAX", "SyncThread", "SyncThreads", "executor_context", "reuse_sync_threads"]
