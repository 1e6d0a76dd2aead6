"""The supervision decisions in isolation: worker ceilings, batched scaling, stop deadlines,
reload outcomes, the control socket's waiters and address, the lifeline, --max-requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import threading
import time
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from octo.cli import settings
from octo.config import WORKER_LIMIT, Config, ConfigError, default_max_workers
from octo.master.arbiter import SPAWN_PER_PASS, Arbiter, WorkerInfo
from octo.master.control import (
    ControlServer,
    NoAnswer,
    Refused,
    control_address,
    request,
)
from octo.process import orphan
from octo.process.slots import NOTE_SIZE, Slots
from octo.process.worker import limit_requests

GiB = 1024 ** 3


# -- --max-workers ----------------------------------------------------------------------------

def test_default_max_workers_is_four_per_cpu_within_memory() -> None:
    assert default_max_workers(cpus=2, memory=24 * GiB) == 8
    assert default_max_workers(cpus=16, memory=GiB // 2) == 8  # 512 MiB / 64 MiB
    assert default_max_workers(cpus=64, memory=1 << 50) == 256
    assert default_max_workers(cpus=4096, memory=1 << 50) == WORKER_LIMIT
    assert default_max_workers(cpus=4, memory=10 * 1024 * 1024) == 1  # never below one


def test_worker_ceiling_and_its_checks() -> None:
    assert Config(max_workers=5).worker_ceiling() == 5
    assert Config(workers=6, max_workers=0).worker_ceiling() >= 6  # never below --workers
    with pytest.raises(ConfigError, match="--workers 6 is above --max-workers 5"):
        Config(workers=6, max_workers=5)
    with pytest.raises(ConfigError, match=f"above the {WORKER_LIMIT} worker processes"):
        Config(max_workers=WORKER_LIMIT - 5, task_workers=10)
    with pytest.raises(ConfigError):
        Config(max_workers=-1)


# -- the arbiter's decisions (no process is forked) --------------------------------------

def fake_arbiter(**settings: Any) -> tuple[Arbiter, list[tuple[int, int]]]:
    """An arbiter whose forks and signals are recorded instead of made."""
    arbiter = Arbiter(Config(app="x:app", **settings), [], None)
    pids = count(10_001)
    sent: list[tuple[int, int]] = []
    arbiter._fork = lambda: next(pids)  # type: ignore[method-assign]
    arbiter._signal = lambda pid, sig: sent.append((pid, sig))  # type: ignore[method-assign]
    return arbiter, sent


def add_worker(arbiter: Arbiter, pid: int, generation: int = 0, role: str = "http",
               ready: bool = True) -> WorkerInfo:
    info = WorkerInfo(pid, len(arbiter.workers), generation, 0.0, role=role, ready=ready)
    arbiter.workers[pid] = info
    return info


def test_a_big_scale_up_forks_a_few_workers_per_pass() -> None:
    arbiter, _ = fake_arbiter(max_workers=64)
    arbiter.scale(64)
    passes = 0
    while len(arbiter.workers) < 64:
        before = len(arbiter.workers)
        arbiter.maintain(now=1000.0 + passes)
        assert len(arbiter.workers) - before == min(SPAWN_PER_PASS, 64 - before)
        passes += 1
    assert passes == 64 // SPAWN_PER_PASS
    arbiter.maintain(now=2000.0)
    assert len(arbiter.workers) == 64  # at the target: no more forks
    arbiter.slots.release()


def test_scaling_above_the_ceiling_is_refused_with_the_reason() -> None:
    arbiter, _ = fake_arbiter(max_workers=3)
    with pytest.raises(Refused, match="cannot scale to 4 workers: above --max-workers 3$"):
        arbiter.scale(4)
    arbiter.scale(3)
    assert arbiter.target == 3
    arbiter.handle_ttin()  # at the ceiling: logged, not raised
    assert arbiter.target == 3
    default, _ = fake_arbiter()
    with pytest.raises(Refused, match=r"\(the default: 4 per CPU"):
        default.scale(WORKER_LIMIT)
    arbiter.slots.release()
    default.slots.release()


def test_a_sigint_storm_neither_resends_nor_postpones_the_stop() -> None:
    arbiter, sent = fake_arbiter(graceful_timeout=30.0)
    add_worker(arbiter, 1)
    add_worker(arbiter, 2, ready=False)
    add_worker(arbiter, 3, role="task")
    graceful = arbiter.stop(graceful=True)
    deadline = arbiter.stop_deadline
    # The HTTP workers first (the booting one too); the task worker waits for them.
    assert sent == [(1, signal.SIGTERM), (2, signal.SIGTERM)]
    assert graceful > 30.0
    sent.clear()
    arbiter.handle_int()  # hurries the stop: SIGQUIT for the ready, SIGTERM for the booting
    assert sent == [(1, signal.SIGQUIT), (2, signal.SIGTERM), (3, signal.SIGQUIT)]
    hurried = arbiter.stop_deadline
    assert hurried < deadline
    sent.clear()
    for _ in range(50):
        arbiter.handle_int()
    assert sent == [] and arbiter.stop_deadline == hurried
    with pytest.raises(Refused, match="stopping"):
        arbiter.reload()
    with pytest.raises(Refused, match="stopping"):
        arbiter.scale(2)
    arbiter.slots.release()


def test_stop_closes_the_masters_listening_sockets_but_a_reload_keeps_them() -> None:
    arbiter, _ = fake_arbiter()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    arbiter.sockets = [listener]
    add_worker(arbiter, 1)
    arbiter.reload()
    arbiter.maintain(now=1.0)
    assert listener.fileno() != -1
    arbiter.stop(graceful=True)
    assert listener.fileno() == -1
    arbiter.slots.release()


def test_reload_outcome_done_once_every_worker_runs_the_generation() -> None:
    arbiter, _ = fake_arbiter(workers=2)
    old = [add_worker(arbiter, 1), add_worker(arbiter, 2)]
    generation = arbiter.reload()
    assert arbiter.reload_outcome(generation) is None
    arbiter.maintain(now=1.0)  # forks the first replacement (pid 10001)
    new = arbiter.workers[10_001]
    assert new.generation == generation and new.replaces == 1
    new.ready = True
    old[0].stopping = True  # retired: draining, still there
    assert arbiter.reload_outcome(generation) is None
    del arbiter.workers[1]
    old[1].generation = generation  # as if replaced too
    assert arbiter.reload_outcome(generation) == (True, "")
    arbiter._check_reload_done()
    assert arbiter.status()["reload"] == {"generation": 1, "state": "done", "error": ""}
    arbiter.slots.release()


def test_reload_abandoned_keeps_the_new_workers_reason() -> None:
    arbiter, _ = fake_arbiter(workers=1)
    arbiter.ever_ready = True
    add_worker(arbiter, 1)
    generation = arbiter.reload()
    arbiter.maintain(now=1.0)
    new = arbiter.workers[10_001]
    arbiter.slots.write_note(new.index, "lifespan startup failed: the database is down")
    del arbiter.workers[new.pid]
    arbiter._on_exit(new, 3)
    ok, why = arbiter.reload_outcome(generation) or (True, "")
    assert not ok
    assert why == ("reload abandoned: new worker 10001 failed to boot (exit 3: lifespan "
                   "startup failed): lifespan startup failed: the database is down")
    assert not arbiter.reload_queue and not arbiter.stopping  # the old worker serves on
    arbiter.slots.release()


def test_a_replacement_that_does_not_boot_outside_a_reload_backs_off() -> None:
    arbiter, _ = fake_arbiter(workers=1)
    arbiter.ever_ready = True
    add_worker(arbiter, 1)
    for attempt in range(6):
        failed = WorkerInfo(20_000 + attempt, 5, 0, 0.0, replaces=1)
        arbiter._on_exit(failed, 4)
    assert not arbiter.stopping and arbiter.reload_status is None
    assert arbiter.next_spawn > time.monotonic()  # retried with backoff, not in a loop
    arbiter.slots.release()


def test_a_stop_interrupts_a_running_reload() -> None:
    arbiter, _ = fake_arbiter()
    add_worker(arbiter, 1)
    generation = arbiter.reload()
    arbiter.stop(graceful=True)
    assert arbiter.reload_outcome(generation) == (
        False, "the server is stopping: the reload did not finish")
    assert arbiter.status()["reload"]["state"] == "interrupted"
    del arbiter.workers[1]  # it exited before the waiting client was answered
    assert arbiter.reload_outcome(generation) == (
        False, "the server is stopping: the reload did not finish")
    arbiter.slots.release()


# -- slots: the worker's last error line -------------------------------------------------

def test_slot_notes_are_cut_to_size_and_cleared_with_the_slot() -> None:
    slots = Slots(2)
    slots.write_note(1, "é" * NOTE_SIZE)  # two bytes each: cut mid-character
    assert slots.note(1) == "é" * ((NOTE_SIZE - 1) // 2)
    assert slots.note(0) == ""
    slots.clear(1)
    assert slots.note(1) == ""
    slots.release()


# -- the control socket ------------------------------------------------------------------

class FakeMaster:
    def __init__(self) -> None:
        self.outcome: tuple[bool, str] | None = None

    def status(self) -> dict[str, Any]:
        return {"master": 1}

    def reload(self) -> int:
        return 7

    def stop(self, graceful: bool) -> float:
        return 1.0

    def scale(self, count: int) -> None:
        raise Refused(f"cannot scale to {count} workers")

    def reload_outcome(self, generation: int) -> tuple[bool, str] | None:
        return self.outcome


def serve_until(server: ControlServer, done: threading.Event, every: Any = None) -> None:
    while not done.is_set():
        select.select([server.sock], [], [], 0.02)
        server.handle_pending()
        if every is not None:
            every()


def test_reload_wait_gets_its_outcome_on_the_same_connection(tmp_path: Path) -> None:
    master = FakeMaster()
    server = ControlServer(str(tmp_path / "c.ctl"), master)
    done = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, done, server.settle))
    thread.start()
    try:
        replies: list[dict[str, Any]] = []
        client = threading.Thread(target=lambda: replies.append(request(
            str(tmp_path / "c.ctl"), {"cmd": "reload", "wait": True}, wait_timeout=30)))
        client.start()
        deadline = time.monotonic() + 10
        while not server.waiters and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [w.generation for w in server.waiters] == [7]
        master.outcome = (False, "reload abandoned: it broke")
        client.join(10)
        assert replies == [{"ok": False, "generation": 7, "done": False,
                            "error": "reload abandoned: it broke"}]
        assert not server.waiters
    finally:
        done.set()
        thread.join()
        server.close()


def test_stop_wait_ends_when_the_master_closes_the_connection(tmp_path: Path) -> None:
    server = ControlServer(str(tmp_path / "c.ctl"), FakeMaster())
    done = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, done))
    thread.start()
    try:
        replies: list[dict[str, Any]] = []
        client = threading.Thread(target=lambda: replies.append(request(
            str(tmp_path / "c.ctl"), {"cmd": "stop", "wait": True})))
        client.start()
        deadline = time.monotonic() + 10
        while not server.waiters and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [w.generation for w in server.waiters] == [None]
        server.settle()  # a stop is never answered by a second line...
        assert len(server.waiters) == 1
        server.waiters[0].conn.close()  # ...but by the master's exit
        client.join(10)
        assert replies == [{"ok": True, "exited": True}]
    finally:
        done.set()
        thread.join()
        server.waiters.clear()
        server.close()


def test_malformed_control_requests_get_an_error_and_never_raise(tmp_path: Path) -> None:
    server = ControlServer(str(tmp_path / "c.ctl"), FakeMaster())
    try:
        for line, error in ((b"[1, 2]\n", "bad request: not a JSON object"),
                            (b'{"cmd": "scale"}\n', "workers must be a whole number"),
                            (b'{"cmd": "scale", "workers": true}\n', "workers must be"),
                            (b'{"cmd": "scale", "workers": 9}\n', "cannot scale to 9"),
                            (b"{not json\n", "bad request")):
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(tmp_path / "c.ctl"))
                client.sendall(line)
                assert server.handle_one()
                reply = json.loads(client.makefile().readline())
            assert reply["ok"] is False and reply["error"].startswith(error), reply
    finally:
        server.close()


def test_a_mute_control_socket_times_out_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "mute.ctl"
    with socket.socket(socket.AF_UNIX) as mute:
        mute.bind(str(path))
        mute.listen(4)
        with pytest.raises(NoAnswer, match=f"^no answer from {path} within 0.2 s$"):
            request(str(path), {"cmd": "status"}, timeout=0.2)


def test_control_address_is_decided_alike_for_every_source(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert control_address(Config(control="/c.ctl", pid="/p", uds="/u")).path == "/c.ctl"
    assert control_address(Config(pid="/run/p.pid", uds="/u")).path == "/run/p.pid.ctl"
    assert control_address(Config(uds="/run/app.sock")).path == "/run/app.sock.ctl"
    address = control_address(Config(port=9001, runtime_dir="/run/octo"))
    assert (address.path, address.shown) == (None, "/run/octo/octo-9001.ctl")
    assert control_address(Config(port=9001), port=43210).name == "octo-43210.ctl"
    # The clients build their settings as octo serve does: flags > OCTO_* > [tool.octo].
    (tmp_path / "pyproject.toml").write_text('[tool.octo]\nport = 9100\npid = "/x.pid"\n')
    for name in [k for k in os.environ if k.startswith("OCTO_")]:
        monkeypatch.delenv(name)
    assert control_address(settings({"app_dir": str(tmp_path)})).path == "/x.pid.ctl"
    monkeypatch.setenv("OCTO_PID", "/env.pid")
    assert control_address(settings({"app_dir": str(tmp_path)})).path == "/env.pid.ctl"
    assert control_address(settings({"app_dir": str(tmp_path), "pid": "/flag.pid",
                                     "port": None})).path == "/flag.pid.ctl"
    monkeypatch.delenv("OCTO_PID")
    monkeypatch.chdir(tmp_path)
    assert settings({}).port == 9100


# -- the lifeline: a worker notices its master's death -------------------------------------

def test_a_child_is_told_when_its_master_dies_however_it_dies() -> None:
    """A stand-in master forks a child that watches the lifeline from a thread, then dies
    by SIGKILL; the child gets SIGTERM and reports it through a pipe."""
    report_r, report_w = os.pipe()  # child -> test: "T" once it got SIGTERM
    watching_r, watching_w = os.pipe()  # child -> stand-in master: "W" once it watches
    master = os.fork()
    if master == 0:  # the stand-in master
        try:
            lifeline = orphan.Lifeline()
            child = os.fork()
            if child == 0:
                lifeline.in_child()
                signal.signal(signal.SIGTERM, lambda *_: (os.write(report_w, b"T"),
                                                          os._exit(0)))
                lifeline.watch_from_thread()
                os.write(watching_w, b"W")
                time.sleep(60)  # the SIGTERM ends this
                os._exit(1)
            select.select([watching_r], [], [], 30)
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(2)
    for fd in (report_w, watching_r, watching_w):
        os.close(fd)
    try:
        ready, _, _ = select.select([report_r], [], [], 30)
        assert ready and os.read(report_r, 1) == b"T", \
            "the child never heard of its master's death"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(master, signal.SIGKILL)
        os.waitpid(master, 0)
        os.close(report_r)


def test_the_heartbeat_parent_check() -> None:
    report_r, report_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            assert orphan.check_parent(os.getppid())  # the parent is the master: fine
            signal.signal(signal.SIGTERM, lambda *_: (os.write(report_w, b"T"), os._exit(0)))
            orphan.check_parent(os.getppid() + 1_000_000)  # re-parented: SIGTERM to itself
            time.sleep(30)
        finally:
            os._exit(1)
    os.close(report_w)
    try:
        ready, _, _ = select.select([report_r], [], [], 30)
        assert ready and os.read(report_r, 1) == b"T"
    finally:
        os.waitpid(child, 0)
        os.close(report_r)


# -- --max-requests ------------------------------------------------------------------------

def test_limit_requests_counts_http_requests_and_closes_from_the_limit_on() -> None:
    reached: list[int] = []
    heads: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"a", b"1")]})

    async def send(message: Any) -> None:
        heads.append(list(message["headers"]))

    counted = limit_requests(app, 3, lambda: reached.append(len(heads)) is None)

    async def run() -> None:
        await counted({"type": "lifespan"}, None, send)  # not a request
        for _ in range(5):
            await counted({"type": "http"}, None, send)

    asyncio.run(run())
    assert reached == [2]  # once, as the third request starts (two answered before it)
    assert [(b"connection", b"close") in head for head in heads] == \
        [False, False, True, True, True]
    assert all((b"a", b"1") in head for head in heads)  # the app's own headers stay


def test_limit_requests_keeps_connections_when_the_worker_keeps_listening() -> None:
    closes: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message: Any) -> None:
        closes.append((b"connection", b"close") in message["headers"])

    counted = limit_requests(app, 2, lambda: False)  # --reuse-port: it serves on

    async def run() -> None:
        for _ in range(4):
            await counted({"type": "http"}, None, send)

    asyncio.run(run())
    assert closes == [False] * 4
