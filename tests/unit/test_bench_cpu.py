"""benchmarks/cpu.py: a server tree's user and system CPU time from /proc/<pid>/stat, and its
cost per request. The tree walk and the sampling run on a real process tree the test starts
(a parent and a forked child that burns user and system time)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import cpu  # noqa: E402  (benchmarks/ is not a package)

if not Path("/proc/self/stat").exists():
    pytest.skip("needs Linux /proc", allow_module_level=True)

TICKS = 5  # of user and of system time the child burns: clearly above rounding (1 tick)

# The parent forks a child that burns TICKS clock ticks of user time (a Python loop) and of
# system time (the kernel zeroing pages for reads of /dev/zero), prints its pid, and exits
# once the test sends a line; the parent reaps it, says so, and exits on the next line.
TREE = textwrap.dedent(f"""
    import os, sys, time

    def ticks():
        fields = open("/proc/self/stat").read().rpartition(")")[2].split()
        return int(fields[11]), int(fields[12])

    child = os.fork()
    if child == 0:
        zero = os.open("/dev/zero", os.O_RDONLY)
        deadline = time.monotonic() + 60
        while min(ticks()) < {TICKS} and time.monotonic() < deadline:
            sum(range(20_000))
            os.read(zero, 1 << 20)
        print(os.getpid(), flush=True)
        sys.stdin.readline()
        os._exit(0)
    os.waitpid(child, 0)
    print("reaped", flush=True)
    sys.stdin.readline()
""")


def test_stat_fields_are_counted_from_the_last_parenthesis() -> None:
    # comm may hold spaces and ")": fields 4 (ppid) and 14-17 (utime, stime, cutime, cstime).
    line = ("4242 (web) (x 2)) S 17 4242 4242 0 -1 4194560 900 0 0 0 "
            "123 45 6 7 20 0 3 0 555 1000 200\n")
    assert cpu.parse_stat(line) == cpu.Stat(ppid=17, utime=123, stime=45, cutime=6, cstime=7)


def test_cost_per_request_and_cores_busy() -> None:
    # 0.3 s user + 0.1 s system for 10,000 requests in 2 s of wall time.
    cost = cpu.cost(cpu.CpuTimes(1.5, 0.6) - cpu.CpuTimes(1.2, 0.5), wall=2.0, requests=10_000)
    assert cost is not None
    assert cost.user_us == pytest.approx(30.0)
    assert cost.sys_us == pytest.approx(10.0)
    assert cost.cores_busy == pytest.approx(0.2)
    # Saturation identity the report states: req/s = cores busy / (user + sys).
    assert 10_000 / 2.0 == pytest.approx(cost.cores_busy / ((cost.user_us + cost.sys_us) / 1e6))
    assert cpu.cost(cpu.CpuTimes(1.0, 1.0), wall=2.0, requests=0) is None
    assert cpu.cost(cpu.CpuTimes(1.0, 1.0), wall=0.0, requests=5) is None


def test_tree_is_the_root_and_its_descendants_only() -> None:
    def stat(ppid: int) -> cpu.Stat:
        return cpu.Stat(ppid=ppid, utime=0, stime=0, cutime=0, cstime=0)

    stats = {1: stat(0), 10: stat(1), 11: stat(10), 12: stat(10), 13: stat(12), 20: stat(1)}
    assert cpu.tree_pids(10, stats) == [10, 11, 12, 13]
    assert cpu.tree_pids(13, stats) == [13]
    assert cpu.tree_pids(99, stats) == []


def test_a_forked_tree_is_found_and_its_time_survives_the_child_being_reaped() -> None:
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        child = int(proc.stdout.readline())
        assert cpu.tree_pids(proc.pid, cpu.all_stats()) == [proc.pid, child]
        burnt = cpu.read_stat(child)
        assert burnt is not None and min(burnt.utime, burnt.stime) >= TICKS
        before = cpu.tree_times(proc.pid)
        # The whole tree: at least the child's own ticks (the parent only waits).
        assert before.user >= burnt.utime / cpu.TICKS_PER_SECOND
        assert before.system >= burnt.stime / cpu.TICKS_PER_SECOND

        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "reaped\n"
        after = cpu.tree_times(proc.pid)
        # The child is gone, its ticks now count in the parent's cutime and cstime: the
        # tree's total does not drop.
        assert cpu.tree_pids(proc.pid, cpu.all_stats()) == [proc.pid]
        assert after.user >= before.user and after.system >= before.system
        used = after - before
        assert used.user >= 0 and used.system >= 0
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert cpu.tree_times(proc.pid) == cpu.CpuTimes(0.0, 0.0)  # reaped: no tree left
