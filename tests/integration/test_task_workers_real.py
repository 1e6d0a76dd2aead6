"""Task workers through real ``octo serve --task-workers N`` processes: dispatch queued
while every task worker is busy (bounded, with TaskQueueFull), kill -9 mid-task and
mid-queue, ``TaskTimeout`` cancelling or replacing the task, the app's lifespan in task
workers, and a graceful stop that lets queued tasks drain (or names those dropped).

Every wait is on an event (a marker file a task writes, a log line, a process exit) with a
generous deadline that only ends a hung test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import ROOT, Server, octo_command, run_server

APP = "apps.task_queue_app:asgi"
APP_DIR = ("--app-dir", str(ROOT / "tests"))
DEADLINE = 60.0  # only a hung test waits this long
CLIENT_TIMEOUT = 20.0


def wait_for(check: Callable[[], object], what: str, timeout: float = DEADLINE) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Markers:
    """The files the app's tasks write into $TASK_TEST_DIR."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def wait(self, name: str) -> int:
        """Wait for marker *name*; its content (a pid)."""
        wait_for(lambda: self.exists(name), f"marker {name}")
        return int((self.path / name).read_text())

    def release(self, tag: str) -> None:
        (self.path / f"{tag}.release").write_text("")

    def names(self, prefix: str) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.name.startswith(prefix))


@pytest.fixture
def markers(tmp_path: Path) -> Markers:
    return Markers(tmp_path)


def server(markers: Markers, *args: str, env: dict[str, str] | None = None,
           **kwargs: Any) -> contextlib.AbstractContextManager[Server]:
    return run_server(APP, *APP_DIR, "--no-access-log", *args,
                      env={"TASK_TEST_DIR": str(markers.path), **(env or {})}, **kwargs)


def get(srv: Server, path: str) -> httpx.Response:
    return httpx.get(srv.url + path, timeout=CLIENT_TIMEOUT)


def busy_worker(srv: Server, markers: Markers, tag: str = "busy") -> int:
    """Occupy the (only) task worker with a held task; its pid."""
    assert get(srv, f"/dispatch?fn=hold&tag={tag}").status_code == 200
    return markers.wait(f"{tag}.started")


# -- (a) dispatch: queued, bounded ---------------------------------------------------------

def test_dispatch_returns_at_once_while_the_task_workers_are_busy(markers: Markers) -> None:
    with server(markers, "--task-workers", "1") as srv:
        busy_worker(srv, markers)
        # The only task worker is held: these return anyway, queued in the HTTP worker.
        replies = [get(srv, f"/dispatch?fn=record&tag=q{i}") for i in range(3)]
        assert [r.status_code for r in replies] == [200, 200, 200]
        assert not markers.names("q")  # none ran: they returned while the worker was busy
        full = get(srv, "/dispatch?fn=record&tag=q3")
        assert full.status_code == 503
        assert "cannot dispatch apps.task_queue_app.record" in full.text
        assert "octo.Octo(task_queue_size=3)" in full.text
        log = srv.wait_for_log("task queue full", DEADLINE)
        assert "octo.Octo(task_queue_size=3)" in log
        markers.release("busy")
        for i in range(3):
            markers.wait(f"q{i}.ran")
        wait_for(lambda: get(srv, "/queued").text == "0", "the queue to drain")
        assert not markers.exists("q3.ran")  # refused, never queued
        assert get(srv, "/dispatch?fn=record&tag=again").status_code == 200  # room again
        markers.wait("again.ran")


def test_a_task_worker_killed_mid_task_and_mid_queue_loses_only_its_task(
        markers: Markers) -> None:
    with server(markers, "--task-workers", "1") as srv:
        victim = busy_worker(srv, markers)
        for i in range(2):
            assert get(srv, f"/dispatch?fn=record&tag=k{i}").status_code == 200
        os.kill(victim, signal.SIGKILL)
        # The queued tasks reach the replacement task worker.
        pids = {markers.wait(f"k{i}.ran") for i in range(2)}
        assert victim not in pids
        assert not markers.exists("busy.finished")
        srv.wait_for_log("died unexpectedly", DEADLINE)


# -- (b) TaskTimeout -----------------------------------------------------------------------

@pytest.mark.parametrize("fn", ["hold", "spin"])
def test_a_plain_function_past_its_timeout_gets_its_task_worker_replaced(
        markers: Markers, fn: str) -> None:
    with server(markers, "--task-workers", "1") as srv:
        reply = get(srv, f"/run?fn={fn}&tag=slow&timeout=1")
        assert reply.text.startswith("TaskTimeout: task apps.task_queue_app."
                                     f"{fn} did not finish within 1.0s"), reply.text
        pid = markers.wait("slow.started")
        wait_for(lambda: not alive(pid), f"task worker {pid} to be killed")
        log = srv.wait_for_log("passed its timeout (timeout=1.0s)", DEADLINE)
        assert "cannot be interrupted" in log
        # The replacement serves; the task that timed out never finished.
        after = get(srv, "/run?fn=record&tag=after")
        assert after.text.startswith("ok ") and int(after.text.split()[1]) != pid
        markers.release("slow")
        assert not markers.exists("slow.finished")


