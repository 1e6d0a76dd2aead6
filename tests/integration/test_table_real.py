"""Tables shared by real forked workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from server import ROOT, run_server

APP_DIR = ("--app-dir", str(ROOT / "tests"))
LOAD = Path(__file__).resolve().parent / "load.py"


def shm_files(pid: int) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"octo-{pid}-")]


def test_workers_increment_one_row_exactly_and_files_are_removed() -> None:
    with run_server("apps.table_app:asgi", *APP_DIR, "--workers", "3",
                    "--no-access-log") as srv:
        loads = [subprocess.Popen([sys.executable, str(LOAD), srv.url + "/incr", "2", "4"],
                                  stdout=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=60)[0] for p in loads]
        import json

        sent = sum(json.loads(out)["counts"].get("ok", 0) for out in outputs)
        assert sent > 300
        assert httpx.get(srv.url + "/", timeout=5).text == str(sent)
        master = srv.pid
        assert shm_files(master), "the table is not in /dev/shm"
    time.sleep(0.1)
    assert shm_files(master) == []


def test_next_start_removes_tables_left_by_a_killed_master() -> None:
    import signal

    import psutil

    with run_server("apps.table_app:asgi", *APP_DIR, expect_clean_exit=False) as srv:
        httpx.get(srv.url + "/incr", timeout=5)
        master = srv.pid
        assert shm_files(master)
        workers = psutil.Process(master).children()
        os.kill(master, signal.SIGKILL)
        for worker in workers:
            worker.kill()
        srv.process.wait(10)
        assert shm_files(master)  # left behind by the kill
        with run_server("apps.table_app:asgi", *APP_DIR) as second:
            second.wait_for_log("removed 1 table file(s) left by a server that was killed")
        assert shm_files(master) == []


def test_stampede_of_1000_requests_across_workers_regenerates_once() -> None:
    import asyncio

    with run_server("apps.cache_app:asgi", *APP_DIR, "--workers", "3",
                    "--no-access-log") as srv:

        async def stampede() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(base_url=srv.url, timeout=30, limits=limits) as c:
                return await asyncio.gather(*(c.get("/report") for _ in range(1000)))

        replies = asyncio.run(stampede())
        assert all(r.status_code == 200 for r in replies)
        assert len({r.text for r in replies}) == 1  # everyone got the one value
        assert httpx.get(srv.url + "/regenerations", timeout=5).text == "1"
