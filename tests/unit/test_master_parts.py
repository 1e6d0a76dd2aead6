"""The master's pieces in isolation: slots, control dispatch, watcher, status table."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from octo.cli import format_status
from octo.master.control import ControlServer, NotRunning, default_path, request
from octo.master.reload import PollingWatcher, syntax_errors
from octo.master.slots import Slots, SlotState, SlotWriter


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
    for writer, count in zip(writers, (5, 2, -1), strict=True):  # third: not accepting
        writer.set_connections(count)
    assert not writers[0].fair_to_accept(slack=1)
    assert writers[1].fair_to_accept(slack=1)
    writers[0].set_connections(3)
    assert writers[0].fair_to_accept(slack=1)


class FakeMaster:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def status(self) -> dict[str, Any]:
        return {"master": 1, "target": 1, "generation": 0, "stopping": False, "workers": []}

    def reload(self) -> None:
        self.calls.append("reload")

    def stop(self, graceful: bool) -> None:
        self.calls.append(("stop", graceful))

    def scale(self, count: int) -> None:
        self.calls.append(("scale", count))


def test_control_dispatch() -> None:
    master = FakeMaster()
    server = ControlServer.__new__(ControlServer)
    server.target = master
    assert server.dispatch({"cmd": "status"})["ok"]
    assert server.dispatch({"cmd": "reload"}) == {"ok": True}
    assert server.dispatch({"cmd": "stop", "fast": True}) == {"ok": True}
    assert server.dispatch({"cmd": "scale", "workers": 3}) == {"ok": True}
    assert not server.dispatch({"cmd": "scale", "workers": 0})["ok"]
    assert "unknown command" in server.dispatch({"cmd": "dance"})["error"]
    assert master.calls == ["reload", ("stop", False), ("scale", 3)]


def test_control_socket_roundtrip(tmp_path: Path) -> None:
    path = str(tmp_path / "c.ctl")
    server = ControlServer(path, FakeMaster())
    import threading

    thread = threading.Thread(target=lambda: (time.sleep(0.05), server.handle_one()))
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
