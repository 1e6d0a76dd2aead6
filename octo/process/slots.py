"""Per-worker stats/heartbeat slots in one shared anonymous mapping.

The master maps the area before forking, so every worker inherits it. Each worker writes only
its own slot, from its event loop (a blocked loop stops beating, which is the point); the
master only reads. Every field is one aligned 8-byte word stored on its own: a reader may see
a mix of two updates across fields, which is fine for stats, but never a field that is
neither its old nor its new value. (``struct.pack_into`` cannot be used for the writes: it
zeroes the whole record before packing the fields, so a concurrent reader could see this
worker's pid next to a heartbeat of 0.)
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import mmap
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from octo.process import orphan
from octo.stats import BUCKETS, STATUS_CLASSES, RequestStats

# pid, state, started, heartbeat, requests, in_flight, loop lag, open connections,
# ticks skipped (by this worker while it led the tick schedule); native order, as the
# word-by-word writes through memoryview casts are native.
_FORMAT = "=qqddqqdqq"
SLOT_SIZE = 1024
WORD = 8
NOTE_SIZE = 512  # bytes per worker for the last error it logged (a boot failure's reason)
# A worker beats every 0.5 s from its event loop (octo.process.worker.CLOCK_INTERVAL). A sibling
# whose last beat is older than this is blocked (or dying): its connection count is frozen,
# so the balanced acceptor does not hold back for it.
STALE_AFTER = 1.0
TABLES_SIZE = 2048  # bytes per worker for its tables' usage (JSON, under a sequence word)
_STRUCT = struct.Struct(_FORMAT)
# Word offsets within a slot.
_PID, _STATE, _STARTED, _HEARTBEAT, _REQUESTS, _IN_FLIGHT, _LAG, _CONNECTIONS, _SKIPPED = \
    range(9)
# The --metrics counters after them (octo.stats): busy seconds, CPU seconds, WebSockets,
# ticks run and failed, dispatched tasks queued, handed over and their wait, requests per
# status class, then three histograms (buckets, sum): duration, queue wait, proxy wait.
_BUSY, _CPU, _WEBSOCKETS, _TICK_RUNS, _TICK_FAILED, _TASK_QUEUED, _TASKS_HANDED, \
    _TASK_WAIT = range(9, 17)
_STATUS = 17
_DURATION = _STATUS + STATUS_CLASSES
_WAIT = _DURATION + BUCKETS + 1
_PROXY_WAIT = _WAIT + BUCKETS + 1
_END = _PROXY_WAIT + BUCKETS + 1
_STATS_STRUCT = struct.Struct("=" + "ddqqqqqd" + "q" * STATUS_CLASSES
                              + ("q" * BUCKETS + "d") * 3)
assert _STATS_STRUCT.size == (_END - _BUSY) * WORD and _END * WORD <= SLOT_SIZE
MASTER_WORDS = 4  # long-wait episode number, the slot told to announce it, wait, limit (us)


class SlotState(enum.IntEnum):
    EMPTY = 0
    BOOTING = 1
    READY = 2  # listening and serving
    RETIRING = 3  # asked to be replaced (max requests reached)
    STOPPING = 4  # draining


@dataclass(slots=True)
class SlotView:
    pid: int
    state: SlotState
    started: float
    heartbeat: float
    requests: int
    in_flight: int
    loop_lag: float
    connections: int
    ticks_skipped: int = 0


@dataclass(slots=True)
class HistogramView:
    counts: list[int]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(slots=True)
class StatsView:
    """A worker's --metrics counters as the master read them (all zero before its first
    heartbeat)."""

    busy: float = 0.0
    cpu: float = 0.0
    websockets: int = 0
    tick_runs: int = 0
    tick_failed: int = 0
    task_queued: int = 0
    tasks_handed: int = 0
    task_wait: float = 0.0
    status: list[int] = field(default_factory=lambda: [0] * STATUS_CLASSES)
    duration: HistogramView = field(default_factory=lambda: _empty_histogram())
    wait: HistogramView = field(default_factory=lambda: _empty_histogram())
    proxy_wait: HistogramView = field(default_factory=lambda: _empty_histogram())

    def add(self, other: StatsView) -> None:
        """Add *other*'s counters (not its gauges) to these."""
        self.busy += other.busy
        self.cpu += other.cpu
        self.tick_runs += other.tick_runs
        self.tick_failed += other.tick_failed
        self.tasks_handed += other.tasks_handed
        self.task_wait += other.task_wait
        self.status = [a + b for a, b in zip(self.status, other.status, strict=True)]
        for name in ("duration", "wait", "proxy_wait"):
            mine, theirs = getattr(self, name), getattr(other, name)
            mine.counts = [a + b for a, b in zip(mine.counts, theirs.counts, strict=True)]
            mine.total += theirs.total


