"""A cache and named locks on top of shared tables (Octane's cache, Laravel's Cache::lock).

Values are pickled into a Bytes column next to their expiry time. Expired rows are dropped
when read, and reused when the table is full (then, if none has expired, the row closest to
expiring goes). ``remember`` regenerates a missing value under a lock, so a stampede of
requests across all workers computes it once.

Unpickling runs code, so a row is unpickled only when it provably came from this server's
own processes: each value carries a 16-byte tag over its key, expiry time and pickle, made
with keyed BLAKE2b (a MAC by design, RFC 7693; less than half the cost of OpenSSL's
HMAC-SHA256 here) under a secret the master draws at start and its workers inherit over fork
(``rundir.server_key``: never written to disk or the environment). A row whose
tag does not match (planted, altered, or written by another server) is a miss: it is
removed, logged once, and never unpickled.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import os
import pickle
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar, cast

from octo.logs import error_log
from octo.runtime import rundir
from octo.runtime.bridge import checked, coroutine_function, refuse_loop_thread
from octo.runtime.table import Bytes, Float, Table, TableFull, ValueTooLarge

T = TypeVar("T")
FOREVER = 0.0
TAG_SIZE = 16  # bytes of MAC kept in front of each pickled value
_EXPIRES = struct.Struct("<d")
_MISSING: Any = object()


class LockTimeout(TimeoutError):
    """``lock.block(timeout)`` could not get the lock in time."""


class Cache:
    def __init__(self, table: Table, locks: Table, runtime: Any = None) -> None:
        self.table = table
        self.locks = locks
        self.runtime = runtime
        # One key per cache table, derived from the server's secret; each tag starts from a
        # copy of the keyed state (cheaper than hashing the key block every time).
        key = hashlib.blake2b(table.name.encode(), key=rundir.server_key(),
                              person=b"octo.cache").digest()[:32]
        self._mac = hashlib.blake2b(key=key, digest_size=TAG_SIZE)
        self._forgery_logged = False

    @classmethod
    def columns(cls, value_size: int) -> dict[str, Any]:
        return {"value": Bytes(value_size + TAG_SIZE), "expires": Float}

    def _pack(self, value: Any) -> bytes:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        size = self.table.columns["value"].size - TAG_SIZE
        if len(data) > size:
            raise ValueTooLarge(f"cache {self.table.name!r}: value pickles to {len(data)} bytes, "
                                f"more than its value size {size}")
        return data

    @staticmethod
    def _deadline(ttl: float | None) -> float:
        return FOREVER if not ttl else time.time() + ttl

    def _tag(self, key: str, expires: float, data: bytes) -> bytes:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        mac = self._mac.copy()
        mac.update(len(raw).to_bytes(2, "little") + raw + _EXPIRES.pack(expires))
        mac.update(data)
        return mac.digest()

    def _seal(self, key: str, data: bytes, expires: float) -> bytes:
        return self._tag(key, expires, data) + data

    def _live(self, key: str) -> dict[str, Any] | None:
        """The key's row if it is live and authentic (lock held); its "value" is the pickle."""
        row = self.table.row_unlocked(key)
        if row is None:
            return None
        if row["expires"] and row["expires"] <= time.time():
            self.table.delete_unlocked(key)  # expired: evicted when read
            return None
        sealed = row["value"]
        data = sealed[TAG_SIZE:]
        if not hmac.compare_digest(sealed[:TAG_SIZE], self._tag(key, row["expires"], data)):
            self.table.delete_unlocked(key)
            self._log_forgery(key)
            return None
        row["value"] = data
        return row

    def _log_forgery(self, key: str) -> None:
        if not self._forgery_logged:
            self._forgery_logged = True
            error_log.warning("cache %r: the row of key %r was not written by this server "
                              "(integrity check failed); treated as a miss and removed, "
                              "never unpickled (further ones are not logged)",
                              self.table.name, key)

    def _store(self, key: str, sealed: bytes, expires: float) -> None:
        try:
            self.table.set_unlocked(key, {"value": sealed, "expires": expires})
        except TableFull:
            self._evict()
            self.table.set_unlocked(key, {"value": sealed, "expires": expires})

    def _evict(self) -> None:
        now = time.time()
        rows = list(self.table.rows_unlocked())
        expired = [key for key, row in rows if row["expires"] and row["expires"] <= now]
        if expired:
            for key in expired:
                self.table.delete_unlocked(key)
            return
        expiring = [(row["expires"], key) for key, row in rows if row["expires"]]
        victim = min(expiring)[1] if expiring else rows[0][0]
        self.table.delete_unlocked(victim)

    def get(self, key: str, default: Any = None) -> Any:
        with self.table.locked():
            row = self._live(key)
        return default if row is None else pickle.loads(row["value"])

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        expires = self._deadline(ttl)
        sealed = self._seal(key, self._pack(value), expires)
        with self.table.locked():
            self._store(key, sealed, expires)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store only if absent (or expired); True if stored. Atomic across workers."""
        expires = self._deadline(ttl)
        sealed = self._seal(key, self._pack(value), expires)
        with self.table.locked():
            if self._live(key) is not None:
                return False
            self._store(key, sealed, expires)
            return True

    def incr(self, key: str, by: int | float = 1) -> int | float:
        with self.table.locked():
            row = self._live(key)
            current = 0 if row is None else pickle.loads(row["value"])
            value = current + by
            expires = FOREVER if row is None else row["expires"]
            self._store(key, self._seal(key, self._pack(value), expires), expires)
            return value

    def interval(self, key: str, seconds: float,
                 resolver: Callable[[], Any]) -> None:
        """Keep *key* refreshed by the tick runner every *seconds* (once per server);
        readers just ``get`` the latest value and never wait for it to be computed."""
        if self.runtime is None:
            raise RuntimeError("cache.interval needs the cache of an octo.Octo runtime")

        async def refresh() -> None:
            value = resolver()
            if inspect.isawaitable(value):
                value = await value
            self.set(key, value)

        self.runtime.tick(f"cache-interval:{key}", every=seconds, immediate=True)(refresh)

    def forget(self, key: str) -> bool:
        with self.table.locked():
            return self.table.delete_unlocked(key)

    @coroutine_function
    def remember(self, key: str, ttl: float | None,
                 factory: Callable[[], T | Awaitable[T]], *,
                 lock_timeout: float = 10.0) -> Coroutine[Any, Any, T]:
        """The cached value, or *factory*'s result stored for *ttl*: computed by one caller
        across all workers while the others wait for it (``await cache.remember(...)``;
        sync code calls :meth:`remember_sync`)."""
        home = self.runtime.tasks.home_loop if self.runtime is not None else None
        return checked(self._remember(key, ttl, factory, lock_timeout),
                       f"cache.remember({key!r}, ...)", f"cache.remember_sync({key!r}, ...)",
                       home)

    async def _remember(self, key: str, ttl: float | None,
                        factory: Callable[[], T | Awaitable[T]], lock_timeout: float) -> T:
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return cast(T, value)
        async with self._regenerating(key, lock_timeout):
            value = self.get(key, _MISSING)
            if value is _MISSING:
                value = factory()
                if inspect.isawaitable(value):
                    value = await value
                self.set(key, value, ttl)
        return cast(T, value)

    def remember_sync(self, key: str, ttl: float | None, factory: Callable[[], T], *,
                      lock_timeout: float = 10.0) -> T:
        """:meth:`remember` for sync code (a sync view, a thread): *factory* is a plain
        function and runs in the calling thread (so a Django ORM query works there), under
        the same cross-worker lock as ``remember``'s."""
        refuse_loop_thread(f"cache.remember_sync({key!r}, ...)",
                           f"await cache.remember({key!r}, ...)")
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return cast(T, value)
        with self._regenerating(key, lock_timeout):
            value = self.get(key, _MISSING)
            if value is _MISSING:
                value = factory()
                if inspect.isawaitable(value):
                    _discard(value)
                    raise TypeError(f"cache.remember_sync({key!r}): the factory returned an "
                                    "awaitable; await cache.remember(...) takes async "
                                    "factories")
                self.set(key, value, ttl)
        return cast(T, value)

    def _regenerating(self, key: str, lock_timeout: float) -> Block:
        lock = Lock(self.locks, f"remember:{key}", ttl=max(lock_timeout, 1.0))
        return lock.block(lock_timeout)


