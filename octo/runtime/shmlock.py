"""Locks for shared-memory tables that survive the death of their holder.

The fast lock is an owner word in the shared mapping, taken with one compare-and-swap
(``__atomic_compare_exchange_8`` from libatomic through ctypes) and released with one
store. The word holds the owner's pid and its start time, so a waiter that has spun for a
while can tell a live holder from a dead one (SIGKILLed, or a pid since reused by another
process) and take the lock over: a worker killed inside a locked section blocks nobody for
longer than ``CHECK_EVERY``. Where libatomic cannot be loaded, an ``fcntl`` byte-range lock
(which the kernel drops when its holder dies) does the same job with two system calls per
operation. fcntl and CAS locks exclude processes only, so each lock also holds a thread
lock.

Two ways to hold a lock. ``with lock:`` (and every table operation) waits by blocking its
thread: right for sync code and for short sections with no ``await``. Re-entered on the
thread that holds it — a section held across an ``await`` that another task of the same
loop enters, a table call inside a locked section — it raises :class:`LockReentered`
instead of deadlocking that thread. ``async with lock:`` waits by polling with a bounded
back-off (``await asyncio.sleep``, nothing held meanwhile), so a section may await while
other tasks of its loop, and waiters in other workers, keep running.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import fcntl
import mmap
import os
import platform
import threading
import time
from threading import get_ident
from types import TracebackType
from typing import Any

from octo.logs import error_log
from octo.runtime.shmfiles import pid_exists

CHECK_EVERY = 0.05  # seconds a waiter spins before asking whether the holder is alive
SPINS = 200  # CAS attempts before yielding the CPU
SEQ_CST = 5
# ``async with``: the first poll after a failed try, doubled up to the bound, so a waiter
# notices a release within POLL_MAX however long it has waited.
POLL_FIRST = 0.0005
POLL_MAX = 0.01


class LockReentered(RuntimeError):
    """A blocking acquire of a lock that its own thread holds: waiting would deadlock."""


def _start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live process, None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):  # killed but not reaped yet: it holds nothing any more
        return None
    return int(fields[19])


def owner_token(pid: int) -> int:
    """The owner word for *pid*: pid in the low 32 bits, start time in the high ones."""
    start = _start_time(pid) or 0
    return ((start & 0x7FFFFFFF) << 32) | pid


def holder_alive(token: int) -> bool:
    pid = token & 0xFFFFFFFF
    if not _HAVE_PROC:
        return pid_exists(pid)
    start = _start_time(pid)
    return start is not None and (start & 0x7FFFFFFF) == token >> 32


_HAVE_PROC = os.path.exists("/proc/self/stat")
# This process's owner word, as a ctypes value: passing prepared ctypes objects (and no
# argtypes) makes the CAS call cost less than half of converting Python ints on each call.
_token = ctypes.c_int64(owner_token(os.getpid()))


def own_token() -> int:
    """This process's owner word (see :func:`owner_token`), kept up to date across fork."""
    return int(_token.value)


def _refresh_token() -> None:
    _token.value = owner_token(os.getpid())


os.register_at_fork(after_in_child=_refresh_token)


def _load_atomics() -> tuple[Any, Any]:
    """(compare-and-swap, store) from libatomic, or (None, None) where it is missing."""
    name = ctypes.util.find_library("atomic") or "libatomic.so.1"
    try:
        lib = ctypes.PyDLL(name)  # PyDLL: keep the GIL, the calls never block
        cas, store = lib.__atomic_compare_exchange_8, lib.__atomic_store_8
    except (OSError, AttributeError):
        return None, None
    cas.restype = ctypes.c_bool
    store.restype = None
    return cas, store


_CAS, _STORE = _load_atomics()
# An aligned 8-byte store is a release store on x86-64, so the unlock needs no call there;
# elsewhere a plain store could become visible before the writes it publishes.
_PLAIN_RELEASE = platform.machine() in ("x86_64", "AMD64")


def atomic_available() -> bool:
    return _CAS is not None


