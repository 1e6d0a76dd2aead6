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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import mmap
import os
import platform
import threading
import time
from types import TracebackType
from typing import Any

from octo.logs import error_log
from octo.runtime.shmfiles import pid_exists

CHECK_EVERY = 0.05  # seconds a waiter spins before asking whether the holder is alive
SPINS = 200  # CAS attempts before yielding the CPU
SEQ_CST = 5


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
    def acquire(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class LocalLock(_LockBase):
    """A table in one process: a thread lock is all it needs."""

    def __init__(self) -> None:
        self._thread = threading.Lock()
        self.acquire = self._thread.acquire  # type: ignore[method-assign,assignment]
        self.release = self._thread.release  # type: ignore[method-assign]


class FileLock(_LockBase):
    """fcntl byte-range lock on the table file (plus a thread lock)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._thread = threading.Lock()

    def acquire(self) -> None:
        self._thread.acquire()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, 0)
        except BaseException:
            self._thread.release()
            raise

    def release(self) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0)
        finally:
            self._thread.release()


class AtomicLock(_LockBase):
    """Owner word at *offset* of *mem* (8-byte aligned), taken by compare-and-swap."""

    def __init__(self, mem: mmap.mmap, offset: int, name: str) -> None:
        if _CAS is None or offset % 8:
            raise ValueError("AtomicLock needs libatomic and an aligned word")
        self._name = name
        self._thread = threading.Lock()
        self._words = memoryview(mem).cast("q")
        self._index = offset // 8
        self._addr = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(mem)) + offset)
        self._expected = ctypes.c_int64(0)
        self._expected_ref = ctypes.byref(self._expected)

    def _try(self, expected: int) -> bool:
        self._expected.value = expected
        return bool(_CAS(self._addr, self._expected_ref, _token, SEQ_CST, SEQ_CST))

    def acquire(self) -> None:
        self._thread.acquire()
        self._expected.value = 0  # _try(0), inlined: this is every table operation
        if _CAS(self._addr, self._expected_ref, _token, SEQ_CST, SEQ_CST):
            return
        try:
            self._contend()
        except BaseException:
            self._thread.release()
            raise

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
                          self._name, holder & 0xFFFFFFFF)
        return True

    def release(self) -> None:
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
