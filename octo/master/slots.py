"""Per-worker stats/heartbeat slots in one shared anonymous mapping.

The master maps the area before forking, so every worker inherits it. Each worker writes only
its own slot, from its event loop (a blocked loop stops beating, which is the point); the
master only reads. Fields are 8-byte aligned, so single-field reads never tear on 64-bit
platforms; a reader may see a mix of two updates across fields, which is fine for stats.
"""

from __future__ import annotations

import enum
import mmap
import struct
from dataclasses import dataclass

_FORMAT = "<qqddQqddd"  # pid, state, started, heartbeat, requests, in_flight, lag, rss, spare
SLOT_SIZE = 128
_STRUCT = struct.Struct(_FORMAT)
assert _STRUCT.size <= SLOT_SIZE


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


class Slots:
    """A fixed number of worker slots; index ``i`` belongs to one worker at a time."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.area = mmap.mmap(-1, max(count, 1) * SLOT_SIZE,
                              flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)

    def write(self, index: int, pid: int, state: SlotState, started: float, heartbeat: float,
              requests: int, in_flight: int, loop_lag: float) -> None:
        _STRUCT.pack_into(self.area, index * SLOT_SIZE, pid, int(state), started, heartbeat,
                          requests, in_flight, loop_lag, 0.0, 0.0)

    def read(self, index: int) -> SlotView:
        pid, state, started, beat, requests, in_flight, lag, _, _ = _STRUCT.unpack_from(
            self.area, index * SLOT_SIZE)
        return SlotView(pid, SlotState(state), started, beat, requests, in_flight, lag)

    def clear(self, index: int) -> None:
        self.area[index * SLOT_SIZE:(index + 1) * SLOT_SIZE] = bytes(SLOT_SIZE)

    def free_index(self, used: set[int]) -> int:
        for index in range(self.count):
            if index not in used:
                return index
        raise RuntimeError(f"all {self.count} worker slots are in use")


class SlotWriter:
    """A worker's handle on its own slot."""

    def __init__(self, slots: Slots, index: int, pid: int, started: float) -> None:
        self.slots = slots
        self.index = index
        self.pid = pid
        self.started = started

    def beat(self, state: SlotState, now: float, requests: int, in_flight: int,
             loop_lag: float) -> None:
        self.slots.write(self.index, self.pid, state, self.started, now, requests, in_flight,
                         loop_lag)
