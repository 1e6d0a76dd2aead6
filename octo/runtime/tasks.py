"""Task workers (``octo serve --task-workers N``): CPU-bound work off the HTTP workers.

The master binds one Unix socket and forks task workers that share it, like HTTP workers
share the listening socket. A caller connects, sends one pickled ``(fn, args, kwargs,
wait)`` frame and reads one pickled result frame; each task worker takes one connection at
a time, so the kernel's accept queue spreads tasks across them. Every task runs in its own
sandbox scope with the app's container warmed. A task worker that dies mid-task closes the
connection, and the caller gets ``TaskWorkerLost`` instead of waiting forever.

The frames are pickles, so both ends check the other (``SO_PEERCRED``) before unpickling
anything: a task worker serves only callers of its own user (or root), and a caller sends
and reads only to and from a task worker of its own user (or root). The socket itself is in
the server's private runtime directory, bound and reached through the directory descriptor
the master holds (``octo.runtime.rundir``).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import signal
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from octo.logs import error_log
from octo.runtime import events as ev
from octo.runtime import rundir
from octo.runtime.sandbox import Operation, enter, leave

if TYPE_CHECKING:
    from octo.master.slots import SlotWriter
    from octo.runtime.app import Octo

_LEN = struct.Struct(">Q")
MAX_FRAME = 256 * 1024 * 1024


class TaskWorkerLost(RuntimeError):
    """The task worker running the task died before answering."""


class TaskFailed(RuntimeError):
    """The task raised an exception that could not be sent back as itself."""


def socket_place() -> rundir.SocketPlace | None:
    """The task socket of the server this process belongs to (None without task workers)."""
    directory = rundir.current()
    if directory is None or not directory.task_socket:
        return None
    return directory.socket(directory.task_socket)


# -- caller side (HTTP workers) ----------------------------------------------------------

class Tasks:
    """``rt.tasks``: send picklable callables to the task workers."""

    def __init__(self) -> None:
        self.warned = False

    async def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
                  **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a task worker and return its result (or raise its
        exception)."""
        place = socket_place()
        if place is None:
            return await self._local(fn, args, kwargs)
        payload = pickle.dumps((fn, args, kwargs, True), protocol=pickle.HIGHEST_PROTOCOL)
        reply = await asyncio.wait_for(_exchange(place, payload), timeout)
        ok, value = pickle.loads(reply)
        if ok:
            return value
        raise value

    async def dispatch(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Fire and forget: returns once a task worker has taken the task."""
        place = socket_place()
        if place is None:
            asyncio.get_running_loop().create_task(self._local(fn, args, kwargs))
            return
        payload = pickle.dumps((fn, args, kwargs, False), protocol=pickle.HIGHEST_PROTOCOL)
        await _exchange(place, payload)

    async def _local(self, fn: Callable[..., Any], args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
        if not self.warned:
            self.warned = True
            error_log.warning("no task workers (octo serve --task-workers N): tasks run in "
                              "this process's thread pool")
        from octo.runtime.concurrent import concurrently

        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        (value,) = await concurrently(lambda: fn(*args, **kwargs))
        return value


async def _exchange(place: rundir.SocketPlace, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(place.address)
    try:
        # Nothing is sent to (or unpickled from) a task worker of another user.
        rundir.check_server(writer.get_extra_info("socket"), place.path)
        writer.write(_LEN.pack(len(payload)) + payload)
        await writer.drain()
        try:
            (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
            return await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise TaskWorkerLost("the task worker died before answering") from exc
    finally:
        writer.close()


# -- task worker side ----------------------------------------------------------------------

class TaskWorker:
    """One task worker process: boots the app's runtime, then serves tasks one at a time."""

    def __init__(self, config: Any, sock: socket.socket, slot: SlotWriter | None) -> None:
        self.config = config
        self.sock = sock
        self.slot = slot
        self.runtime: Octo | None = None
        self.loop = asyncio.new_event_loop()
        self.done = 0
        self.busy = False
        self.stopping = False
        self.refused: set[int] = set()  # uids already logged as refused

    def run(self) -> int:
        from octo.worker import EXIT_APP_LOAD_ERROR, EXIT_BOOT_ERROR, load_runtime

        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGQUIT, self._on_term)
        try:
            self.runtime = load_runtime(self.config)
        except Exception as exc:
            error_log.error("%s", exc)
            return EXIT_APP_LOAD_ERROR
        try:
            if self.runtime is not None:
                self.loop.run_until_complete(self.runtime.boot())
        except Exception as exc:
            error_log.error("task worker boot failed: %s", exc)
            return EXIT_BOOT_ERROR
        threading.Thread(target=self._beat_forever, daemon=True).start()
        error_log.info("task worker %d ready", os.getpid())
        try:
            while not self.stopping:
                self._serve_one()
        except SystemExit:
            pass
        if self.runtime is not None:
            self.loop.run_until_complete(self.runtime.stop())
        return 0

    def _on_term(self, signum: int, frame: Any) -> None:
        self.stopping = True
        if not self.busy:
            raise SystemExit(0)

    def _beat_forever(self) -> None:
        # Task workers beat from a thread: a long CPU-bound task is work, not a hang.
        from octo.master.slots import SlotState

        while self.slot is not None:
            self.slot.beat(SlotState.STOPPING if self.stopping else SlotState.READY,
                           time.monotonic(), self.done, int(self.busy), 0.0, 0)
            time.sleep(0.5)

    def _serve_one(self) -> None:
        conn, _ = self.sock.accept()
        if not self._trusted(conn):
            conn.close()
            return
        self.busy = True
        try:
            with conn:
                request = _recv_frame(conn)
                fn, args, kwargs, wait = pickle.loads(request)
                if not wait:
                    _send_frame(conn, pickle.dumps((True, None)))
                reply = self._execute(fn, args, kwargs)
                if wait:
                    _send_frame(conn, reply)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            error_log.warning("task connection failed: %s", exc)
        finally:
            self.done += 1
            self.busy = False

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

    def _execute(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> bytes:
        try:
            value = self.loop.run_until_complete(self._in_scope(fn, args, kwargs))
            return pickle.dumps((True, value), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            # The caller gets the exception (with its traceback text if it cannot be
            # pickled); the worker only notes it.
            error_log.debug("task %s raised %r", getattr(fn, "__qualname__", fn), exc)
            try:
                return pickle.dumps((False, exc), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                text = "".join(traceback.format_exception(exc))
                return pickle.dumps((False, TaskFailed(text)))

    async def _in_scope(self, fn: Callable[..., Any], args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
        runtime = self.runtime
        op = Operation("task")
        if runtime is not None:
            op.state["runtime"] = runtime
        token = enter(op)
        name = getattr(fn, "__qualname__", repr(fn))
        try:
            if runtime is not None:
                await runtime.events.dispatch(ev.TaskReceived(name))
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            if runtime is not None:
                await runtime.finish(op)
                await runtime.events.dispatch(ev.OperationTerminated("task"))
            leave(token)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("caller went away")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _recv_frame(conn: socket.socket) -> bytes:
    (size,) = _LEN.unpack(_recv_exact(conn, _LEN.size))
    if size > MAX_FRAME:
        raise EOFError(f"task frame of {size} bytes is too large")
    return _recv_exact(conn, size)


def _send_frame(conn: socket.socket, data: bytes) -> None:
    conn.sendall(_LEN.pack(len(data)) + data)
