"""Task workers supervised by the master."""

from __future__ import annotations

import time

import httpx
from server import ROOT, run_server

APP_DIR = ("--app-dir", str(ROOT / "tests"))


def test_task_workers_compute_report_errors_and_survive_a_kill() -> None:
    with run_server("apps.tasks_app:asgi", *APP_DIR, "--task-workers", "2",
                    "--no-access-log") as srv:
        with httpx.Client(base_url=srv.url, timeout=20) as client:
            http_pid, *parts = client.get("/fib").text.split()
            assert [int(p.split(":")[1]) for p in parts] == [17711] * 4
            task_pids = {p.split(":")[0] for p in parts}
            assert http_pid not in task_pids and len(task_pids) <= 2  # ran in task workers
            assert client.get("/fail").text == "caught task failed on purpose"
            assert client.get("/die").text.startswith("lost: the task worker died")
            assert client.get("/timeout").text == "timed out"
            for _ in range(5):
                assert client.get("/dispatch").text == "dispatched"
            deadline = time.monotonic() + 30
            while client.get("/count").text != "5":
                assert time.monotonic() < deadline, "dispatched tasks did not all run"
                time.sleep(0.05)
            # The killed task worker was replaced: work still gets done.
            _, *parts = client.get("/fib").text.split()
            assert len(parts) == 4
        assert "died unexpectedly" in srv.log()
