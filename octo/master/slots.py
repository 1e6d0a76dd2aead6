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

import enum
import logging
import mmap
import struct
import time
from dataclasses import dataclass

from octo.master import orphan

# pid, state, started, heartbeat, requests, in_flight, loop lag, open connections,
# ticks skipped (by this worker while it led the tick schedule); native order, as the
# word-by-word writes through memoryview casts are native.
_FORMAT = "=qqddqqdqq"
SLOT_SIZE = 128
WORD = 8
NOTE_SIZE = 512  # bytes per worker for the last error it logged (a boot failure's reason)
# A worker beats every 0.5 s from its event loop (octo.worker.CLOCK_INTERVAL). A sibling
# whose last beat is older than this is blocked (or dying): its connection count is frozen,
# so the balanced acceptor does not hold back for it.
STALE_AFTER = 1.0
_STRUCT = struct.Struct(_FORMAT)
assert _STRUCT.size <= SLOT_SIZE
# Word offsets within a slot.
_PID, _STATE, _STARTED, _HEARTBEAT, _REQUESTS, _IN_FLIGHT, _LAG, _CONNECTIONS, _SKIPPED = \
    range(9)


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
        self.notes_offset = self.counts_offset + (count + 1) * 8
        size = self.notes_offset + count * NOTE_SIZE
        self.area = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        # Two typed views of the slot records, for single-word stores of ints and floats.
        self.ints = memoryview(self.area)[:self.counts_offset].cast("q")
        self.floats = memoryview(self.area)[:self.counts_offset].cast("d")
        words = memoryview(self.area)[self.counts_offset:].cast("q")
        self.counts = words[:count]
        self.high = words[count:]  # high[0]: highest slot index in use + 1
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
        self.area.close()

    def free_index(self, used: set[int]) -> int:
        for index in range(self.count):
            if index not in used:
                return index
        raise RuntimeError(f"all {self.count} worker slots are in use")


class SlotWriter:
    """A worker's handle on its own slot. Its heartbeat also checks that the master which
    forked it (*master_pid*) is still its parent."""

    def __init__(self, slots: Slots, index: int, pid: int, started: float,
                 master_pid: int = 0) -> None:
        self.slots = slots
        self.index = index
        self.pid = pid
        self.started = started
        self.master_pid = master_pid

    def note_errors(self) -> logging.Handler:
        """A log handler keeping the worker's last ERROR line in its slot's note."""
        return _NoteHandler(self)

    def check_master(self) -> bool:
        """False once the master is gone (this process was re-parented); the first time,
        this process is sent SIGTERM (see octo.master.orphan)."""
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
