"""Warm threads for Django's sync code (``--reuse-sync-threads``, on by default).

Django's ASGIHandler runs each request inside ``asgiref.sync.ThreadSensitiveContext()``: the
request's sync code (sync views and middleware, the request signals) runs on one thread of
its own, started for that request and joined after it, by a thread started for the join
(asgiref 3.13).

Here each HTTP request gets a single-thread executor from a pool of this worker's instead,
through asgiref's own ``ThreadSensitiveContext(executor=...)``: the outermost context wins,
so Django's inside it adds nothing. The rule stays one thread per request at a time; the
threads stay alive between requests, as a WSGI server's threads do. An executor still
running something when its request ends (the request was cancelled while its sync code
ran) is not reused: it finishes that call and its thread ends.

Measured under callgrind (benchmarks/hotpath.py: octo's HTTP core in memory serving Django
5.2's ASGIHandler, a sync JSON view, CommonMiddleware, Python 3.11, asgiref 3.13): 2.11M
instructions a request with Django's own thread a request; 2.21M with pooled
ThreadPoolExecutor(max_workers=1)s, whose futures cost more than the thread they save;
1.74M with the executor below (see SyncThread). The whole server under load
(benchmarks/callgrind.py, django_handler): 2.42M before, 1.80M with it (granian 2.62M).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import sys
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from octo.logs import error_log
from octo.types import ASGIApp, Receive, Scope, Send

SPARE_MAX = 32  # idle threads kept; a burst above it starts (and ends) threads as Django does
DJANGO_ASGI = "django.core.handlers.asgi"

# A submitted call: the loop to complete its future on (None: a blocking caller), the
# future, the function and its arguments.
Call = tuple[asyncio.AbstractEventLoop | None,
             "asyncio.Future[Any] | concurrent.futures.Future[Any]",
             Callable[..., Any], tuple[Any, ...], dict[str, Any]]
_names = itertools.count()


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.cancelled():  # cancelled while it ran: nobody waits for the result
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exc)


class SyncThread:
    """One thread that runs the calls submitted to it one at a time, in order, and knows
    whether it still has work.

    An executor for asgiref only, which uses it through ``loop.run_in_executor``: called on
    the event loop, ``submit`` returns a future of that loop, which ``run_in_executor``
    (``asyncio.wrap_future``) hands back unchanged, and the thread completes it with one
    ``call_soon_threadsafe``. A ThreadPoolExecutor's ``concurrent.futures.Future`` costs
    each of the 5 hops of a Django request (its request signals, middleware and view) a
    lock-guarded future, chained to an asyncio one by two more callbacks, and an idle
    semaphore (pure Python) taken and released: 2.21M instructions a request to this
    executor's 1.74M (see the module's docstring). Called without a running loop,
    ``submit`` returns a ``concurrent.futures.Future``.
    """

    def __init__(self) -> None:
        self.calls: SimpleQueue[Call | None] = SimpleQueue()
        # Each count has one writer (submitted: the submitting thread; finished: this
        # executor's thread), so neither needs a lock; pending is their difference.
        self.submitted = 0
        self.finished = 0
        self.closed = False
        self.thread: threading.Thread | None = None  # started by the first call

    @property
    def pending(self) -> bool:
        return self.submitted != self.finished

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
               ) -> asyncio.Future[Any] | concurrent.futures.Future[Any]:
        if self.closed:
            raise RuntimeError("cannot schedule new calls after shutdown")
        future: asyncio.Future[Any] | concurrent.futures.Future[Any]
        loop: asyncio.AbstractEventLoop | None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop, future = None, concurrent.futures.Future()
        else:
            future = loop.create_future()
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, daemon=True,
                                           name=f"octo-sync-{next(_names)}")
            self.thread.start()
        self.submitted += 1
        self.calls.put((loop, future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True) -> None:
        """No more calls; the thread ends after those already submitted (once they are done,
        when *wait*)."""
        if not self.closed:
            self.closed = True
            self.calls.put(None)
        if wait and self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()

    def _run(self) -> None:
        # A daemon thread: workers end with os._exit, and a process that ends otherwise
        # (the tests, an in-process benchmark) does not wait for an idle thread's queue.
        get, run = self.calls.get, self._call
        while True:
            call = get()
            if call is None:
                return
            run(*call)
            del call  # the call's arguments and result are not kept while idle

    def _call(self, loop: asyncio.AbstractEventLoop | None,
              future: asyncio.Future[Any] | concurrent.futures.Future[Any],
              fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if isinstance(future, concurrent.futures.Future):
            starts = future.set_running_or_notify_cancel()
        else:
            starts = not future.cancelled()
        if not starts:  # cancelled before it started: it never runs
            self.finished += 1
            return
        failed = False
        try:
            outcome = fn(*args, **kwargs)
        except BaseException as exc:  # as concurrent.futures: it is the caller's to raise
            failed, outcome = True, exc
        self.finished += 1  # before the caller hears of it: the request goes on after
        if isinstance(future, concurrent.futures.Future):
            if failed:
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
            return
        assert loop is not None
        try:
            loop.call_soon_threadsafe(_set_exception if failed else _set_result, future, outcome)
        except RuntimeError:
            pass  # the loop is closed: nothing waits for it any more


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
