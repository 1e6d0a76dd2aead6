"""Shared-memory tables: fixed-size rows of typed columns, visible to every worker.

Layout: a header (magic, capacity, rows used, lock word), then ``rows`` slots of open
addressing (linear probing) keyed by bytes. Each slot is ``state (1 byte) | key length (2) |
key``, padded to 8 bytes, then the Int (int64) and Float (double) columns, 8-byte aligned so
they are read and written as machine words, then Str(n)/Bytes(n) columns (a 2-byte length
plus n bytes). Every operation holds the table's lock (see ``octo.runtime.shmlock``): an
owner word taken by compare-and-swap that a waiter takes over when its holder has died, or
an ``fcntl`` byte-range lock where libatomic is missing. Either way a worker SIGKILLed
mid-operation blocks nobody.

Under ``octo serve`` the backing file lives in the server's private runtime directory
(``octo.runtime.rundir``; in shared memory by default), named for the server, the table and
its schema: workers share it, a reload with the same schema keeps the data, a changed schema
gets a fresh table, and the master removes the files when the server stops (and, on the next
start, files left by a master that was killed). The file is created and opened only through
the directory the master checked and holds open, never through a link, and never adopted
from another user. Elsewhere the table is process-local.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import mmap
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from octo.logs import error_log
from octo.runtime import rundir, shmfiles
from octo.runtime.shmlock import AtomicLock, FileLock, LocalLock, atomic_available
from octo.stats import TABLES

_HEADER = struct.Struct("<8sQQQ")  # magic, capacity, used, lock word
HEADER_SIZE = _HEADER.size
LOCK_OFFSET = 24
MAGIC = b"octotbl2"
EMPTY, USED, DELETED = 0, 1, 2
_STATE_USED = bytes([USED])


class TableError(Exception):
    pass


class TableFull(TableError):
    pass


class ValueTooLarge(TableError, ValueError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    kind: str  # "int", "float", "str", "bytes"
    size: int = 0

    @property
    def width(self) -> int:
        return 8 if self.numeric else 2 + self.size

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")


Int = Column("int")
Float = Column("float")


def Str(size: int) -> Column:  # noqa: N802 - reads like a type in declarations
    if size <= 0 or size > 65535:
        raise ValueError("Str(size) needs 1 <= size <= 65535")
    return Column("str", size)


def Bytes(size: int) -> Column:  # noqa: N802
    if size <= 0 or size > 65535:
        raise ValueError("Bytes(size) needs 1 <= size <= 65535")
    return Column("bytes", size)


def _align8(n: int) -> int:
    return (n + 7) & ~7


class Table:
    """``get/set/incr/decr/delete/exists/len/iter/clear`` on shared rows."""

    def __init__(self, name: str, rows: int, columns: Mapping[str, Column],
                 key_size: int = 64, server_id: str | None = None) -> None:
        if rows <= 0:
            raise ValueError("rows must be positive")
        self.name = name
        self.capacity = rows
        self.key_size = key_size
        self.columns = dict(columns)
        self._layout()
        self.shared = server_id is not None
        # key -> (row offset, end of its tag, tag): where this process last found the key.
        # Checked under the lock against the slot's state+length+key, so a stale hint (row
        # deleted or moved by another worker) only costs a normal lookup.
        self._hints: dict[str | bytes, tuple[int, int, bytes]] = {}
        self._open(server_id)
        self.ints = memoryview(self.mem).cast("q")
        self.floats = memoryview(self.mem).cast("d")
        TABLES[name] = self

    def _layout(self) -> None:
        """Column offsets: numeric columns first so each lands on an 8-byte boundary."""
        for col, kind in self.columns.items():
            if not isinstance(kind, Column):
                raise TypeError(f"table {self.name!r}: column {col!r} must be octo.Int, "
                                f"octo.Float or octo.Str(n), not {kind!r}")
        ordered = sorted(self.columns.items(), key=lambda item: not item[1].numeric)
        self.offsets: dict[str, int] = {}
        offset = _align8(3 + self.key_size)
        for col, kind in ordered:
            self.offsets[col] = offset
            offset += kind.width
        self.slot_size = _align8(offset)
        # column -> (word offset in its slot, is Int) for the incr fast path
        self._words = {col: (self.offsets[col] // 8, kind.kind == "int")
                       for col, kind in self.columns.items() if kind.numeric}

    # -- storage -------------------------------------------------------------------------

    def schema_hash(self) -> str:
        spec = repr((MAGIC, atomic_available(), self.capacity, self.key_size, sorted(
            (c, k.kind, k.size) for c, k in self.columns.items())))
        return hashlib.sha1(spec.encode()).hexdigest()[:12]

    def _open(self, server_id: str | None) -> None:
        size = HEADER_SIZE + self.capacity * self.slot_size
        if server_id is None:
            self.fd = -1
            self.path = None
            self.mem = mmap.mmap(-1, size)
            _HEADER.pack_into(self.mem, 0, MAGIC, self.capacity, 0, 0)
            self.lock: LocalLock | FileLock | AtomicLock = LocalLock(self.name)
            return
        directory = rundir.current()
        if directory is None:
            raise TableError(f"table {self.name!r}: a shared table needs the runtime "
                             "directory of an octo serve master")
        file_name = shmfiles.table_name(server_id, self.name, self.schema_hash())
        self.path = directory.join(file_name)
        fd = directory.open_file(file_name)
        self.fd = fd
        with FileLock(fd):  # creation and first-time formatting: once, across workers
            fresh = os.fstat(fd).st_size < size
            if fresh:
                os.ftruncate(fd, size)
            self.mem = mmap.mmap(fd, size)
            if fresh or self.mem[:8] != MAGIC:
                _HEADER.pack_into(self.mem, 0, MAGIC, self.capacity, 0, 0)
                _log_schema(directory, server_id, self.name, file_name)
        self.lock = (AtomicLock(self.mem, LOCK_OFFSET, self.name) if atomic_available()
                     else FileLock(fd, self.name))

    def locked(self) -> LocalLock | FileLock | AtomicLock:
        """The table's lock, around several ``*_unlocked`` calls made atomic together:
        ``with table.locked():`` in sync code or a section with no ``await``, ``async with
        table.locked():`` for a section that awaits (its waiters never block the event loop).
        A blocking wait on the thread that holds the lock raises ``LockReentered`` rather
        than deadlocking (see ``octo.runtime.shmlock``)."""
        return self.lock

    # -- slots ---------------------------------------------------------------------------

    def _key(self, key: str | bytes) -> bytes:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        if len(raw) > self.key_size:
            raise ValueTooLarge(f"table {self.name!r}: key of {len(raw)} bytes is longer than "
                                f"its key size {self.key_size}")
        return raw

    def _base(self, slot: int) -> int:
        return HEADER_SIZE + slot * self.slot_size

    def _find(self, raw: bytes) -> tuple[int, int]:
        """(slot of the key or -1, first free slot on its probe path or -1)."""
        mem = self.mem
        capacity = self.capacity
        size = self.slot_size
        tagged = _STATE_USED + len(raw).to_bytes(2, "little") + raw  # state, length, key
        end = len(tagged)
        slot = zlib.crc32(raw) % capacity
        free = -1
        for _ in range(capacity):
            base = HEADER_SIZE + slot * size
            if mem[base:base + end] == tagged:
                return slot, free
            state = mem[base]
            if state == EMPTY:
                return -1, slot if free < 0 else free
            if state == DELETED and free < 0:
                free = slot
            slot = slot + 1 if slot + 1 < capacity else 0
        return -1, free

    def _locate(self, key: str | bytes, claim: bool) -> int:
        """Row offset of *key* (claimed when new and *claim*, else -1); lock held."""
        try:
            hint = self._hints.get(key)
        except TypeError:  # bytearray, memoryview: fine as keys, not as dict keys
            hint = None
        if hint is not None and self.mem[hint[0]:hint[1]] == hint[2]:
            return hint[0]
        raw = self._key(key)
        slot, free = self._find(raw)
        if slot < 0:
            if not claim:
                return -1
            slot = self._claim(raw, free)
        base = HEADER_SIZE + slot * self.slot_size
        if len(self._hints) >= 2 * self.capacity:
            self._hints.clear()  # bounded: keys come and go
        with contextlib.suppress(TypeError):
            self._hints[key] = (base, base + 3 + len(raw),
                                _STATE_USED + len(raw).to_bytes(2, "little") + raw)
        return base

    def _slot(self, raw: bytes) -> int:
        """The key's slot, claimed (zeroed) when the key is new."""
        slot, free = self._find(raw)
        return slot if slot >= 0 else self._claim(raw, free)

    def _claim(self, raw: bytes, free: int) -> int:
        if free < 0:
            raise TableFull(f"table {self.name!r} is full ({self.capacity} rows)")
        base = self._base(free)
        mem = self.mem
        mem[base:base + self.slot_size] = bytes(self.slot_size)
        mem[base + 1:base + 3] = len(raw).to_bytes(2, "little")
        mem[base + 3:base + 3 + len(raw)] = raw
        mem[base] = USED
        self.ints[2] += 1  # rows used
        return free

    def _column(self, column: str) -> tuple[Column, int]:
        try:
            return self.columns[column], self.offsets[column]
        except KeyError:
            raise KeyError(f"table {self.name!r} has no column {column!r}") from None

    def _read(self, base: int, kind: Column, offset: int) -> Any:
        at = base + offset
        if kind.kind == "int":
            return self.ints[at >> 3]
        if kind.kind == "float":
            return self.floats[at >> 3]
        mem = self.mem
        length = mem[at] | (mem[at + 1] << 8)
        data = mem[at + 2:at + 2 + length]
        return data if kind.kind == "bytes" else data.decode()

    def _check(self, column: str, value: Any) -> Any:
        """*value* as stored in *column*, or TypeError/ValueTooLarge naming both."""
        kind, _ = self._column(column)
        wanted: Any = {"int": int, "float": (int, float), "str": str, "bytes": bytes}[kind.kind]
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise TypeError(f"table {self.name!r}: column {column!r} is "
                            f"{kind.kind.capitalize()}, got {type(value).__name__}")
        if kind.numeric:
            return float(value) if kind.kind == "float" else value
        data = value.encode() if isinstance(value, str) else value
        if len(data) > kind.size:
            raise ValueTooLarge(f"table {self.name!r}: column {column!r} holds "
                                f"{kind.size} bytes, value has {len(data)}")
        return data

    def _write(self, base: int, column: str, value: Any) -> None:
        kind, offset = self.columns[column], self.offsets[column]
        at = base + offset
        if kind.kind == "int":
            self.ints[at >> 3] = value
        elif kind.kind == "float":
            self.floats[at >> 3] = value
        else:
            self.mem[at:at + 2] = len(value).to_bytes(2, "little")
            self.mem[at + 2:at + 2 + len(value)] = value

    def _row(self, base: int) -> dict[str, Any]:
        return {col: self._read(base, kind, self.offsets[col])
                for col, kind in self.columns.items()}

    # -- compound operations: call with the lock held (see ``locked()``) --------------------

    def row_unlocked(self, key: str | bytes) -> dict[str, Any] | None:
        slot, _ = self._find(self._key(key))
        return None if slot < 0 else self._row(self._base(slot))

    def set_unlocked(self, key: str | bytes, values: Mapping[str, Any]) -> None:
        checked = {column: self._check(column, value) for column, value in values.items()}
        base = self._base(self._slot(self._key(key)))
        for column, value in checked.items():
            self._write(base, column, value)

    def delete_unlocked(self, key: str | bytes) -> bool:
        slot, _ = self._find(self._key(key))
        if slot < 0:
            return False
        self.mem[self._base(slot)] = DELETED
        self.ints[2] -= 1
        return True

    def rows_unlocked(self) -> Iterator[tuple[bytes, dict[str, Any]]]:
        mem = self.mem
        for slot in range(self.capacity):
            base = self._base(slot)
            if mem[base] == USED:
                length = mem[base + 1] | (mem[base + 2] << 8)
                yield mem[base + 3:base + 3 + length], self._row(base)

    # -- public API ----------------------------------------------------------------------

    def get(self, key: str | bytes, column: str | None = None) -> Any:
        if column is not None:
            kind, offset = self._column(column)
        lock = self.lock
        lock.acquire()
        try:
            base = self._locate(key, claim=False)
            if base < 0:
                return None
            return self._read(base, kind, offset) if column is not None else self._row(base)
        finally:
            lock.release()

    def set(self, key: str | bytes, values: Mapping[str, Any]) -> None:
        self._key(key)
        checked = {column: self._check(column, value) for column, value in values.items()}
        lock = self.lock
        lock.acquire()
        try:
            base = self._locate(key, claim=True)
            for column, value in checked.items():
                self._write(base, column, value)
        finally:
            lock.release()

    def incr(self, key: str | bytes, column: str, by: int | float = 1) -> int | float:
        """Add *by* to a numeric column atomically; a missing row starts at 0."""
        try:
            word, is_int = self._words[column]
        except KeyError:
            raise self._not_numeric(column) from None
        if is_int and not isinstance(by, int):
            raise TypeError(f"table {self.name!r}: column {column!r} is Int; incr by an int")
        lock = self.lock
        lock.acquire()
        try:
            at = (self._locate(key, claim=True) >> 3) + word
            words: memoryview[Any] = self.ints if is_int else self.floats
            value: int | float = words[at] + by
            words[at] = value
            return value
        finally:
            lock.release()

    def _not_numeric(self, column: str) -> Exception:
        kind, _ = self._column(column)  # KeyError for an unknown column
        return TypeError(f"table {self.name!r}: column {column!r} is "
                         f"{kind.kind.capitalize()}; incr needs Int or Float")

    def decr(self, key: str | bytes, column: str, by: int | float = 1) -> int | float:
        return self.incr(key, column, -by)

    def delete(self, key: str | bytes) -> bool:
        self._key(key)
        with self.lock:
            return self.delete_unlocked(key)

    def exists(self, key: str | bytes) -> bool:
        raw = self._key(key)
        with self.lock:
            return self._find(raw)[0] >= 0

    def __len__(self) -> int:
        with self.lock:
            return int(self.ints[2])

    def usage(self) -> tuple[int, int]:
        """(rows used, capacity), read without the lock (one aligned word): for --metrics,
        which must never wait on a table."""
        return int(self.ints[2]), self.capacity

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, row) pairs; each row is read under the lock, so it is never torn."""
        for slot in range(self.capacity):
            with self.lock:
                base = self._base(slot)
                if self.mem[base] != USED:
                    continue
                length = self.mem[base + 1] | (self.mem[base + 2] << 8)
                key = self.mem[base + 3:base + 3 + length].decode("utf-8", "replace")
                row = self._row(base)
            yield key, row

    def clear(self) -> None:
        with self.lock:
            self.mem[HEADER_SIZE:] = bytes(len(self.mem) - HEADER_SIZE)
            self.ints[2] = 0


def _log_schema(directory: rundir.RuntimeDir, server_id: str, name: str,
                file_name: str) -> None:
    others = [f for f in shmfiles.list_tables(directory, server_id)
              if f.startswith(f"{server_id}-{name}-") and f != file_name]
    if others:
        error_log.warning("table %r: schema changed, starting a fresh table (%s)", name,
                          file_name)
