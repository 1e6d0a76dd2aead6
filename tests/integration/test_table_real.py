"""Tables shared by real forked workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from server import ROOT, run_server

APP_DIR = ("--app-dir", str(ROOT / "tests"))
LOAD = Path(__file__).resolve().parent / "load.py"


def shm_files(pid: int, root: Path | None = None) -> list[str]:
    """The files of the server whose master is *pid*, in its runtime directory."""
    from octo.runtime.rundir import default_root

    return [n for n in os.listdir(root or default_root()) if n.startswith(f"{pid}-")]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def test_workers_increment_one_row_exactly_and_files_are_removed() -> None:
    import json

    processes, connections, requests = 2, 4, 100
    with run_server("apps.table_app:asgi", *APP_DIR, "--workers", "3",
                    "--no-access-log") as srv:
        # A fixed number of requests (SECONDS is only a deadline): no throughput floor.
        loads = [subprocess.Popen([sys.executable, str(LOAD), srv.url + "/incr", "120",
                                   str(connections), str(requests)],
                                  stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        outputs = [json.loads(p.communicate(timeout=180)[0])["counts"] for p in loads]
        assert all(out == {"ok": connections * requests} for out in outputs), outputs
        # Every increment, from whichever worker served it, landed in the one shared row.
        total = processes * connections * requests
        assert httpx.get(srv.url + "/", timeout=10).text == str(total)
        master = srv.pid
        assert shm_files(master), "the table is not in the runtime directory"
    wait_until(lambda: shm_files(master) == [], "the master to remove its table files")


STALE_LINE = re.compile(r"removed (\d+) file\(s\) left by a server that was killed")


def kill_leaving_tables(root: Path) -> tuple[int, Path]:
    """Start a server in runtime directory *root*, make it create its table, SIGKILL master
    and workers; the master's pid and its control socket's path."""
    import signal

    import psutil

    with run_server("apps.table_app:asgi", *APP_DIR, "--runtime-dir", str(root),
                    expect_clean_exit=False) as srv:
        httpx.get(srv.url + "/incr", timeout=10)
        master = srv.pid
        control = root / f"octo-{srv.port}.ctl"
        assert shm_files(master, root) and control.exists()
        workers = psutil.Process(master).children()
        os.kill(master, signal.SIGKILL)
        for worker in workers:
            worker.kill()
        srv.process.wait(10)
    return master, control


def test_next_start_removes_tables_left_by_a_killed_master(tmp_path: Path) -> None:
    # A runtime directory of its own: in the shared one, a server of another test (or of
    # another test run) removed the dead master's files before ours started.
    root = tmp_path / "run"
    master, control = kill_leaving_tables(root)
    assert shm_files(master, root) and control.exists()  # left behind by the kill
    with run_server("apps.table_app:asgi", *APP_DIR, "--runtime-dir", str(root)) as second:
        log = second.log()  # the master cleans up before it forks workers
    removed = STALE_LINE.search(log)
    assert removed is not None and int(removed.group(1)) >= 2, log  # table + control socket
    assert shm_files(master, root) == [] and not control.exists()


def test_stampede_across_workers_regenerates_once() -> None:
    import asyncio

    from bounded import bounded_gather

    requests, connections = 60, 30  # 30 at once: they all find the cache empty
    with run_server("apps.cache_app:asgi", *APP_DIR, "--workers", "3",
                    "--no-access-log") as srv:

        async def stampede() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=connections)
            async with httpx.AsyncClient(base_url=srv.url, timeout=30, limits=limits) as c:
                async def report() -> httpx.Response:
                    return await c.get("/report")

                return await bounded_gather([report] * requests, limit=connections)

        replies = asyncio.run(stampede())
        assert [r.status_code for r in replies] == [200] * requests
        assert len({r.text for r in replies}) == 1  # everyone got the one value
        assert httpx.get(srv.url + "/regenerations", timeout=10).text == "1"


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


DEADLINE = 30.0  # only ends a hung test


def marker(directory: Path, kind: str, name: str) -> int:
    """The pid in a ``KIND-NAME-<pid>`` marker of tests/apps/lock_app.py (0: none yet)."""
    found = list(directory.glob(f"{kind}-{name}-*"))
    return int(found[0].name.rsplit("-", 1)[1]) if found else 0


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=DEADLINE)


def lock_server(directory: Path, workers: int):  # type: ignore[no-untyped-def]
    return run_server("apps.lock_app:asgi", *APP_DIR, "--workers", str(workers),
                      "--no-access-log", env={"OCTO_TEST_MARKERS": str(directory)})


def test_two_requests_of_one_worker_hold_the_async_lock_across_awaits_in_turn(
        tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with lock_server(tmp_path, 1) as srv, ThreadPoolExecutor(2) as pool:
        first = pool.submit(get, srv.url + "/hold?a")
        wait_until(lambda: marker(tmp_path, "holding", "a") != 0, "a to hold the lock",
                   DEADLINE)
        second = pool.submit(get, srv.url + "/hold?b")
        wait_until(lambda: marker(tmp_path, "waiting", "b") != 0, "b to wait", DEADLINE)
        # b waits without blocking the worker's loop: the worker answers meanwhile.
        assert get(srv.url + "/pid").text == str(marker(tmp_path, "holding", "a"))
        assert marker(tmp_path, "holding", "b") == 0, "b entered while a held the lock"
        (tmp_path / "release-a").write_text("")
        assert (first.result(DEADLINE).status_code, first.result().text) == (200, "1")
        wait_until(lambda: marker(tmp_path, "holding", "b") != 0, "b to take the lock",
                   DEADLINE)
        (tmp_path / "release-b").write_text("")
        assert (second.result(DEADLINE).status_code, second.result().text) == (200, "2")
        assert get(srv.url + "/count").text == "2"


def test_a_sync_lock_held_across_an_await_fails_the_second_request_not_the_worker(
        tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with lock_server(tmp_path, 1) as srv, ThreadPoolExecutor(1) as pool:
        first = pool.submit(get, srv.url + "/hold-sync?a")
        wait_until(lambda: marker(tmp_path, "holding", "a") != 0, "a to hold the lock",
                   DEADLINE)
        # The second request would block the loop's thread on a lock that only this loop
        # can release: it fails at once, and loudly, instead.
        assert get(srv.url + "/hold-sync?b").status_code == 500
        log = srv.wait_for_log("LockReentered", timeout=DEADLINE)
        assert "table 'counts'" in log and "async with table.locked()" in log
        assert get(srv.url + "/pid").status_code == 200
        (tmp_path / "release-a").write_text("")
        assert (first.result(DEADLINE).status_code, first.result().text) == (200, "1")


def test_a_waiter_in_another_worker_keeps_serving_while_it_waits(tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with lock_server(tmp_path, 2) as srv, ThreadPoolExecutor(21) as pool:
        sections = [pool.submit(get, srv.url + "/hold?a")]
        wait_until(lambda: marker(tmp_path, "holding", "a") != 0, "a to hold the lock",
                   DEADLINE)
        holder = marker(tmp_path, "holding", "a")
        # More lock requests until one waits in the other worker (which worker accepts a
        # connection is the kernel's and the workers' business; the tries are bounded).
        waiter = 0
        for n in range(20):
            sections.append(pool.submit(get, srv.url + f"/hold?w{n}"))
            wait_until(lambda n=n: marker(tmp_path, "waiting", f"w{n}") != 0,
                       f"w{n} to wait", DEADLINE)
            if (pid := marker(tmp_path, "waiting", f"w{n}")) != holder:
                waiter = pid
                break
        assert waiter, "no lock request reached the second worker"
        # That worker waits for the lock, and serves other requests meanwhile.
        served: set[int] = set()
        # A new connection for each request (no keep-alive), so both workers get some.
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0),
                          timeout=DEADLINE) as client:
            for _ in range(200):
                served.add(int(client.get(srv.url + "/pid").text))
                if waiter in served:
                    break
        assert waiter in served, f"worker {waiter} answered nothing while waiting"
        assert len(list(tmp_path.glob("holding-*"))) == 1, "two sections held the lock"
        for path in [tmp_path / "release-a", *(tmp_path / f"release-w{n}"
                                                for n in range(len(sections) - 1))]:
            path.write_text("")
        results = sorted(int(s.result(DEADLINE).text) for s in sections)
    assert results == list(range(1, len(sections) + 1)), results


def test_a_waiter_takes_over_the_lock_of_a_worker_killed_in_its_async_section(
        tmp_path) -> None:
    import signal
    from concurrent.futures import ThreadPoolExecutor

    with lock_server(tmp_path, 2) as srv, ThreadPoolExecutor(21) as pool:
        pool.submit(get, srv.url + "/hold?a")  # never answered: its worker is killed
        wait_until(lambda: marker(tmp_path, "holding", "a") != 0, "a to hold the lock",
                   DEADLINE)
        holder = marker(tmp_path, "holding", "a")
        # Lock requests until one waits in the other worker; each ends as soon as it holds.
        waiter = None
        for n in range(20):
            (tmp_path / f"release-w{n}").write_text("")
            request = pool.submit(get, srv.url + f"/hold?w{n}")
            wait_until(lambda n=n: marker(tmp_path, "waiting", f"w{n}") != 0,
                       f"w{n} to wait", DEADLINE)
            if marker(tmp_path, "waiting", f"w{n}") != holder:
                waiter = request
                break
        assert waiter is not None, "no lock request reached the second worker"
        assert len(list(tmp_path.glob("holding-*"))) == 1, "two sections held the lock"
        os.kill(holder, signal.SIGKILL)
        answer = waiter.result(DEADLINE)
        # The killed section never wrote (its write came after its await): this one is
        # the first to count.
        assert (answer.status_code, answer.text) == (200, "1")
        srv.wait_for_log(f"took over the lock of process {holder}", timeout=DEADLINE)
