"""How the master stops task workers and judges their boot failures (no processes: an
arbiter that is never run, fake workers, the signals it would send collected)."""

from __future__ import annotations

import signal

from octo.config import Config
from octo.master.arbiter import EXIT_WORKER_BOOT, Arbiter, WorkerInfo


def arbiter_with(*roles: str) -> tuple[Arbiter, list[tuple[int, int]]]:
    arbiter = Arbiter(Config(app="x:app"), [], None)
    for index, role in enumerate(roles):
        pid = 1000 + index
        arbiter.workers[pid] = WorkerInfo(pid=pid, index=index, generation=0, spawned=0.0,
                                          role=role, ready=True)
    arbiter.ever_ready = True
    sent: list[tuple[int, int]] = []
    arbiter._signal = lambda pid, sig: sent.append((pid, sig))  # type: ignore[method-assign]
    return arbiter, sent


def test_a_graceful_stop_stops_task_workers_once_their_callers_are_gone() -> None:
    arbiter, sent = arbiter_with("http", "http", "task")
    arbiter.stop(graceful=True)
    assert sent == [(1000, signal.SIGTERM), (1001, signal.SIGTERM)]
    arbiter._stop_task_workers_without_callers()
    assert len(sent) == 2  # an HTTP worker still runs: its requests may need tasks
    del arbiter.workers[1000]
    arbiter._stop_task_workers_without_callers()
    assert len(sent) == 2
    del arbiter.workers[1001]
    arbiter._stop_task_workers_without_callers()
    assert sent[2:] == [(1002, signal.SIGTERM)]
    arbiter._stop_task_workers_without_callers()
    assert len(sent) == 3  # once
    arbiter.slots.release()


def test_a_fast_stop_stops_every_worker_at_once() -> None:
    arbiter, sent = arbiter_with("http", "task")
    arbiter.stop(graceful=True)
    arbiter.stop(graceful=False)  # the second Ctrl-C
    assert sent == [(1000, signal.SIGTERM), (1000, signal.SIGQUIT), (1001, signal.SIGQUIT)]
    arbiter.slots.release()


def test_task_workers_failing_to_boot_while_http_workers_serve_stop_the_server() -> None:
    """Not a reload to abandon (which would respawn the task worker forever): nothing can
    run the app's tasks."""
    arbiter, _ = arbiter_with("http")
    failed = WorkerInfo(pid=2000, index=1, generation=0, spawned=0.0, role="task")
    arbiter._on_exit(failed, EXIT_WORKER_BOOT)
    assert arbiter.stopping and arbiter.exit_code == EXIT_WORKER_BOOT
    arbiter.slots.release()


def test_a_new_worker_failing_to_boot_while_its_kind_serves_keeps_the_server() -> None:
    arbiter, _ = arbiter_with("http", "task")
    failed = WorkerInfo(pid=2000, index=2, generation=1, spawned=0.0, role="task")
    arbiter._on_exit(failed, EXIT_WORKER_BOOT)  # a reload with broken code
    assert not arbiter.stopping and arbiter.exit_code == 0
    arbiter.slots.release()
