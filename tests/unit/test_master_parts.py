"""The master's pieces in isolation: slots, control dispatch, watcher, status table."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from octo.cli import format_status
from octo.config import Config
from octo.master.arbiter import IDLE_LIMIT, LIVENESS_SLACK, Arbiter, WorkerInfo
from octo.master.control import ControlServer, NotRunning, default_path, request
from octo.master.lifecycle import Event
from octo.master.reload import PollingWatcher, WatchfilesWatcher, syntax_errors
from octo.process.slots import STALE_AFTER, Slots, SlotState, SlotWriter


def test_slots_roundtrip_and_clear() -> None:
    slots = Slots(4)
    slots.write(2, 123, SlotState.READY, 1.0, 2.0, 30, 4, 0.5, 7)
    view = slots.read(2)
    assert (view.pid, view.state, view.requests, view.in_flight, view.connections) == \
        (123, SlotState.READY, 30, 4, 7)
    slots.clear(2)
    assert slots.read(2).pid == 0 and slots.counts[2] == -1
    assert slots.free_index({0, 1}) == 2


def test_slots_are_shared_with_forked_children() -> None:
    slots = Slots(2)
    pid = os.fork()
    if pid == 0:
        SlotWriter(slots, 1, os.getpid(), 0.0).beat(SlotState.READY, 5.0, 9, 0, 0.0, 3)
        os._exit(0)
    os.waitpid(pid, 0)
    assert slots.read(1).pid == pid and slots.read(1).requests == 9


def test_fair_to_accept_prefers_the_least_loaded_worker() -> None:
    slots = Slots(3)
    slots.set_high({0, 1, 2})
    writers = [SlotWriter(slots, i, 100 + i, 0.0) for i in range(3)]
    now = time.monotonic()
    for writer, count in zip(writers, (5, 2, -1), strict=True):  # third: not accepting
        writer.beat(SlotState.READY, now, 0, 0, 0.0, max(count, 0))
        writer.set_connections(count)
    assert not writers[0].fair_to_accept(slack=1, now=now)
    assert writers[1].fair_to_accept(slack=1, now=now)
    writers[0].set_connections(3)
    assert writers[0].fair_to_accept(slack=1, now=now)


def test_fair_to_accept_does_not_hold_back_for_a_sibling_that_stopped_beating() -> None:
    """A worker whose loop is blocked keeps its last count, and accepts nothing: deferring
    to it would hold every new connection back (MAX_HOLDS waits each)."""
    slots = Slots(3)
    slots.set_high({0, 1, 2})
    writers = [SlotWriter(slots, i, 100 + i, 0.0) for i in range(3)]
    beat_at = 1_000.0
    for writer, count in zip(writers, (6, 1, 4), strict=True):
        writer.beat(SlotState.READY, beat_at, 0, 0, 0.0, count)
        writer.set_connections(count)
    # Worker 1 is least loaded and beat just now: worker 0 holds back for it.
    assert not writers[0].fair_to_accept(slack=1, now=beat_at + STALE_AFTER / 2)
    # Worker 1 stops beating (its loop blocks); workers 0 and 2 go on.
    later = beat_at + STALE_AFTER + 0.5
    writers[0].beat(SlotState.READY, later, 0, 0, 0.0, 6)
    writers[2].beat(SlotState.READY, later, 0, 0, 0.0, 4)
    # Worker 2 is the least loaded live sibling now: 6 - 4 > 1, so worker 0 still holds
    # back for it, and worker 2 itself does not wait for the frozen count of 1.
    assert not writers[0].fair_to_accept(slack=1, now=later)
    assert writers[2].fair_to_accept(slack=1, now=later)
    writers[2].set_connections(5)
    assert writers[0].fair_to_accept(slack=1, now=later)
    # A slot that never beat (cleared: heartbeat 0) is not waited for either.
    slots.clear(2)
    slots.counts[2] = 0
    assert writers[0].fair_to_accept(slack=1, now=later)


READS = 50_000


def test_a_reader_never_sees_a_writers_pid_without_its_heartbeat() -> None:
    """A worker beating while the master reads: every record the master sees that carries
    the worker's pid carries a real heartbeat. (Packing the whole record at once zeroes it
    first, so readers used to see heartbeat 0 and the master took that for hours of
    silence.)"""
    slots = Slots(2)
    # Writer and reader on cores of their own where there are two: a torn record can only be
    # seen while both run at once, not when they take turns on one core.
    cores = sorted(os.sched_getaffinity(0))
    pid = os.fork()
    if pid == 0:  # beats until the parent has read enough, at most a minute
        if len(cores) > 1:
            os.sched_setaffinity(0, {cores[1]})
        writer = SlotWriter(slots, 1, 4242, 1.0)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            writer.beat(SlotState.READY, time.monotonic(), 1, 0, 0.0, 0)
        os._exit(0)
    torn = seen = 0
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[0]})
    try:
        deadline = time.monotonic() + 30
        while seen < READS:  # reads that overlap the writer's beats, however slow it runs
            assert time.monotonic() < deadline, f"only {seen} reads saw the writer"
            view = slots.read(1)
            if view.pid == 4242:
                seen += 1
                torn += view.heartbeat == 0.0 or view.started != 1.0 or \
                    view.state is not SlotState.READY
    finally:
        os.sched_setaffinity(0, cores)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert torn == 0, f"{torn} of {seen} reads showed a half-written record"


def arbiter_with_worker(timeout: float = 5.0) -> tuple[Arbiter, WorkerInfo, list[int]]:
    """An arbiter (never run) supervising one ready fake worker in slot 0; the signals it
    would send that worker are collected instead."""
    arbiter = Arbiter(Config(app="x:app", timeout=timeout), [], None)
    info = WorkerInfo(pid=4242, index=0, generation=0, spawned=0.0, ready=True)
    arbiter.workers[info.pid] = info
    sent: list[int] = []
    arbiter._signal = lambda pid, sig: sent.append(sig)  # type: ignore[method-assign]
    return arbiter, info, sent


def beat(arbiter: Arbiter, heartbeat: float, pid: int = 4242) -> None:
    arbiter.slots.write(0, pid, SlotState.READY, 1.0, heartbeat, 0, 0, 0.0, 0)


def test_liveness_judges_progress_not_the_heartbeat_value() -> None:
    arbiter, _, sent = arbiter_with_worker(timeout=5.0)
    beat(arbiter, 0.0)  # read as 0 (or stale, or another clock): no silence yet
    arbiter._check_liveness(now=10_000.0)
    beat(arbiter, 3.0)  # far "behind" the master's clock, but moving: alive
    arbiter._check_liveness(now=10_004.0)
    beat(arbiter, 3.5)
    arbiter._check_liveness(now=10_008.0)
    assert sent == []
    arbiter._check_liveness(now=10_012.9)  # 4.9 s without a new beat: still within --timeout
    assert sent == []
    arbiter.slots.release()


def test_liveness_still_kills_a_worker_that_stops_beating() -> None:
    arbiter, info, sent = arbiter_with_worker(timeout=5.0)
    beat(arbiter, 100.0)
    arbiter._check_liveness(now=100.0)
    arbiter._check_liveness(now=105.2)
    assert sent == [signal.SIGUSR2] and info.kill_at is not None  # stack dump, then...
    arbiter._check_liveness(now=info.kill_at)
    assert sent == [signal.SIGUSR2, signal.SIGKILL]
    arbiter.slots.release()


def test_liveness_ignores_a_slot_that_is_not_the_workers() -> None:
    """A slot cleared for, or already written by, another worker says nothing about this
    one."""
    arbiter, _, sent = arbiter_with_worker(timeout=5.0)
    beat(arbiter, 100.0, pid=999)
    arbiter._check_liveness(now=100.0)
    arbiter._check_liveness(now=200.0)
    arbiter.slots.clear(0)
    arbiter._check_liveness(now=300.0)
    assert sent == []
    arbiter.slots.release()


def test_liveness_dates_a_new_beat_by_its_value_when_it_lies_between_two_reads() -> None:
    """The idle master reads a heartbeat about once per --timeout: a beat it sees late
    still counts from when it was written, so a loop that blocks right after it is killed
    --timeout after that beat, not --timeout after the master happened to look."""
    arbiter, info, sent = arbiter_with_worker(timeout=5.0)
    beat(arbiter, 100.0)
    arbiter._check_liveness(now=100.0)
    beat(arbiter, 104.5)  # written at 104.5, read at 105.1
    arbiter._check_liveness(now=105.1)
    assert sent == [] and info.beat_seen_at == 104.5
    arbiter._check_liveness(now=109.4)  # 4.9 s after the beat
    assert sent == []
    arbiter._check_liveness(now=109.6)  # 5.1 s after it, 4.5 s after the read
    assert sent == [signal.SIGUSR2]
    arbiter.slots.release()


def test_a_new_beat_whose_value_cannot_be_true_counts_from_when_it_was_read() -> None:
    """A value outside the two reads (0, torn, another clock, ahead of the master) dates
    the beat by the read: at worst a kill comes later, never sooner."""
    for value in (0.0, 50.0, 200.0):
        arbiter, info, sent = arbiter_with_worker(timeout=5.0)
        beat(arbiter, 100.0)
        arbiter._check_liveness(now=100.0)
        beat(arbiter, value)
        arbiter._check_liveness(now=103.0)
        assert info.beat_seen_at == 103.0, value
        arbiter._check_liveness(now=107.9)
        assert sent == [], value
        arbiter.slots.release()


def test_an_idle_master_sleeps_until_its_next_deadline() -> None:
    arbiter, info, _ = arbiter_with_worker(timeout=5.0)
    beat(arbiter, 100.0)
    arbiter._check_liveness(now=100.0)
    # The heartbeat's check is the only deadline: --timeout after the beat.
    assert arbiter._next_pass(now=101.0) == 105.0 + LIVENESS_SLACK
    arbiter.config.timeout = 60.0
    assert arbiter._next_pass(now=101.0) == 101.0 + IDLE_LIMIT
    arbiter.next_spawn = 103.0  # a crash backoff
    assert arbiter._next_pass(now=101.0) == 103.0
    info.kill_at = 102.0  # SIGKILL after a stack dump
    assert arbiter._next_pass(now=101.0) == 102.0
    arbiter.spawn_budget = 0  # forks left for the next pass
    assert arbiter._next_pass(now=101.0) == 101.0
    arbiter.slots.release()


def test_the_next_pass_keeps_max_lifetime_and_the_load_steps() -> None:
    arbiter = Arbiter(Config(app="x:app", timeout=60.0, max_lifetime=30.0,
                             metrics="127.0.0.1:0"), [], None)
    arbiter.workers[1] = WorkerInfo(pid=1, index=0, generation=0, spawned=50.0, ready=True)
    arbiter.next_step = 90.0
    assert arbiter._next_pass(now=75.0) == 80.0 + LIVENESS_SLACK  # --max-lifetime
    assert arbiter._next_pass(now=85.0) < 85.0  # overdue: at once
    arbiter.workers[1].on(Event.STOP)  # recycled: not again
    assert arbiter._next_pass(now=85.0) == 90.0  # the load step (--metrics)
    arbiter.slots.release()


def test_a_slot_writer_wakes_the_master_when_its_state_changes() -> None:
    slots = Slots(1)
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    try:
        writer = SlotWriter(slots, 0, os.getpid(), 0.0, wake_fd=write_fd)

        def woken() -> bytes:
            try:
                return os.read(read_fd, 64)
            except BlockingIOError:
                return b""

        writer.beat(SlotState.READY, 1.0, 0, 0, 0.0, 0)
        assert woken()  # it serves
        writer.beat(SlotState.READY, 1.5, 7, 1, 0.0, 1)
        assert woken() == b""  # a heartbeat alone wakes nobody
        writer.beat(SlotState.RETIRING, 2.0, 8, 1, 0.0, 1)
        assert woken()  # --max-requests reached: a replacement is due
        os.close(read_fd)
        writer.beat(SlotState.STOPPING, 2.5, 8, 0, 0.0, 0)  # master gone: no error
    finally:
        os.close(write_fd)
        slots.release()


class FakeMaster:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def status(self) -> dict[str, Any]:
        return {"master": 1, "target": 1, "generation": 0, "stopping": False, "workers": []}

    def reload(self) -> int:
        self.calls.append("reload")
        return 1

    def stop(self, graceful: bool) -> float:
        self.calls.append(("stop", graceful))
        return 3.0

    def scale(self, count: int) -> None:
        self.calls.append(("scale", count))


def test_control_dispatch() -> None:
    master = FakeMaster()
    server = ControlServer.__new__(ControlServer)
    server.target = master
    assert server.dispatch({"cmd": "status"})["ok"]
    assert server.dispatch({"cmd": "reload"}) == {"ok": True, "generation": 1}
    assert server.dispatch({"cmd": "stop", "fast": True}) == {"ok": True, "deadline": 3.0}
    assert server.dispatch({"cmd": "scale", "workers": 3}) == {"ok": True}
    assert not server.dispatch({"cmd": "scale", "workers": 0})["ok"]
    assert "unknown command" in server.dispatch({"cmd": "dance"})["error"]
    assert master.calls == ["reload", ("stop", False), ("scale", 3)]


def test_control_socket_roundtrip(tmp_path: Path) -> None:
    path = str(tmp_path / "c.ctl")
    server = ControlServer(path, FakeMaster())
    import select
    import threading

    def serve_one() -> None:  # handle_one() does not wait: answer once a client is there
        select.select([server.sock], [], [], 30)
        server.handle_one()

    thread = threading.Thread(target=serve_one)
    thread.start()
    try:
        reply = request(path, {"cmd": "status"})
    finally:
        thread.join()
        server.close()
    assert reply["ok"] and reply["master"] == 1
    try:
        request(path, {"cmd": "status"})
    except NotRunning as exc:
        assert "no octo server is running" in str(exc)
    else:
        raise AssertionError("expected NotRunning")


def test_default_control_paths() -> None:
    assert default_path(pid="/run/octo.pid") == "/run/octo.pid.ctl"
    assert default_path(uds="/run/app.sock") == "/run/app.sock.ctl"
    assert default_path(port=8123).endswith("octo-8123.ctl")
    assert default_path(port=8123, runtime_dir="/run/app") == "/run/app/octo-8123.ctl"


def test_polling_watcher_and_syntax_check(tmp_path: Path) -> None:
    module = tmp_path / "mod.py"
    module.write_text("x = 1\n")
    (tmp_path / "page.html").write_text("<p>")
    watcher = PollingWatcher(str(tmp_path), ["*.html"])
    watcher.next_scan = 0
    assert watcher.poll() == []
    module.write_text("def broken(:\n")
    os.utime(module, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    (tmp_path / "page.html").write_text("<p>changed")
    os.utime(tmp_path / "page.html", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    watcher.next_scan = 0
    changed = watcher.poll()
    assert changed == sorted([str(module), str(tmp_path / "page.html")])
    [problem] = syntax_errors(changed)
    assert "mod.py:1" in problem


def test_a_watchfiles_pipe_at_its_end_is_no_longer_waited_on() -> None:
    """The master polls the watcher's pipe to wake on a change; once the watching child is
    gone, the pipe would poll readable for ever."""
    watcher = WatchfilesWatcher.__new__(WatchfilesWatcher)  # without its child
    watcher.read_fd, write_fd = os.pipe()
    os.set_blocking(watcher.read_fd, False)
    watcher.buffer, watcher.ended = b"", False
    os.write(write_fd, b"/app/a.py\n")
    assert watcher.poll() == ["/app/a.py"] and not watcher.ended
    os.close(write_fd)
    assert watcher.poll() == [] and watcher.ended
    os.close(watcher.read_fd)


def test_status_table_is_readable() -> None:
    reply = {"master": 10, "target": 2, "generation": 1, "stopping": False, "workers": [
        {"pid": 11, "state": "ready", "generation": 1, "uptime": 3725.0, "requests": 1200,
         "in_flight": 3, "connections": 12, "rss": 30 * 1048576, "cpu_percent": 12.5,
         "heartbeat_age": 0.2, "loop_lag_max": 0.004, "ticks_skipped": 2},
    ]}
    table = format_status(reply)
    lines = table.splitlines()
    assert lines[0].startswith("master 10  workers 1/2  generation 1")
    assert lines[1].split() == ["PID", "STATE", "GEN", "UPTIME", "REQUESTS", "INFLIGHT",
                                "CONNS", "RSS", "CPU%", "BEAT", "LAG", "TICKSKIP"]
    assert lines[2].split() == ["11", "ready", "1", "1h02m", "1200", "3", "12", "30.0M", "12",
                                "0.2s", "4ms", "2"]
