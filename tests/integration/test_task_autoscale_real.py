"""--task-workers MIN:MAX through a real server: a step of dispatched tasks makes the
master add task workers (the queue's time to clear goes up), and remove them once the step
is over, one at a time, every change logged with its reason and counted in /metrics; no
dispatch is refused and every task runs exactly once."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from server import run_server
from test_metrics_real import metrics_url, sample, scrape, status, wait_for

APP = '''
import os, time
import octo

rt = octo.Octo()
DONE = os.environ["TASK_SCALE_DONE"]


def work(number):
    time.sleep(0.1)  # holds its task worker, without needing a CPU of its own
    with open(os.path.join(DONE, str(number)), "x"):  # "x": a task run twice fails
        pass


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    status = 200
    if scope["path"] == "/dispatch":
        await rt.tasks.dispatch(work, int(scope["query_string"]))
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"queued"})


asgi = rt.wrap(app)
'''
RATE = 20.0  # dispatches per second: twice what one task worker clears (10/s)
LOAD_DEADLINE = 60.0  # the step ends when the workers went up, or after this


class Dispatcher:
    """Dispatch tasks at RATE until stopped; every answer that is not 200 is kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Dispatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_DEADLINE
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                due = time.monotonic() + 1 / RATE
                try:
                    reply = client.get(f"/dispatch?{self.sent}")
                    if reply.status_code != 200:
                        self.failures.append(f"status {reply.status_code}: {reply.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.sent += 1
                self.stop.wait(max(0.0, due - time.monotonic()))  # the pace, not a wait


def test_task_workers_scale_up_under_a_task_step_and_back_down_without_losing_one(
        tmp_path: Path) -> None:
    (tmp_path / "taskscaleapp.py").write_text(textwrap.dedent(APP))
    done = tmp_path / "done"
    done.mkdir()
    with run_server("taskscaleapp:asgi", "--app-dir", str(tmp_path), "--control",
                    str(tmp_path / "octo.ctl"), "--metrics", "127.0.0.1:0",
                    "--no-access-log", "--task-workers", "1:3", "--scale-cooldown", "1",
                    "--scale-down-busy", "0.1", env={"TASK_SCALE_DONE": str(done)}) as srv:
        url = metrics_url(srv)
        timeline: list[tuple[float, int, int]] = []
        started = time.monotonic()

        def record() -> dict[str, Any]:
            reply = status(tmp_path)
            ready = [w for w in reply["workers"] if w["role"] == "task" and w["state"] == "ready"]
            timeline.append((round(time.monotonic() - started, 1), reply["task_target"],
                             len(ready)))
            return reply

        wait_for(lambda: record()["workers"] and timeline[-1][2] == 1, "one task worker")
        with Dispatcher(srv.url) as load:
            try:
                wait_for(lambda: record()["task_target"] >= 2 and timeline[-1][2] >= 2,
                         "more task workers under the step")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; timeline {timeline[-5:]}; log:\n"
                                     f"{srv.log()[-3000:]}") from None
        assert not load.failures, load.failures[:5]
        assert load.sent > 0
        wait_for(lambda: record()["task_target"] == 1 and sum(
            1 for w in status(tmp_path)["workers"] if w["role"] == "task") == 1,
            "back to one task worker after the step")
        # Every dispatched task ran once (a second run would have failed on its file).
        wait_for(lambda: len(list(done.iterdir())) == load.sent, "every task done")
        assert sorted(int(p.name) for p in done.iterdir()) == list(range(load.sent))
        log = srv.log()
        assert "Traceback" not in log and "FileExistsError" not in log
        assert "autoscale: 1 -> 2 task worker(s): task queue time to clear" in log
        assert "> --task-scale-up-wait 1000 ms" in log
        assert "autoscale: 2 -> 1 task worker(s): idle" in log
        families = scrape(url)
        ups = sample(families, "octo_autoscale_changes_total", role="task", direction="up")
        assert ups >= 1
        assert sample(families, "octo_autoscale_changes_total", role="task",
                      direction="down") == ups
        assert sample(families, "octo_autoscale_changes_total", role="http",
                      direction="up") == 0
        assert sample(families, "octo_task_workers_desired") == 1
        changes = [(t, target) for i, (t, target, _) in enumerate(timeline)
                   if i == 0 or timeline[i - 1][1] != target]
        print(f"\ntask autoscale timeline (seconds, task workers): {changes}; {load.sent} "
              f"tasks dispatched, {len(load.failures)} refused, all {load.sent} ran once")
        targets = [target for _, target in changes]
        peak = targets.index(max(targets))
        assert targets[:peak + 1] == list(range(1, max(targets) + 1)), changes
        assert targets[peak:] == list(range(max(targets), 0, -1)), changes
