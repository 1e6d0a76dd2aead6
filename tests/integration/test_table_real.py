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
    """The files of the server whose master is *pid*, in its runtime directory."""
    from octo.runtime.rundir import default_root

    return [n for n in os.listdir(default_root()) if n.startswith(f"{pid}-")]


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
        assert shm_files(master), "the table is not in the runtime directory"
    time.sleep(0.1)
    assert shm_files(master) == []


def test_next_start_removes_files_left_by_a_killed_master() -> None:
    import signal

    import psutil

    from octo.runtime.rundir import default_root

    with run_server("apps.table_app:asgi", *APP_DIR, expect_clean_exit=False) as srv:
        httpx.get(srv.url + "/incr", timeout=5)
        master = srv.pid
        control = Path(default_root()) / f"octo-{srv.port}.ctl"
        assert shm_files(master) and control.exists()
        workers = psutil.Process(master).children()
        os.kill(master, signal.SIGKILL)
        for worker in workers:
            worker.kill()
        srv.process.wait(10)
        assert shm_files(master) and control.exists()  # left behind by the kill
        with run_server("apps.table_app:asgi", *APP_DIR) as second:
            # Its table and its control socket (other servers may have left more).
            second.wait_for_log("file(s) left by a server that was killed")
            assert shm_files(master) == [] and not control.exists()


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


SCHEMA_APP = '''
import octo
rt = octo.Octo()
t = rt.table("data", rows=32, columns={columns})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/incr":
        t.incr("k", "n")
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": str(t.get("k", "n") or 0).encode()}})

asgi = rt.wrap(app)
'''


def test_reload_keeps_rows_with_same_schema_and_starts_fresh_on_change(tmp_path) -> None:
    import signal

    from octo.master.control import request

    def write(columns: str) -> None:
        (tmp_path / "schema_app.py").write_text(SCHEMA_APP.format(columns=columns))
        for cached in (tmp_path / "__pycache__").glob("schema_app*.pyc"):
            cached.unlink()

    def reload_and_wait(srv, ctl) -> None:
        before = {w["pid"] for w in request(str(ctl), {"cmd": "status"})["workers"]}
        os.kill(srv.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while True:
            workers = request(str(ctl), {"cmd": "status"})["workers"]
            pids = {w["pid"] for w in workers if w["state"] == "ready"}
            if pids and not pids & before and len(workers) == 1:
                return
            assert time.monotonic() < deadline, "reload did not finish"
            time.sleep(0.05)

    write('{"n": octo.Int}')
    ctl = tmp_path / "ctl"
    with run_server("schema_app:asgi", "--app-dir", str(tmp_path), "--control", str(ctl)) as srv:
        for _ in range(3):
            httpx.get(srv.url + "/incr", timeout=5)
        reload_and_wait(srv, ctl)  # same schema: the rows survive the new worker
        assert httpx.get(srv.url + "/", timeout=5).text == "3"
        write('{"n": octo.Int, "label": octo.Str(16)}')
        reload_and_wait(srv, ctl)  # changed schema: a fresh table, and a log line
        assert httpx.get(srv.url + "/", timeout=5).text == "0"
        assert "table 'data': schema changed, starting a fresh table" in srv.log()