def test_an_async_task_past_its_timeout_is_cancelled_and_its_worker_lives_on(
        markers: Markers) -> None:
    with server(markers, "--task-workers", "1") as srv:
        reply = get(srv, "/run?fn=hold_async&tag=polite&obey=1&timeout=1")
        assert reply.text.startswith("TaskTimeout: task apps.task_queue_app.hold_async "
                                     "did not finish within 1.0s"), reply.text
        pid = markers.wait("polite.cancelled")
        after = get(srv, "/run?fn=record&tag=after")
        assert after.text == f"ok {pid}"  # the same task worker: not replaced
        assert not markers.exists("polite.finished")
        assert "passed its timeout" not in srv.log()


def test_an_async_task_ignoring_its_cancellation_gets_its_worker_replaced(
        markers: Markers) -> None:
    with server(markers, "--task-workers", "1") as srv:
        reply = get(srv, "/run?fn=hold_async&tag=rude&obey=0&timeout=1")
        assert reply.text.startswith("TaskTimeout: "), reply.text
        pid = markers.wait("rude.ignored")  # it was cancelled, and went on
        wait_for(lambda: not alive(pid), f"task worker {pid} to be killed")
        assert "was cancelled and did not stop" in srv.wait_for_log("passed its timeout", DEADLINE)
        after = get(srv, "/run?fn=record&tag=after")
        assert after.text.startswith("ok ") and int(after.text.split()[1]) != pid
        assert not markers.exists("rude.finished")


def test_a_task_whose_caller_timed_out_while_it_waited_never_runs(markers: Markers) -> None:
    with server(markers, "--task-workers", "1") as srv:
        busy_worker(srv, markers)
        reply = get(srv, "/run?fn=record&tag=late&timeout=0.5")
        assert reply.text.startswith("TaskTimeout: task apps.task_queue_app.record"), reply.text
        markers.release("busy")
        # Tasks are taken in order: once "after" ran, "late" was taken (and skipped).
        assert get(srv, "/run?fn=record&tag=after").text.startswith("ok ")
        assert not markers.exists("late.ran")
        assert "task apps.task_queue_app.record not run: its caller left" in srv.log()


def test_an_exception_that_does_not_unpickle_comes_back_as_its_traceback(
        markers: Markers) -> None:
    with server(markers, "--task-workers", "1") as srv:
        reply = get(srv, "/run?fn=odd_error")
        assert reply.status_code == 200 and reply.text.startswith("TaskFailed: Traceback")
        assert "OddError: 7: odd" in reply.text


# -- (c) lifespan ----------------------------------------------------------------------------

def test_task_workers_run_the_app_lifespan(markers: Markers) -> None:
    with server(markers, "--task-workers", "2") as srv:
        started_by, pid = map(int, get(srv, "/run?fn=lifespan_seen").text[3:]
                              .strip("[]").split(", "))
        assert started_by == pid  # startup ran in the task worker, before it took tasks
        assert markers.exists(f"lifespan-startup-task-{pid}")
        wait_for(lambda: len(markers.names("lifespan-startup-task-")) == 2,
                 "both task workers to start")
        task_pids = [int(n.rsplit("-", 1)[1]) for n in markers.names("lifespan-startup-task-")]
    # After the stop: each task worker ran its lifespan shutdown.
    assert sorted(markers.names("lifespan-shutdown-task-")) == sorted(
        f"lifespan-shutdown-task-{p}" for p in task_pids)


def test_a_failing_lifespan_in_task_workers_stops_the_server_with_exit_3(
        markers: Markers, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*octo_command(APP), *APP_DIR, "--port", "0", "--task-workers", "1"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "TASK_TEST_DIR": str(markers.path),
                 "FAIL_LIFESPAN_ROLE": "task"})
        try:
            code = proc.wait(DEADLINE)
        finally:
            if proc.poll() is None:  # it kept serving: stop it, workers included
                proc.terminate()
                try:
                    proc.wait(DEADLINE / 2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    text = log.read_text()
    assert code == 3, text
    assert "lifespan startup failed: no database for the task worker" in text
    assert text.count("lifespan startup failed: ") == 1, text  # once: no fork loop


# -- stopping --------------------------------------------------------------------------------

def test_a_graceful_stop_lets_queued_tasks_reach_the_task_workers(markers: Markers) -> None:
    with server(markers, "--task-workers", "1") as srv:
        busy_worker(srv, markers)
        for i in range(2):
            assert get(srv, f"/dispatch?fn=record&tag=s{i}").status_code == 200
        srv.process.send_signal(signal.SIGTERM)
        srv.wait_for_log("2 dispatched task(s) still queued", DEADLINE)
        markers.release("busy")
        assert srv.process.wait(DEADLINE) == 0, srv.log()
        for i in range(2):
            assert markers.exists(f"s{i}.ran"), srv.log()
        assert "dropped" not in srv.log()


def test_a_stop_names_the_queued_tasks_no_task_worker_took_in_time(markers: Markers) -> None:
    with server(markers, "--task-workers", "1", "--graceful-timeout", "1",
                expect_clean_exit=False) as srv:
        busy_worker(srv, markers)  # never released: it outlives the graceful timeout
        for i in range(2):
            assert get(srv, f"/dispatch?fn=record&tag=d{i}").status_code == 200
        srv.process.send_signal(signal.SIGTERM)
        srv.process.wait(DEADLINE)
        log = srv.log()
    assert "dropped 2 dispatched task(s)" in log
    assert "--graceful-timeout 1.0s): apps.task_queue_app.record, " \
           "apps.task_queue_app.record" in log
    assert not markers.names("d")
