"""CPU time of a server's whole process tree, split into user and system time, and what a
measured run cost per request.

Read straight from /proc/<pid>/stat rather than through psutil, so the split is exactly the
kernel's accounting (clock ticks of ``SC_CLK_TCK``) and the module works in any venv. The tree
is the root process plus every process whose parent chain (the ppid field) leads to it: a
master or supervisor and its workers.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")

# Indices into the fields after the ")" closing comm (field 2), which makes the state (field
# 3 in proc(5)) index 0: field N is at index N - 3.
_PPID, _UTIME, _STIME, _CUTIME, _CSTIME = 4 - 3, 14 - 3, 15 - 3, 16 - 3, 17 - 3


@dataclasses.dataclass(frozen=True, slots=True)
class Stat:
    """The fields of one /proc/<pid>/stat this module needs; times in clock ticks."""

    ppid: int
    utime: int
    stime: int
    cutime: int  # user ticks of its children that exited and were waited for
    cstime: int


def parse_stat(text: str) -> Stat:
    """The fields of a /proc/<pid>/stat line. comm (in parentheses) may hold spaces and
    parentheses itself, so fields are counted from the last ")"."""
    fields = text.rpartition(")")[2].split()
    return Stat(ppid=int(fields[_PPID]), utime=int(fields[_UTIME]), stime=int(fields[_STIME]),
                cutime=int(fields[_CUTIME]), cstime=int(fields[_CSTIME]))


def read_stat(pid: int, proc: Path = PROC) -> Stat | None:
    """The process's stat, None when it is gone (or was never there)."""
    try:
        return parse_stat((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def all_stats(proc: Path = PROC) -> dict[int, Stat]:
    """Every process's stat by pid (those that exit while being read are left out)."""
    stats = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name), proc)
            if stat is not None:
                stats[int(entry.name)] = stat
    return stats


def tree_pids(root: int, stats: dict[int, Stat]) -> list[int]:
    """*root* and its descendants in *stats*, parents before children; [] when *root* is not
    in *stats*."""
    if root not in stats:
        return []
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += sorted(children.get(pid, ()), reverse=True)
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class CpuTimes:
    """User and system CPU seconds."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system)


def tree_times(root: int, proc: Path = PROC) -> CpuTimes:
    """CPU seconds used so far by *root*'s process tree (zero when it is gone).

    Each process counts with its waited-for children's times (cutime, cstime): a worker that
    exits and is reaped by its master between two samples moves its ticks into the master's
    cutime, so the difference of two samples still holds all of its time. (A process that
    exits unreaped by the tree, or is re-parented away, loses the ticks it used after the
    first sample; servers under load do neither.)"""
    stats = all_stats(proc)
    user = system = 0
    for pid in tree_pids(root, stats):
        stat = stats[pid]
        user += stat.utime + stat.cutime
        system += stat.stime + stat.cstime
    return CpuTimes(user / TICKS_PER_SECOND, system / TICKS_PER_SECOND)


@dataclasses.dataclass(frozen=True, slots=True)
class CpuCost:
    """What a measured run cost the server: CPU per request and cores kept busy."""

    user_us: float  # user CPU microseconds per request
    sys_us: float  # system CPU microseconds per request
    cores_busy: float  # (user + system) CPU seconds / wall seconds


def cost(used: CpuTimes, wall: float, requests: int) -> CpuCost | None:
    """The cost of *requests* completed in *wall* seconds that used *used* CPU; None when
    nothing was completed or no time passed (no per-request figure exists)."""
    if requests <= 0 or wall <= 0:
        return None
    return CpuCost(user_us=used.user / requests * 1e6, sys_us=used.system / requests * 1e6,
                   cores_busy=used.total / wall)