def _discard(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()  # a coroutine that will never run: no "never awaited" warning on top


class Lock:
    """A named lock shared by all workers; expires after *ttl* so a dead owner frees it."""

    def __init__(self, table: Table, name: str, ttl: float = 10.0) -> None:
        self.table = table
        self.name = name
        self.ttl = ttl
        self.owner = f"{os.getpid()}:{uuid.uuid4().hex[:16]}".encode()

    @staticmethod
    def columns() -> dict[str, Any]:
        return {"owner": Bytes(40), "expires": Float}

    def acquire(self) -> bool:
        now = time.time()
        with self.table.locked():
            row = self.table.row_unlocked(self.name)
            if row is not None and row["expires"] > now and row["owner"] != self.owner:
                return False
            self.table.set_unlocked(self.name, {"owner": self.owner,
                                                "expires": now + self.ttl})
            return True

    def release(self) -> bool:
        """Release only if this lock object owns it (an expired lock may have a new owner)."""
        with self.table.locked():
            row = self.table.row_unlocked(self.name)
            if row is None or row["owner"] != self.owner:
                return False
            return self.table.delete_unlocked(self.name)

    def block(self, seconds: float, poll: float = 0.005) -> Block:
        """Wait up to *seconds* for the lock, then hold it for the block:
        ``async with lock.block(5):`` in async code, ``with lock.block(5):`` in sync code
        (a sync view, a thread). Raises :class:`LockTimeout` when not acquired in time."""
        return Block(self, seconds, poll)


class Block:
    """What ``Lock.block`` returns: an async and a sync context manager."""

    def __init__(self, lock: Lock, seconds: float, poll: float) -> None:
        self.lock = lock
        self.seconds = seconds
        self.poll = poll

    def _timeout(self) -> LockTimeout:
        return LockTimeout(f"lock {self.lock.name!r} not acquired within {self.seconds}s")

    async def __aenter__(self) -> Lock:
        deadline = time.monotonic() + self.seconds
        while not self.lock.acquire():
            if time.monotonic() >= deadline:
                raise self._timeout()
            await asyncio.sleep(self.poll)
        return self.lock

    async def __aexit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.lock.release()

    def __enter__(self) -> Lock:
        name = self.lock.name
        refuse_loop_thread(f"with lock.block() (lock {name!r})",
                           f"async with lock.block() (lock {name!r})")
        deadline = time.monotonic() + self.seconds
        while not self.lock.acquire():
            if time.monotonic() >= deadline:
                raise self._timeout()
            time.sleep(self.poll)
        return self.lock

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.lock.release()
