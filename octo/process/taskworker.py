"""A task worker process (``octo serve --task-workers N``); ``octo.runtime.tasks`` is the
caller side and describes the protocol.

It boots like an HTTP worker: imports the app (exit 4 when that fails), runs the app's ASGI
lifespan startup (exit 3 when it fails; a wrapped app boots its runtime there, warming the
container), and only then reports ready and takes tasks; lifespan shutdown runs on stop.

Tasks are taken one at a time, so the shared socket's accept queue is the queue every task
worker serves from. The event loop runs in the main thread: coroutine tasks run on it,
plain functions in one worker thread, in the task's operation scope (``octo.resolve_sync``
and the other sync entry points work there). The loop stays free meanwhile to notice a
caller that went away (an async task is then cancelled; a plain function runs to its end).

A watchdog thread, which also writes the heartbeat, enforces a task's deadline (its
caller's ``timeout=``) even when the task blocks the loop: at the deadline an async task is
cancelled; a task still running :data:`CANCEL_GRACE` seconds later (a plain function, which
nothing can interrupt, or a coroutine that ignores the cancellation or blocks the loop)
makes the worker log it and exit with :data:`EXIT_TASK_TIMEOUT`, and the master replaces
it: gunicorn's worker timeout, per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from octo.errors import TaskTimeout
from octo.logs import error_log
from octo.process.exits import EXIT_BOOT_ERROR, EXIT_OK, EXIT_TASK_TIMEOUT
from octo.runtime import events as ev
from octo.runtime import rundir
from octo.runtime.sandbox import OperationScope
from octo.runtime.tasks import FRAME_LEN, MAX_FRAME, TaskFailed, task_name

if TYPE_CHECKING:
    from octo.config import Config
    from octo.process.slots import SlotWriter
    from octo.runtime.app import Octo

CANCEL_GRACE = 1.0  # seconds a task past its deadline gets to stop before the worker exits
BEAT_INTERVAL = 0.5


@dataclasses.dataclass(slots=True)
class Request:
    """A task as its caller sent it."""

    fn: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    wait: bool  # run (the caller waits for the result) or dispatch (acknowledged at once)
    deadline: float | None  # time.monotonic() clock: the same in every process
    timeout: float | None  # the caller's timeout=, for messages


@dataclasses.dataclass(slots=True)
class Running:
    """The task a worker is running, as the watchdog sees it."""

    name: str
    is_async: bool
    deadline: float | None  # time.monotonic() clock: the same in every process
    timeout: float | None
    task: asyncio.Task[Any]
    cancelled: bool = False


class TaskWorker:
    """One task worker process: boots the app, then serves tasks one at a time."""

    def __init__(self, config: Config, sock: socket.socket, slot: SlotWriter | None) -> None:
        from octo.process.worker import new_event_loop

        self.config = config
        self.sock = sock
        self.slot = slot
        self.runtime: Octo | None = None
        self.loop = new_event_loop()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="octo-task")
        self.done = 0
        self.busy = False
        self.busy_seconds = 0.0  # closed periods with a task (for task-worker autoscaling)
        self.busy_since = 0.0
        self.stopping = False
        self.force = False
        self.current: Running | None = None
        self.refused: set[int] = set()  # uids already logged as refused
        self._stop: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._watchdog = Watchdog(self)

    # -- life cycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Blocking entry point (in the forked child); returns the exit code."""
        asyncio.set_event_loop(self.loop)
        try:
            return self.loop.run_until_complete(self.serve())
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def serve(self) -> int:
        from octo.process.lifespan import start_app
        from octo.process.worker import as_asgi, load_configured_app

        started = await start_app(
            lambda: as_asgi(load_configured_app(self.config, role="task"), self.config),
            self.config.lifespan, self.config.log_level == "debug")
        if isinstance(started, int):
            return started
        app, lifespan = started
        try:
            self.runtime = getattr(app, "runtime", None)
            if self.runtime is not None and not self.runtime.booted:
                await self.runtime.boot()  # --lifespan off: the runtime still boots
        except Exception as exc:  # the runtime's own boot (warming the container)
            error_log.error("task worker boot failed: %s: %s", type(exc).__name__, exc)
            return EXIT_BOOT_ERROR
        self._install_signals()
        self._watchdog.start()  # the master counts the worker ready from its first beat
        error_log.info("task worker %d ready", os.getpid())
        self.sock.setblocking(False)
        while not self.stopping:
            conn = await self._accept()
            if conn is not None:
                await self._serve(conn)
        await lifespan.shutdown()
        return EXIT_OK

    def _install_signals(self) -> None:
        for sig, force in ((signal.SIGTERM, False), (signal.SIGQUIT, True),
                           (signal.SIGINT, True)):
            self.loop.add_signal_handler(sig, self.request_stop, force)

    def request_stop(self, force: bool = False) -> None:
        """Graceful: finish the current task, take no more. Fast: cancel an async task and
        abandon a plain function's thread."""
        self.stopping = True
        self._stop_event().set()
        if force:
            self.force = True
            self._force_event().set()
        running = self.current
        if force and running is not None and running.is_async:
            running.task.cancel()

    def _stop_event(self) -> asyncio.Event:
        if self._stop is None:
            self._stop = asyncio.Event()
        return self._stop

    def _force_event(self) -> asyncio.Event:
        if self._force is None:
            self._force = asyncio.Event()
        return self._force

    # -- one connection ------------------------------------------------------------------------

    def _serve_one(self) -> None:
        """Take and serve one connection (blocking; for tests)."""
        self.sock.setblocking(False)

        async def one() -> None:
            conn = await self._accept()
            if conn is not None:
                await self._serve(conn)

        self.loop.run_until_complete(one())

    async def _accept(self) -> socket.socket | None:
        loop = asyncio.get_running_loop()
        accepting = loop.create_task(loop.sock_accept(self.sock))
        stopping = loop.create_task(self._stop_event().wait())
        await asyncio.wait({accepting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not accepting.done():
            accepting.cancel()
            await asyncio.gather(accepting, return_exceptions=True)
        if accepting.cancelled() or accepting.exception() is not None:
            if not accepting.cancelled():
                error_log.warning("task socket: accept failed: %s", accepting.exception())
            return None
        conn, _ = accepting.result()
        return conn  # taken in the instant of a stop: served all the same

    async def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        if not self._trusted(conn):
            conn.close()
            return
        self.busy_since = time.monotonic()
        self.busy = True
        try:
            with conn:
                await self._serve_task(conn)
        except TimeoutError:
            error_log.warning("task socket: a caller did not send its whole task within "
                              "--timeout %ss; closed its connection", self.config.timeout)
        except (OSError, EOFError) as exc:
            error_log.warning("task connection failed: %s", exc)
        finally:
            self.done += 1
            self.busy = False
            self.busy_seconds += time.monotonic() - self.busy_since

    async def _serve_task(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        frame = await asyncio.wait_for(_recv_frame(loop, conn), self.config.timeout)
        try:
            request = _unpack(frame)
        except Exception as exc:
            # Not started (a module the task worker cannot import, a stale frame): the
            # caller gets the reason, not a lost worker.
            error_log.warning("task frame could not be unpickled: %r", exc)
            await loop.sock_sendall(conn, _frame(_reply(False, TaskFailed(
                f"the task could not be unpickled in the task worker: {exc!r}"))))
            return
        name = task_name(request.fn)
        if not request.wait:
            try:
                await loop.sock_sendall(conn, _frame(pickle.dumps((True, None))))
            except OSError:
                # Unacknowledged means not taken: the caller counts it as dropped (it
                # gave up, or died), so it must not run.
                error_log.warning("dispatched task %s not run: its caller went away before "
                                  "it was acknowledged", name)
                return
        elif _caller_gone(conn):
            error_log.info("task %s not run: its caller left before a task worker was free "
                           "(timeout=%s)", name, request.timeout)
            return
        reply = await self._execute(request, name, conn if request.wait else None)
        if reply is not None:
            try:
                await loop.sock_sendall(conn, _frame(reply))
            except OSError as exc:
                error_log.debug("the caller of task %s left before its result: %s", name, exc)

    def _trusted(self, conn: socket.socket) -> bool:
        """Only this user's processes (or root's) may send pickles to run."""
        pid, uid = rundir.peer_credentials(conn)
        if rundir.trusted_uid(uid):
            return True
        if uid not in self.refused:
            self.refused.add(uid)
            error_log.warning("task socket: refused a connection from uid %d (pid %d): only "
                              "uid %d and root may send tasks (further refusals of uid %d "
                              "are not logged)", uid, pid, os.geteuid(), uid)
        return False

    # -- running a task ------------------------------------------------------------------------

    async def _execute(self, request: Request, name: str,
                       caller: socket.socket | None) -> bytes | None:
        """Run the task; the pickled reply, or None when nobody will read one."""
        loop = asyncio.get_running_loop()
        is_async = inspect.iscoroutinefunction(request.fn)
        task = loop.create_task(self._in_scope(request.fn, request.args, request.kwargs,
                                               is_async))
        running = Running(name, is_async, request.deadline, request.timeout, task)
        self.current = running
        self._watchdog.wake()
        if caller is not None:
            loop.add_reader(caller.fileno(), self._on_caller_readable, caller, running)
        abandon = loop.create_task(self._force_event().wait())
        try:
            await asyncio.wait({task, abandon}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            abandon.cancel()
            if caller is not None:
                loop.remove_reader(caller.fileno())
            self.current = None
            self._watchdog.wake()
        if not task.done():  # a fast stop while a plain function runs: left to the exit
            error_log.warning("fast stop: abandoning task %s", name)
            return None
        return self._outcome(running, caller is not None)

    def _on_caller_readable(self, caller: socket.socket, running: Running) -> None:
        # The caller sends nothing after its frame: readable means it went away (its
        # timeout= passed, or the request that waited was cancelled).
        asyncio.get_running_loop().remove_reader(caller.fileno())
        if not _caller_gone(caller):
            return
        if running.is_async and not running.task.done():
            error_log.info("task %s: its caller went away; cancelling it", running.name)
            running.task.cancel()

    def _outcome(self, running: Running, wait: bool) -> bytes | None:
        task = running.task
        if task.cancelled():
            why = "its deadline passed" if running.cancelled else "its caller went away"
            error_log.info("task %s cancelled: %s", running.name, why)
            if not (wait and running.cancelled):
                return None
            return _reply(False, TaskTimeout([running.name], running.timeout or 0.0,
                                             f"task {running.name} did not finish within "
                                             f"{running.timeout}s (timeout=): it was "
                                             "cancelled"))
        exc = task.exception()
        if exc is not None:
            if wait:  # the caller gets it
                error_log.debug("task %s raised %r", running.name, exc)
            else:  # fire and forget: the log is the only place it shows
                error_log.error("dispatched task %s raised", running.name, exc_info=exc)
            return _reply(False, exc) if wait else None
        return _reply(True, task.result()) if wait else None

    async def _in_scope(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                        is_async: bool) -> Any:
        runtime = self.runtime
        async with OperationScope("task", runtime):
            if runtime is not None:
                await runtime.events.dispatch(ev.TaskReceived(getattr(fn, "__qualname__",
                                                                      repr(fn))))
            if is_async:
                result = fn(*args, **kwargs)
            else:
                # A thread, so the loop stays free for the watchdog's cancellations and
                # for the sync entry points this function may call.
                call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
                result = await asyncio.get_running_loop().run_in_executor(self.executor, call)
            if inspect.isawaitable(result):
                result = await result
            return result

    # -- called by the watchdog thread ---------------------------------------------------------

    def cancel_at_deadline(self, running: Running) -> None:
        """In the loop: the deadline passed; cancel an async task (a plain function cannot
        be cancelled: it has until the grace ends)."""
        running.cancelled = True
        if running.is_async and not running.task.done():
            running.task.cancel()

    def give_up(self, running: Running) -> None:
        """The task outlived its deadline and the grace: exit, and be replaced."""
        how = ("was cancelled and did not stop" if running.is_async else
               "is a plain function, which cannot be interrupted, and was still running")
        error_log.error("task %s passed its timeout (timeout=%ss) and %s %.1fs later: this "
                        "task worker exits (%d) and the master replaces it", running.name,
                        running.timeout, how, CANCEL_GRACE, EXIT_TASK_TIMEOUT)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(EXIT_TASK_TIMEOUT)

    def beat(self) -> None:
        from octo.process.slots import SlotState

        if self.slot is not None:
            now = time.monotonic()
            busy = self.busy  # read once: the loop thread changes it
            self.slot.write_busy(self.busy_seconds + (now - self.busy_since if busy else 0.0),
                                 time.process_time())
            self.slot.beat(SlotState.STOPPING if self.stopping else SlotState.READY,
                           now, self.done, int(busy), 0.0, 0)


class Watchdog(threading.Thread):
    """Heartbeat and task deadlines, from a thread: a long CPU-bound task is work, not a
    hang, and a task that blocks the loop still gets stopped at its deadline."""

    def __init__(self, worker: TaskWorker) -> None:
        super().__init__(name="octo-task-watchdog", daemon=True)
        self.worker = worker
        self._wake = threading.Event()

    def wake(self) -> None:
        """The running task changed: look at its deadline now."""
        self._wake.set()

    def run(self) -> None:
        worker = self.worker
        while True:
            worker.beat()
            wait = BEAT_INTERVAL
            running = worker.current
            if running is not None and running.deadline is not None:
                wait = min(wait, self._check(running))
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

    def _check(self, running: Running) -> float:
        """Act on *running*'s deadline; seconds until the next thing to do."""
        assert running.deadline is not None
        now = time.monotonic()
        if not running.cancelled and now >= running.deadline:
            running.cancelled = True  # once: the loop may be blocked and not see it yet
            with contextlib.suppress(RuntimeError):  # the loop closed: the exit is near
                self.worker.loop.call_soon_threadsafe(self.worker.cancel_at_deadline,
                                                      running)
        if now >= running.deadline + CANCEL_GRACE:
            if self.worker.current is running and not running.task.done():
                self.worker.give_up(running)
            return BEAT_INTERVAL
        due = running.deadline + (CANCEL_GRACE if running.cancelled else 0.0)
        return due - now


# -- frames ----------------------------------------------------------------------------------

async def _recv_exact(loop: asyncio.AbstractEventLoop, conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = await loop.sock_recv(conn, min(size, 1 << 20))
        if not chunk:
            raise EOFError("caller went away")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


async def _recv_frame(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    (size,) = FRAME_LEN.unpack(await _recv_exact(loop, conn, FRAME_LEN.size))
    if size > MAX_FRAME:
        raise EOFError(f"task frame of {size} bytes is too large")
    return await _recv_exact(loop, conn, size)


def _frame(data: bytes) -> bytes:
    return FRAME_LEN.pack(len(data)) + data


def _unpack(frame: bytes) -> Request:
    """``(fn, args, kwargs, wait, deadline, timeout)``; a frame of an older caller ends
    after ``wait``."""
    fields = pickle.loads(frame)
    fn, args, kwargs, wait = fields[:4]
    deadline = fields[4] if len(fields) > 4 else None
    timeout = fields[5] if len(fields) > 5 else None
    return Request(fn, tuple(args), dict(kwargs), bool(wait), deadline, timeout)


def _reply(ok: bool, value: Any) -> bytes:
    try:
        data = pickle.dumps((ok, value), protocol=pickle.HIGHEST_PROTOCOL)
        if not ok:
            # An exception whose __init__ takes other arguments than its args pickles but
            # does not unpickle: find out here, not in the caller.
            pickle.loads(data)
        return data
    except Exception as exc:
        # The caller gets the exception's traceback text (or the reason the result could
        # not be sent) instead of a lost worker or an unpickling error.
        if isinstance(value, BaseException):
            text = "".join(traceback.format_exception(value))
        else:
            text = f"the task's result could not be pickled: {exc!r}"
        return pickle.dumps((False, TaskFailed(text)))


def _caller_gone(conn: socket.socket) -> bool:
    """True when the caller closed its end (it sends nothing after its frame)."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
