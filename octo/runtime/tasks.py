"""Task workers (``octo serve --task-workers N``): CPU-bound work off the HTTP workers.

The master binds one Unix socket and forks task workers that share it, like HTTP workers
share the listening socket. A caller connects, sends one pickled ``(fn, args, kwargs, wait,
deadline)`` frame and reads one pickled reply frame; each task worker takes one connection
at a time, so the kernel's accept queue is the queue all task workers serve from (a free
one takes the oldest waiting task). The worker side is ``octo.process.taskworker``.

``rt.tasks.run`` waits for the result. With ``timeout=`` it raises :class:`TaskTimeout`
naming the task when that passes; the task worker, told the deadline in the frame, cancels
an async task and replaces itself when a task does not stop (a plain function cannot be
interrupted). A task worker that dies mid-task closes the connection, and the caller gets
:class:`TaskWorkerLost` instead of waiting forever.

``rt.tasks.dispatch`` (fire and forget) returns at once: the task goes into this process's
bounded queue (``octo.Octo(task_queue_size=)``, :class:`TaskQueueFull` beyond it) and one
background sender hands queued tasks to task workers in order, each as soon as a task
worker takes it. A task worker acknowledges a task before running it, so a handover that
gets no acknowledgement (the task worker died) is retried; when the process stops, queued
tasks get up to the graceful timeout to be taken and those left are logged by name.

The frames are pickles, so both ends check the other (``SO_PEERCRED``) before unpickling
anything: a task worker serves only callers of its own user (or root), and a caller sends
and reads only to and from a task worker of its own user (or root). The socket itself is in
the server's private runtime directory, bound and reached through the directory descriptor
the master holds (``octo.runtime.rundir``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import inspect
import pickle
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

from octo import handoff
from octo.errors import TaskTimeout
from octo.logs import error_log
from octo.runtime import rundir
from octo.runtime.bridge import checked, coroutine_function, refuse_loop_thread, run_on_loop
from octo.runtime.sandbox import current_operation
from octo.stats import TASKS

FRAME_LEN = struct.Struct(">Q")  # the length prefix of every frame, both ways
MAX_FRAME = 256 * 1024 * 1024
DEFAULT_QUEUE_SIZE = 1000
HANDOVER_ATTEMPTS = 3  # task workers lost while taking one task before it is dropped
RETRY_FIRST = 0.05  # seconds before the first retry of a failed handover (then doubling to 1)
SHOWN = 10  # task names listed in a log line about many tasks


class TaskWorkerLost(RuntimeError):
    """The task worker running the task died before answering."""


class TaskFailed(RuntimeError):
    """The task raised an exception that could not be sent back as itself (or could not be
    started: its frame could not be unpickled in the task worker)."""


class TaskQueueFull(RuntimeError):
    """``rt.tasks.dispatch`` found this process's queue of tasks waiting for a task worker
    full (``octo.Octo(task_queue_size=)``)."""


def socket_place() -> rundir.SocketPlace | None:
    """The task socket of the server this process belongs to (None without task workers)."""
    directory = rundir.current()
    if directory is None or not directory.task_socket:
        return None
    return directory.socket(directory.task_socket)


def task_name(fn: Any) -> str:
    """``module.qualname`` of a task (of the function inside a ``functools.partial``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def graceful_timeout() -> float:
    """Seconds a stopping worker gives queued tasks (``--graceful-timeout``, handed over
    by the worker; ``OCTO_GRACEFUL_TIMEOUT`` or 30 elsewhere)."""
    return handoff.settings().graceful_timeout


@dataclasses.dataclass(slots=True)
class _Queued:
    name: str
    payload: bytes
    attempts: int = 0
    queued_at: float = dataclasses.field(default_factory=time.monotonic)


# -- caller side (HTTP workers, and anything else that sends tasks) -----------------------

class Tasks:
    """``rt.tasks``: send picklable callables to the task workers.

    Without task workers (not under ``octo serve --task-workers N``) tasks run in this
    process: coroutine functions on the loop, plain functions in a thread (with a warning).
    """

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError(f"task_queue_size must be at least 1, not {queue_size}")
        self.queue_size = queue_size
        self.warned = False
        self.home_loop: asyncio.AbstractEventLoop | None = None  # the runtime's, at boot
        self._queue: collections.deque[_Queued] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None  # the sender's
        self._wake: asyncio.Event | None = None
        self._emptied: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._local: set[asyncio.Task[Any]] = set()
        self._full_logged = False
        TASKS.queues.add(self)  # its queue length, for --metrics

    # -- public entry points ------------------------------------------------------------------

    @coroutine_function
    def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
            **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """``await rt.tasks.run(fn, *args, timeout=None, **kwargs)``: run the call in a task
        worker and return its result (or raise its exception). Past *timeout* seconds
        (waiting for a free task worker included) raises :class:`TaskTimeout` naming the
        task, which is cancelled (async) or has its task worker replaced (a plain function,
        or a task that ignores the cancellation)."""
        return checked(self._run(fn, args, kwargs, timeout), f"rt.tasks.run({task_name(fn)})",
                       f"rt.tasks.run_sync({task_name(fn)})", self.home_loop)

    @coroutine_function
    def dispatch(self, fn: Callable[..., Any], *args: Any,
                 **kwargs: Any) -> Coroutine[Any, Any, None]:
        """``await rt.tasks.dispatch(fn, *args, **kwargs)``: fire and forget. Returns at
        once, the task queued for the next free task worker; raises :class:`TaskQueueFull`
        when ``task_queue_size`` tasks already wait (and pickling errors, at once)."""
        return checked(self._dispatch(fn, args, kwargs), f"rt.tasks.dispatch({task_name(fn)})",
                       f"rt.tasks.dispatch_sync({task_name(fn)})", self.home_loop)

    def run_sync(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
                 **kwargs: Any) -> Any:
        """:meth:`run` for sync code (a sync view, a thread): blocks this thread only."""
        refuse_loop_thread("rt.tasks.run_sync(...)", "await rt.tasks.run(...)")
        loop = self._caller_loop()
        if loop is None:  # a script or a thread of no running worker: a loop of its own
            return asyncio.run(self._run(fn, args, kwargs, timeout))
        return run_on_loop(loop, lambda: self._run(fn, args, kwargs, timeout),
                           f"rt.tasks.run_sync({task_name(fn)})")

    def dispatch_sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """:meth:`dispatch` for sync code: queued on the worker's loop, returns at once.
        Where no worker loop runs (a script), it waits until a task worker takes the task."""
        refuse_loop_thread("rt.tasks.dispatch_sync(...)", "await rt.tasks.dispatch(...)")
        loop = self._caller_loop()
        if loop is None:
            asyncio.run(self._hand_over_now(fn, args, kwargs))
            return
        run_on_loop(loop, lambda: self._dispatch(fn, args, kwargs),
                    f"rt.tasks.dispatch_sync({task_name(fn)})")

    @property
    def queued(self) -> int:
        """Dispatched tasks not yet taken by a task worker."""
        return len(self._queue)

    def _caller_loop(self) -> asyncio.AbstractEventLoop | None:
        op = current_operation()
        for loop in (op.loop if op is not None else None, self.home_loop):
            if loop is not None and loop.is_running() and not loop.is_closed():
                return loop
        return None

    # -- run ---------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                   timeout: float | None) -> Any:
        place = socket_place()
        if place is None:
            return await self._run_here(fn, args, kwargs, timeout)
        payload = _pack(fn, args, kwargs, True, timeout)
        try:
            reply = await asyncio.wait_for(_exchange(place, payload), timeout)
        except TimeoutError:
            assert timeout is not None
            raise _timeout(fn, timeout, "it was cancelled (a task that does not stop, or a "
                           "plain function, gets its task worker replaced)") from None
        ok, value = pickle.loads(reply)
        if ok:
            return value
        raise value

    async def _run_here(self, fn: Callable[..., Any], args: tuple[Any, ...],
                        kwargs: dict[str, Any], timeout: float | None) -> Any:
        from octo.runtime.inprocess import run_all

        self._warn_local()
        call = functools.partial(fn, *args, **kwargs)
        if inspect.iscoroutinefunction(fn):
            scope = asyncio.timeout(timeout)
            try:
                async with scope:
                    return await call()
            except TimeoutError:
                if scope.expired():
                    assert timeout is not None
                    raise _timeout(fn, timeout, "no task workers, so it ran in this process, "
                                   "and was cancelled") from None
                raise  # the task's own TimeoutError
        try:
            (value,) = await run_all([call], timeout)
        except TaskTimeout:
            assert timeout is not None
            raise _timeout(fn, timeout, "no task workers, so it runs in a thread of this "
                           "process, which cannot be stopped") from None
        return value

    def _warn_local(self) -> None:
        if not self.warned:
            self.warned = True
            error_log.warning("no task workers (octo serve --task-workers N): tasks run in "
                              "this process")

    # -- dispatch: the queue and its sender ---------------------------------------------------

    async def _dispatch(self, fn: Callable[..., Any], args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        place = socket_place()
        if place is None:
            task = loop.create_task(self._run_here(fn, args, kwargs, None))
            self._local.add(task)
            task.add_done_callback(functools.partial(self._local_done, task_name(fn)))
            return
        payload = _pack(fn, args, kwargs, False, None)  # pickling errors reach the caller
        if len(self._queue) >= self.queue_size:
            if not self._full_logged:
                self._full_logged = True
                error_log.warning("task queue full: %d dispatched tasks wait for a task "
                                  "worker (octo.Octo(task_queue_size=%d)); dispatch raises "
                                  "TaskQueueFull until they drain", len(self._queue),
                                  self.queue_size)
            raise TaskQueueFull(f"cannot dispatch {task_name(fn)}: {len(self._queue)} "
                                "dispatched tasks already wait for a task worker "
                                f"(octo.Octo(task_queue_size={self.queue_size})); add task "
                                "workers (--task-workers) or raise task_queue_size")
        self._queue.append(_Queued(task_name(fn), payload))
        self._start_sender(loop, place)

    def _local_done(self, name: str, task: asyncio.Task[Any]) -> None:
        self._local.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error_log.error("dispatched task %s raised", name, exc_info=task.exception())

    def _start_sender(self, loop: asyncio.AbstractEventLoop, place: rundir.SocketPlace) -> None:
        if self._loop is not loop or self._sender is None or self._sender.done():
            if self._loop is not loop:  # first use, or a new loop (tests): start afresh
                self._wake, self._emptied = asyncio.Event(), asyncio.Event()
                self._loop = loop
            self._sender = loop.create_task(self._send_queued(place))
        assert self._wake is not None and self._emptied is not None
        self._emptied.clear()
        self._wake.set()

    async def _send_queued(self, place: rundir.SocketPlace) -> None:
        """Hand the queued tasks to task workers, oldest first, one at a time: each handover
        returns as soon as a task worker takes the task (it acknowledges before running)."""
        assert self._wake is not None and self._emptied is not None
        retry = RETRY_FIRST
        while True:
            if not self._queue:
                self._emptied.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue[0]
            if not await self._hand_over(item, place, first_try=retry == RETRY_FIRST):
                await asyncio.sleep(retry)
                retry = min(1.0, retry * 2)
                continue
            retry = RETRY_FIRST
            self._queue.popleft()
            TASKS.handed += 1
            TASKS.waited += time.monotonic() - item.queued_at
            if self._full_logged and len(self._queue) < self.queue_size:
                self._full_logged = False

    async def _hand_over(self, item: _Queued, place: rundir.SocketPlace, first_try: bool) -> bool:
        """One attempt; False when it is to be retried."""
        try:
            ok, value = pickle.loads(await _exchange(place, item.payload))
        except (OSError, rundir.RuntimeDirError, TaskWorkerLost, EOFError, ValueError,
                TypeError, pickle.UnpicklingError) as exc:
            # Only a task worker lost while taking the task counts toward dropping it: a
            # socket that cannot be reached (yet) is retried until the process stops.
            item.attempts += isinstance(exc, TaskWorkerLost)
            if item.attempts >= HANDOVER_ATTEMPTS or isinstance(exc, rundir.RuntimeDirError):
                error_log.error("dropped dispatched task %s: %s", item.name, exc)
                return True
            # One warning per outage, not one a second while it lasts.
            (error_log.warning if first_try else error_log.debug)(
                "handing dispatched task %s to a task worker failed (%s); retrying until it "
                "is taken or this process stops", item.name, exc)
            return False
        if not ok:
            error_log.error("dispatched task %s could not be started: %s", item.name, value)
        elif not first_try:
            error_log.info("dispatched task %s handed over to a task worker", item.name)
        return True

    async def _hand_over_now(self, fn: Callable[..., Any], args: tuple[Any, ...],
                             kwargs: dict[str, Any]) -> None:
        place = socket_place()
        if place is None:
            await self._run_here(fn, args, kwargs, None)
            return
        ok, value = pickle.loads(await _exchange(place, _pack(fn, args, kwargs, False, None)))
        if not ok:
            raise value

    async def drain(self, timeout: float) -> None:
        """When the process stops: give queued (and local) tasks up to *timeout* seconds to
        be taken (to finish), then log by name those dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._local:
            await asyncio.wait(set(self._local), timeout=timeout)
        if self._queue and self._loop is loop and self._emptied is not None:
            error_log.info("stopping: %d dispatched task(s) still queued, waiting up to %.1fs "
                           "for task workers to take them: %s", len(self._queue),
                           max(0.0, deadline - loop.time()), self._names())
            try:
                await asyncio.wait_for(self._emptied.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                pass
        if self._queue:
            error_log.error("stopping: dropped %d dispatched task(s) that no task worker took "
                            "within the graceful timeout (--graceful-timeout %.1fs): %s",
                            len(self._queue), timeout, self._names())
            self._queue.clear()
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
            self._sender = None
        for task in self._local:
            task.cancel()

    def _names(self) -> str:
        names = [item.name for item in list(self._queue)[:SHOWN]]
        more = len(self._queue) - len(names)
        return ", ".join(names) + (f" (and {more} more)" if more > 0 else "")


def _timeout(fn: Any, timeout: float, what: str) -> TaskTimeout:
    name = task_name(fn)
    return TaskTimeout([name], timeout,
                       f"task {name} did not finish within {timeout}s (timeout=): {what}")


def _pack(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], wait: bool,
          timeout: float | None) -> bytes:
    """The request frame. The deadline is on the CLOCK_MONOTONIC clock, which every
    process of the machine shares; the timeout itself is for the task worker's messages."""
    deadline = None if timeout is None else time.monotonic() + timeout
    payload = pickle.dumps((fn, args, kwargs, wait, deadline, timeout),
                           protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > MAX_FRAME:
        raise ValueError(f"task {task_name(fn)} pickles to {len(payload)} bytes, more than the "
                         f"{MAX_FRAME} a task frame may hold")
    return payload


async def _exchange(place: rundir.SocketPlace, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(place.address)
    try:
        # Nothing is sent to (or unpickled from) a task worker of another user.
        rundir.check_server(writer.get_extra_info("socket"), place.path)
        writer.write(FRAME_LEN.pack(len(payload)) + payload)
        await writer.drain()
        try:
            (size,) = FRAME_LEN.unpack(await reader.readexactly(FRAME_LEN.size))
            return await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise TaskWorkerLost("the task worker died before answering") from exc
    finally:
        writer.close()
