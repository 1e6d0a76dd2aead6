"""Shared-memory tables: fixed-size rows of typed columns, visible to every worker.

Layout: a header, then ``rows`` slots of open addressing (linear probing) keyed by bytes.
Each slot is ``state (1 byte) | key length (2) | key | columns``; Int is int64, Float is a
double, Str(n) is a 2-byte length plus n bytes. Every operation holds the table's lock: an
``fcntl`` byte-range lock on the backing file (the kernel drops it when the holder dies, so
a worker SIGKILLed mid-operation blocks nobody) plus a thread lock (fcntl locks do not
exclude threads of one process).

Under ``octo serve`` the backing file lives in /dev/shm, named for the server, the table and
its schema: workers share it, a reload with the same schema keeps the data, a changed schema
gets a fresh table, and the master removes the files when the server stops (and, on the next
start, files left by a master that was killed). Elsewhere the table is process-local.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import mmap
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from octo.logs import error_log

SHM_DIR = "/dev/shm"
PREFIX = "octo-"
_HEADER = struct.Struct("<8sQQ")  # magic, capacity, used
MAGIC = b"octotbl1"
EMPTY, USED, DELETED = 0, 1, 2


class TableError(Exception):
    pass


class TableFull(TableError):
    pass


class ValueTooLarge(TableError, ValueError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    kind: str  # "int", "float", "str"
    size: int = 0

    @property
    def width(self) -> int:
        return 8 if self.kind in ("int", "float") else 2 + self.size


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
        self.offsets: dict[str, int] = {}
        offset = 3 + key_size
        for col, kind in self.columns.items():
            if not isinstance(kind, Column):
                raise TypeError(f"table {name!r}: column {col!r} must be octo.Int, octo.Float "
                                f"or octo.Str(n), not {kind!r}")
            self.offsets[col] = offset
            offset += kind.width
        self.slot_size = offset
        self.thread_lock = threading.Lock()
        self.shared = server_id is not None
        self._open(server_id)

    # -- storage -------------------------------------------------------------------------

    def schema_hash(self) -> str:
        spec = repr((self.capacity, self.key_size, sorted(
            (c, k.kind, k.size) for c, k in self.columns.items())))
        return hashlib.sha1(spec.encode()).hexdigest()[:12]

    def _open(self, server_id: str | None) -> None:
        size = _HEADER.size + self.capacity * self.slot_size
        if server_id is None:
            self.fd = -1
            self.path = None
            self.mem = mmap.mmap(-1, size)
            _HEADER.pack_into(self.mem, 0, MAGIC, self.capacity, 0)
            return
        self.path = os.path.join(SHM_DIR, f"{PREFIX}{server_id}-{self.name}-"
                                          f"{self.schema_hash()}.tbl")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self.fd = fd
        with self._file_lock():
            fresh = os.fstat(fd).st_size < size
            if fresh:
                os.ftruncate(fd, size)
            self.mem = mmap.mmap(fd, size)
            if fresh or self.mem[:8] != MAGIC:
                _HEADER.pack_into(self.mem, 0, MAGIC, self.capacity, 0)
                _log_schema(server_id, self.name, self.path)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, 0)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 0)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self.thread_lock:
            if self.fd < 0:
                yield
            else:
                with self._file_lock():
                    yield

    # -- slots ---------------------------------------------------------------------------

    def _key(self, key: str | bytes) -> bytes:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        if len(raw) > self.key_size:
            raise ValueTooLarge(f"table {self.name!r}: key of {len(raw)} bytes is longer than "
                                f"its key size {self.key_size}")
        return raw

    def _base(self, slot: int) -> int:
        return _HEADER.size + slot * self.slot_size

    def _find(self, raw: bytes) -> tuple[int, int]:
        """(slot of the key or -1, first free slot on its probe path or -1)."""
        mem = self.mem
        capacity = self.capacity
        start = zlib.crc32(raw) % capacity
        free = -1
        for i in range(capacity):
            slot = (start + i) % capacity
            base = self._base(slot)
            state = mem[base]
            if state == EMPTY:
                return -1, slot if free < 0 else free
            if state == DELETED:
                if free < 0:
                    free = slot
                continue
            length = mem[base + 1] | (mem[base + 2] << 8)
            if length == len(raw) and mem[base + 3:base + 3 + length] == raw:
                return slot, free
        return -1, free

    def _claim(self, raw: bytes, free: int) -> int:
        if free < 0:
            raise TableFull(f"table {self.name!r} is full ({self.capacity} rows)")
        base = self._base(free)
        mem = self.mem
        mem[base:base + self.slot_size] = bytes(self.slot_size)
        mem[base + 1] = len(raw) & 0xFF
        mem[base + 2] = len(raw) >> 8
        mem[base + 3:base + 3 + len(raw)] = raw
        mem[base] = USED
        self._add_used(1)
        return free

    def _add_used(self, delta: int) -> None:
        magic, capacity, used = _HEADER.unpack_from(self.mem, 0)
        _HEADER.pack_into(self.mem, 0, magic, capacity, used + delta)

    def _column(self, column: str) -> tuple[Column, int]:
        try:
            return self.columns[column], self.offsets[column]
        except KeyError:
            raise KeyError(f"table {self.name!r} has no column {column!r}") from None

    def _read(self, base: int, kind: Column, offset: int) -> Any:
        mem = self.mem
        at = base + offset
        if kind.kind == "int":
            return struct.unpack_from("<q", mem, at)[0]
        if kind.kind == "float":
            return struct.unpack_from("<d", mem, at)[0]
        length = mem[at] | (mem[at + 1] << 8)
        data = bytes(mem[at + 2:at + 2 + length])
        return data if kind.kind == "bytes" else data.decode()

    def _write(self, base: int, column: str, value: Any) -> None:
        kind, offset = self._column(column)
        at = base + offset
        if kind.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"table {self.name!r}: column {column!r} is Int, got "
                                f"{type(value).__name__}")
            struct.pack_into("<q", self.mem, at, value)
        elif kind.kind == "float":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"table {self.name!r}: column {column!r} is Float, got "
                                f"{type(value).__name__}")
            struct.pack_into("<d", self.mem, at, float(value))
        else:
            wanted = bytes if kind.kind == "bytes" else str
            if not isinstance(value, wanted):
                raise TypeError(f"table {self.name!r}: column {column!r} is "
                                f"{kind.kind.capitalize()}, got {type(value).__name__}")
            data = value.encode() if isinstance(value, str) else value
            if len(data) > kind.size:
                raise ValueTooLarge(f"table {self.name!r}: column {column!r} holds "
                                    f"{kind.size} bytes, value has {len(data)}")
            struct.pack_into("<H", self.mem, at, len(data))
            self.mem[at + 2:at + 2 + len(data)] = data

    def _row(self, base: int) -> dict[str, Any]:
        return {col: self._read(base, kind, self.offsets[col])
                for col, kind in self.columns.items()}

    # -- compound operations: call with the lock held (see ``locked()``) --------------------

    def row_unlocked(self, key: str | bytes) -> dict[str, Any] | None:
        slot, _ = self._find(self._key(key))
        return None if slot < 0 else self._row(self._base(slot))

    def set_unlocked(self, key: str | bytes, values: Mapping[str, Any]) -> None:
        raw = self._key(key)
        slot, free = self._find(raw)
        if slot < 0:
            slot = self._claim(raw, free)
        base = self._base(slot)
        for column, value in values.items():
            self._write(base, column, value)

    def delete_unlocked(self, key: str | bytes) -> bool:
        slot, _ = self._find(self._key(key))
        if slot < 0:
            return False
        self.mem[self._base(slot)] = DELETED
        self._add_used(-1)
        return True

    def rows_unlocked(self) -> Iterator[tuple[bytes, dict[str, Any]]]:
        mem = self.mem
        for slot in range(self.capacity):
            base = self._base(slot)
            if mem[base] == USED:
                length = mem[base + 1] | (mem[base + 2] << 8)
                yield bytes(mem[base + 3:base + 3 + length]), self._row(base)

    # -- public API ----------------------------------------------------------------------

    def get(self, key: str | bytes, column: str | None = None) -> Any:
        raw = self._key(key)
        if column is not None:
            kind, offset = self._column(column)
        with self.locked():
            slot, _ = self._find(raw)
            if slot < 0:
                return None
            base = self._base(slot)
            return self._read(base, kind, offset) if column is not None else self._row(base)

    def set(self, key: str | bytes, values: Mapping[str, Any]) -> None:
        self._key(key)
        for column in values:
            self._column(column)
        with self.locked():
            self.set_unlocked(key, values)

    def incr(self, key: str | bytes, column: str, by: int | float = 1) -> int | float:
        kind, offset = self._column(column)
        if kind.kind in ("str", "bytes"):
            raise TypeError(f"table {self.name!r}: column {column!r} is Str; incr needs Int "
                            "or Float")
        if kind.kind == "int" and not isinstance(by, int):
            raise TypeError(f"table {self.name!r}: column {column!r} is Int; incr by an int")
        raw = self._key(key)
        fmt = "<q" if kind.kind == "int" else "<d"
        with self.locked():
            slot, free = self._find(raw)
            if slot < 0:
                slot = self._claim(raw, free)
            at = self._base(slot) + offset
            value = struct.unpack_from(fmt, self.mem, at)[0] + by
            struct.pack_into(fmt, self.mem, at, value)
            return value  # type: ignore[no-any-return]

    def decr(self, key: str | bytes, column: str, by: int | float = 1) -> int | float:
        return self.incr(key, column, -by)

    def delete(self, key: str | bytes) -> bool:
        self._key(key)
        with self.locked():
            return self.delete_unlocked(key)

    def exists(self, key: str | bytes) -> bool:
        raw = self._key(key)
        with self.locked():
            return self._find(raw)[0] >= 0

    def __len__(self) -> int:
        with self.locked():
            return int(_HEADER.unpack_from(self.mem, 0)[2])

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, row) pairs; each row is read under the lock, so it is never torn."""
        for slot in range(self.capacity):
            with self.locked():
                base = self._base(slot)
                if self.mem[base] != USED:
                    continue
                length = self.mem[base + 1] | (self.mem[base + 2] << 8)
                key = bytes(self.mem[base + 3:base + 3 + length]).decode("utf-8", "replace")
                row = self._row(base)
            yield key, row

    def clear(self) -> None:
        with self.locked():
            self.mem[_HEADER.size:] = bytes(len(self.mem) - _HEADER.size)
            _HEADER.pack_into(self.mem, 0, MAGIC, self.capacity, 0)


def _log_schema(server_id: str, name: str, path: str) -> None:
    others = [f for f in _list(server_id) if f.startswith(f"{PREFIX}{server_id}-{name}-")
              and os.path.join(SHM_DIR, f) != path]
    if others:
        error_log.warning("table %r: schema changed, starting a fresh table (%s)", name,
                          os.path.basename(path))


def _list(server_id: str | None = None) -> list[str]:
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    prefix = PREFIX if server_id is None else f"{PREFIX}{server_id}-"
    return [n for n in names if n.startswith(prefix) and n.endswith(".tbl")]


def remove_tables(server_id: str) -> int:
    """The master, at stop: remove this server's table files."""
    removed = 0
    for name in _list(server_id):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(SHM_DIR, name))
            removed += 1
    return removed


def remove_stale_tables() -> int:
    """At start: remove table files of servers whose master process is gone (kill -9)."""
    removed = 0
    for name in _list():
        pid_text = name[len(PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(SHM_DIR, name))
                removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