class _LockBase:
    """A thread lock (threads of one process) over a process-level lock, which each kind
    implements with ``_take`` (blocking), ``_try_take`` (at once) and ``_give``."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._thread = threading.Lock()
        self._owner = 0  # ident of the thread holding the lock, 0 when free
        self._task: asyncio.Task[Any] | None = None  # the task holding it by async with

    # -- per kind -------------------------------------------------------------------------

    def _take(self) -> None:
        """Take the process-level lock, waiting as long as it takes (thread lock held)."""

    def _try_take(self, check_holder: bool) -> bool:
        """Take the process-level lock if free now (thread lock held); *check_holder*: also
        take it over if its holder has died."""
        return True

    def _give(self) -> None:
        """Release the process-level lock (thread lock held)."""

    # -- blocking: sync code, short sections ------------------------------------------------

    def acquire(self) -> None:
        if not self._thread.acquire(False):
            self._wait_thread()
        self._owner = get_ident()
        try:
            self._take()
        except BaseException:
            self._owner = 0
            self._thread.release()
            raise

    def _wait_thread(self) -> None:
        """The thread lock is taken: wait for it, unless it is this very thread's."""
        if self._owner == get_ident():  # only this thread ever stores its own ident
            raise self._reentered()
        self._thread.acquire()

    def _table(self) -> str:
        return f"table {self.name!r}" if self.name else "a table"

    def _reentered(self) -> LockReentered:
        table = self._table()
        if self._task is not None:
            return LockReentered(
                f"{table}: its lock is held by a task of this event loop (`async with "
                "table.locked():`), which a blocking call on the loop cannot wait for: use "
                "`async with table.locked():` here too (inside that very section, the "
                "*_unlocked methods)")
        return LockReentered(
            f"{table}: its lock is already held on this thread, by a `with table.locked():` "
            "section (held across an await by another task, or the one calling this); "
            "waiting would deadlock. Hold the lock across an await only with `async with "
            "table.locked():`, which waits without blocking the event loop, and use the "
            "*_unlocked methods inside a locked section")

    def release(self) -> None:
        self._owner = 0
        try:
            self._give()
        finally:
            self._thread.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    # -- waiting without blocking the loop: sections that await -------------------------------

    def try_acquire(self, check_holder: bool = False) -> bool:
        """Take the lock if it is free now (or, with *check_holder*, held by a process that
        died); never waits."""
        if not self._thread.acquire(False):
            return False
        try:
            taken = self._try_take(check_holder)
        except BaseException:
            self._thread.release()
            raise
        if not taken:
            self._thread.release()
            return False
        self._owner = get_ident()
        return True

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is not None and task is self._task:
            raise LockReentered(f"{self._table()}: `async with table.locked():` entered "
                                "again by the task that holds it")
        delay = POLL_FIRST
        check_at = time.monotonic() + CHECK_EVERY
        while True:
            check = time.monotonic() >= check_at
            if self.try_acquire(check):
                break
            if check:
                check_at = time.monotonic() + CHECK_EVERY
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)
        self._task = task

    async def __aexit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._task = None
        self.release()


class LocalLock(_LockBase):
    """A table in one process: a thread lock is all it needs."""


class FileLock(_LockBase):
    """fcntl byte-range lock on the table file (plus a thread lock)."""

    def __init__(self, fd: int, name: str = "") -> None:
        super().__init__(name)
        self._fd = fd

    def _take(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, 0)

    def _try_take(self, check_holder: bool) -> bool:
        # The kernel drops the lock of a dead process: nothing to check.
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held elsewhere
            return False
        return True

    def _give(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0)


class AtomicLock(_LockBase):
    """Owner word at *offset* of *mem* (8-byte aligned), taken by compare-and-swap."""

    def __init__(self, mem: mmap.mmap, offset: int, name: str) -> None:
        if _CAS is None or offset % 8:
            raise ValueError("AtomicLock needs libatomic and an aligned word")
        super().__init__(name)
        self._words = memoryview(mem).cast("q")
        self._index = offset // 8
        self._addr = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(mem)) + offset)
        self._expected = ctypes.c_int64(0)
        self._expected_ref = ctypes.byref(self._expected)

    def _try(self, expected: int) -> bool:
        self._expected.value = expected
        return bool(_CAS(self._addr, self._expected_ref, _token, SEQ_CST, SEQ_CST))

    # acquire and release: _LockBase's, with _take and _give inlined (every table
    # operation runs them).
    def acquire(self) -> None:
        if not self._thread.acquire(False):
            self._wait_thread()
        self._owner = get_ident()
        self._expected.value = 0
        if _CAS(self._addr, self._expected_ref, _token, SEQ_CST, SEQ_CST):
            return
        try:
            self._contend()
        except BaseException:
            self._owner = 0
            self._thread.release()
            raise

    def _try_take(self, check_holder: bool) -> bool:
        if self._try(0):
            return True
        return check_holder and self._take_from_dead(self._expected.value)

    def _contend(self) -> None:
        check_at = time.monotonic() + CHECK_EVERY
        tries = 0
        while not self._try(0):
            tries += 1
            if tries % SPINS == 0:
                time.sleep(0 if tries < 50 * SPINS else 0.0002)
                if time.monotonic() >= check_at:
                    if self._take_from_dead(self._expected.value):
                        return
                    check_at = time.monotonic() + CHECK_EVERY

    def _take_from_dead(self, holder: int) -> bool:
        if holder == 0 or holder_alive(holder):
            return False
        if not self._try(holder):
            return False
        error_log.warning("table %r: took over the lock of process %d, which died holding it",
                          self.name, holder & 0xFFFFFFFF)
        return True

    def release(self) -> None:
        self._owner = 0
        try:
            if _PLAIN_RELEASE:
                self._words[self._index] = 0
            else:
                _STORE(self._addr, ctypes.c_int64(0), SEQ_CST)
        finally:
            self._thread.release()

    def holder(self) -> int:
        """Pid holding the lock (0 when free): for tests and diagnostics."""
        return int(self._words[self._index]) & 0xFFFFFFFF