def _empty_histogram() -> HistogramView:
    return HistogramView([0] * BUCKETS, 0.0)


class Slots:
    """A fixed number of worker slots; index ``i`` belongs to one worker at a time.

    After the slots comes a live open-connection count per slot (-1: not accepting), which
    workers update on every connect/close and read to balance accepts between them, one
    word holding the highest slot index in use (so readers scan only that far), then a note
    per slot: the last error line its worker logged, which the master reads once the worker
    has exited (so a reload that failed can say why).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.counts_offset = count * SLOT_SIZE
        self.notes_offset = self.counts_offset + (count + 1 + MASTER_WORDS) * 8
        self.tables_offset = self.notes_offset + count * NOTE_SIZE
        size = self.tables_offset + count * TABLES_SIZE
        self.area = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        # Two typed views of the slot records, for single-word stores of ints and floats.
        self.ints = memoryview(self.area)[:self.counts_offset].cast("q")
        self.floats = memoryview(self.area)[:self.counts_offset].cast("d")
        words = memoryview(self.area)[self.counts_offset:].cast("q")
        self.counts = words[:count]
        self.high = words[count:count + 1]  # high[0]: highest slot index in use + 1
        # Written by the master only: the latest long-wait episode (see announce_long_wait).
        self.master_words = words[count + 1:count + 1 + MASTER_WORDS]
        for index in range(count):
            self.counts[index] = -1

    def write(self, index: int, pid: int, state: SlotState, started: float, heartbeat: float,
              requests: int, in_flight: int, loop_lag: float, connections: int,
              ticks_skipped: int = 0) -> None:
        base = index * (SLOT_SIZE // WORD)
        ints, floats = self.ints, self.floats
        floats[base + _STARTED] = started
        floats[base + _HEARTBEAT] = heartbeat
        ints[base + _REQUESTS] = requests
        ints[base + _IN_FLIGHT] = in_flight
        floats[base + _LAG] = loop_lag
        ints[base + _CONNECTIONS] = connections
        ints[base + _SKIPPED] = ticks_skipped
        ints[base + _STATE] = int(state)
        # Last: on a worker's first write, a reader that sees its pid sees its heartbeat too.
        ints[base + _PID] = pid

    def read(self, index: int) -> SlotView:
        pid, state, started, beat, requests, in_flight, lag, conns, skipped = \
            _STRUCT.unpack_from(self.area, index * SLOT_SIZE)
        return SlotView(pid, SlotState(state), started, beat, requests, in_flight, lag, conns,
                        skipped)

    def clear(self, index: int) -> None:
        self.area[index * SLOT_SIZE:(index + 1) * SLOT_SIZE] = bytes(SLOT_SIZE)
        self.counts[index] = -1
        start = self.notes_offset + index * NOTE_SIZE
        self.area[start:start + NOTE_SIZE] = bytes(NOTE_SIZE)
        start = self.tables_offset + index * TABLES_SIZE
        self.area[start:start + TABLES_SIZE] = bytes(TABLES_SIZE)

    def write_stats(self, index: int, stats: RequestStats, now: float, in_flight: int,
                    cpu: float, websockets: int, ticks: tuple[int, int],
                    tasks: tuple[int, int, float]) -> None:
        """A worker's --metrics counters, one word at a time (see the module docstring)."""
        base = index * (SLOT_SIZE // WORD)
        ints, floats = self.ints, self.floats
        floats[base + _BUSY] = stats.busy_seconds(now, in_flight)
        floats[base + _CPU] = cpu
        ints[base + _WEBSOCKETS] = websockets
        ints[base + _TICK_RUNS], ints[base + _TICK_FAILED] = ticks
        ints[base + _TASK_QUEUED], ints[base + _TASKS_HANDED] = tasks[0], tasks[1]
        floats[base + _TASK_WAIT] = tasks[2]
        for offset, count in enumerate(stats.status, base + _STATUS):
            ints[offset] = count
        for start, histogram in ((_DURATION, stats.duration), (_WAIT, stats.wait),
                                 (_PROXY_WAIT, stats.proxy_wait)):
            for offset, count in enumerate(histogram.counts, base + start):
                ints[offset] = count
            floats[base + start + BUCKETS] = histogram.total

    def read_stats(self, index: int) -> StatsView:
        values = _STATS_STRUCT.unpack_from(self.area, index * SLOT_SIZE + _BUSY * WORD)
        view = StatsView(*values[:8])
        view.status = list(values[8:8 + STATUS_CLASSES])
        at = 8 + STATUS_CLASSES
        histograms = []
        for _ in range(3):
            histograms.append(HistogramView(list(values[at:at + BUCKETS]),
                                            values[at + BUCKETS]))
            at += BUCKETS + 1
        view.duration, view.wait, view.proxy_wait = histograms
        return view

    def write_tables(self, index: int, data: bytes) -> None:
        """The worker's tables as JSON, under a sequence word (odd while it writes)."""
        start = self.tables_offset + index * TABLES_SIZE
        sequence = self._sequence(start)
        data = data[:TABLES_SIZE - 2 * WORD]
        self._set_word(start, sequence + 1)
        self._set_word(start + WORD, len(data))
        self.area[start + 2 * WORD:start + 2 * WORD + len(data)] = data
        self._set_word(start, sequence + 2)

    def read_tables(self, index: int) -> Any:
        """What write_tables last stored (decoded), or None (none yet, or mid-write)."""
        start = self.tables_offset + index * TABLES_SIZE
        before = self._sequence(start)
        length = min(self._sequence(start + WORD), TABLES_SIZE - 2 * WORD)
        data = bytes(self.area[start + 2 * WORD:start + 2 * WORD + max(0, length)])
        if before % 2 or before == 0 or self._sequence(start) != before:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    def _sequence(self, offset: int) -> int:
        return int(struct.unpack_from("=q", self.area, offset)[0])

    def _set_word(self, offset: int, value: int) -> None:
        self.area[offset:offset + WORD] = struct.pack("=q", value)

    def announce_long_wait(self, episode: int, index: int, wait: float, limit: float) -> None:
        """Master side: the worker in slot *index* fires LongWaitDetected for *episode*."""
        words = self.master_words
        words[2] = int(wait * 1e6)
        words[3] = int(limit * 1e6)
        words[1] = index
        words[0] = episode

    def long_wait(self) -> tuple[int, int, float, float]:
        """(episode, announcing slot, wait, limit) as the master last announced them."""
        words = self.master_words
        return words[0], words[1], words[2] / 1e6, words[3] / 1e6

    def write_note(self, index: int, text: str) -> None:
        data = text.encode("utf-8", "replace")[:NOTE_SIZE - 1]
        start = self.notes_offset + index * NOTE_SIZE
        self.area[start:start + NOTE_SIZE] = data.ljust(NOTE_SIZE, b"\0")

    def note(self, index: int) -> str:
        """The last error line slot *index*'s worker logged ("" if none)."""
        start = self.notes_offset + index * NOTE_SIZE
        data = self.area[start:start + NOTE_SIZE].split(b"\0", 1)[0]
        return data.decode("utf-8", "ignore")  # "ignore": a character cut at the end

    def set_high(self, used: set[int]) -> None:
        self.high[0] = max(used, default=-1) + 1

    def release(self) -> None:
        self.ints.release()
        self.floats.release()
        self.counts.release()
        self.high.release()
        self.master_words.release()
        self.area.close()

    def free_index(self, used: set[int]) -> int:
        for index in range(self.count):
            if index not in used:
                return index
        raise RuntimeError(f"all {self.count} worker slots are in use")


class SlotWriter:
    """A worker's handle on its own slot. Its heartbeat also checks that the master which
    forked it (*master_pid*) is still its parent, and wakes the master (a byte on its
    self-pipe, *wake_fd*) when the state it writes changes: the master, asleep until its
    next deadline, then sees at once a worker that serves or asks to be replaced."""

    def __init__(self, slots: Slots, index: int, pid: int, started: float,
                 master_pid: int = 0, wake_fd: int | None = None) -> None:
        self.slots = slots
        self.index = index
        self.pid = pid
        self.started = started
        self.master_pid = master_pid
        self.wake_fd = wake_fd
        self.state = SlotState.EMPTY  # the state last written

    def note_errors(self) -> logging.Handler:
        """A log handler keeping the worker's last ERROR line in its slot's note."""
        return _NoteHandler(self)

    def check_master(self) -> bool:
        """False once the master is gone (this process was re-parented); the first time,
        this process is sent SIGTERM (see octo.process.orphan)."""
        return not self.master_pid or orphan.check_parent(self.master_pid)

    def set_connections(self, count: int) -> None:
        self.slots.counts[self.index] = count

    def fair_to_accept(self, slack: int, now: float | None = None) -> bool:
        """True unless this worker holds more than *slack* connections above the least
        loaded accepting worker: lets an idle worker take the next connection.

        Only siblings that beat within STALE_AFTER of *now* (monotonic; the clock is
        system-wide, so it compares with their beats) count: a blocked worker accepts
        nothing, and holding back for it would only delay every new connection."""
        counts = self.slots.counts
        mine = counts[self.index]
        high = self.slots.high[0]
        low = mine
        fresh_since = (time.monotonic() if now is None else now) - STALE_AFTER
        floats = self.slots.floats
        for index in range(high):
            count = counts[index]
            # Read a sibling's beat only when it would lower the bar: the common case
            # (no sibling less loaded) costs nothing more.
            if 0 <= count < low and \
                    floats[index * (SLOT_SIZE // WORD) + _HEARTBEAT] >= fresh_since:
                low = count
        return mine - low <= slack

    def beat(self, state: SlotState, now: float, requests: int, in_flight: int,
             loop_lag: float, connections: int, ticks_skipped: int = 0) -> None:
        self.check_master()
        self.slots.write(self.index, self.pid, state, self.started, now, requests, in_flight,
                         loop_lag, connections, ticks_skipped)
        if state is not self.state:
            self.state = state
            self.wake_master()

    def wake_master(self) -> None:
        """Make the master's loop run a pass now (a full pipe wakes it just as well; a
        master gone is the lifeline's business)."""
        if self.wake_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.wake_fd, b"w")

    def write_stats(self, stats: RequestStats, now: float, in_flight: int, cpu: float,
                    websockets: int, ticks: tuple[int, int],
                    tasks: tuple[int, int, float]) -> None:
        self.slots.write_stats(self.index, stats, now, in_flight, cpu, websockets, ticks, tasks)

    def write_tables(self, data: bytes) -> None:
        self.slots.write_tables(self.index, data)

    def write_busy(self, seconds: float, cpu: float) -> None:
        """A task worker's busy and CPU seconds (an HTTP worker's come with write_stats)."""
        base = self.index * (SLOT_SIZE // WORD)
        self.slots.floats[base + _BUSY] = seconds
        self.slots.floats[base + _CPU] = cpu


class _NoteHandler(logging.Handler):
    def __init__(self, writer: SlotWriter) -> None:
        super().__init__(logging.ERROR)
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            lines = record.getMessage().strip().splitlines()
            self.writer.slots.write_note(self.writer.index, lines[0] if lines else "")
        except Exception:  # a log handler never raises into the code that logged
            self.handleError(record)
