"""--metrics, health, --shutdown-delay, --max-wait-time and autoscaling through real
``octo serve`` masters and forked workers, scraped over loopback and parsed with
prometheus_client's text parser."""

from __future__ import annotations

import os
import re
import signal
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server import Server, run_server

from octo.master.control import NoAnswer, NotRunning
from octo.master.control import request as control_request

APP = '''
import asyncio, os, time
import octo

rt = octo.Octo()
hits = rt.table("hits", rows=64, columns={"count": octo.Int})
MARKS = os.environ.get("METRICS_MARKS", "")


@rt.tick("beat", every=0.2, immediate=True)
async def beat():
    pass


def long_wait(event):
    with open(os.path.join(MARKS, f"long-wait-{os.getpid()}-{time.time()}"), "w") as fh:
        fh.write(f"{event.wait} {event.threshold}")


rt.listen(octo.LongWaitDetected, long_wait)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    hits.incr(path[:32], "count")
    status, body = 200, str(os.getpid()).encode()
    if path.startswith("/status/"):
        status = int(path.rsplit("/", 1)[1])
    elif path == "/cpu":  # a CPU-bound view: it holds its worker's event loop
        end = time.process_time() + int(scope["query_string"] or b"20") / 1000
        while time.process_time() < end:
            pass
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


asgi = rt.wrap(app)
'''

TIMEOUT = 90.0  # only ends a hang: the waits below end on what they wait for


@pytest.fixture
def appdir(tmp_path: Path) -> Path:
    (tmp_path / "metricsapp.py").write_text(textwrap.dedent(APP))
    (tmp_path / "marks").mkdir()
    return tmp_path


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def serve(appdir: Path, *args: str, **kwargs: Any) -> Any:
    return run_server("metricsapp:asgi", "--app-dir", str(appdir), "--control",
                      str(appdir / "octo.ctl"), "--metrics", "127.0.0.1:0", "--no-access-log",
                      *args, env={"METRICS_MARKS": str(appdir / "marks")}, **kwargs)


def metrics_url(srv: Server) -> str:
    log = srv.wait_for_log("/metrics (and", timeout=60)
    match = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", log)
    assert match, log
    return match.group(1)


def scrape(url: str) -> dict[str, list[Any]]:
    """Samples by family name, from prometheus_client's parser (which fails on bad text)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def sample(families: dict[str, list[Any]], name: str, **labels: str) -> float:
    """The one sample called *name* (with these labels) in the scrape."""
    for family in families.values():
        for s in family:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels}")


def requests(families: dict[str, list[Any]]) -> float:
    return float(sum(s.value for s in families["octo_requests"]))


def settled(url: str) -> dict[str, list[Any]]:
    """A scrape whose request counters no longer move (the heartbeats caught up)."""
    last: list[float] = [-1.0]

    def same() -> dict[str, list[Any]] | None:
        families = scrape(url)
        count, last[0] = last[0], requests(families)
        return families if count == last[0] else None

    def spaced() -> dict[str, list[Any]] | None:
        time.sleep(0.6)  # a heartbeat apart: not a wait for an event, a sampling interval
        return same()

    return wait_for(spaced, "request counters that settle")


def status(appdir: Path) -> dict[str, Any]:
    return control_request(str(appdir / "octo.ctl"), {"cmd": "status"})


def ready_workers(appdir: Path) -> list[dict[str, Any]]:
    try:
        return [w for w in status(appdir)["workers"] if w["state"] == "ready"
                and w["role"] == "http"]
    except (NotRunning, NoAnswer, ConnectionRefusedError):
        return []


def test_a_scrape_shows_requests_waits_workers_tables_ticks_and_a_crash(appdir: Path) -> None:
    with serve(appdir, "--workers", "2") as srv:
        url = metrics_url(srv)
        wait_for(lambda: len(ready_workers(appdir)) == 2, "two ready workers")
        base = settled(url)  # the harness's readiness probes are counted too
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            for path in ("/", "/", "/status/201", "/status/404", "/status/503"):
                client.get(path)
            # A trusted proxy (loopback is in --forwarded-allow-ips) says the request
            # reached it 2 s ago: the proxy wait.
            client.get("/", headers={"X-Request-Start": f"t={time.time() - 2.0:.3f}"})
        with socket.create_connection((srv.host, srv.port), timeout=10) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")

        def counted() -> dict[str, list[Any]] | None:
            families = scrape(url)
            done = requests(families) - requests(base) == 7  # every worker's heartbeat
            ticked = sample(families, "octo_ticks_total", outcome="run") >= 1
            # "/", "/status/201", "/status/404", "/status/503" (every 2 s, tables)
            rows = sample(families, "octo_table_rows", table="hits") >= 4
            return families if done and ticked and rows else None

        # The heartbeats copy the counters into the slots twice a second.
        families = wait_for(counted, "the requests in a scrape")

        def more(name: str, **labels: str) -> float:
            return sample(families, name, **labels) - sample(base, name, **labels)

        assert more("octo_requests_total", status_class="2xx") == 4
        assert more("octo_requests_total", status_class="4xx") == 2
        assert more("octo_requests_total", status_class="5xx") == 1
        assert more("octo_request_duration_seconds_count") == 7 - 1  # not the 400
        assert more("octo_request_queue_wait_seconds_count") == 6
        assert more("octo_request_proxy_wait_seconds_count") == 1
        assert 1.5 < more("octo_request_proxy_wait_seconds_sum") < 60
        assert sample(families, "octo_workers", role="http") == 2
        pids = {s.labels["pid"] for s in families["octo_worker_resident_memory_bytes"]}
        assert len(pids) == 2
        assert all(s.value > 1_000_000 for s in families["octo_worker_resident_memory_bytes"])
        assert sample(families, "octo_table_capacity_rows", table="hits") == 64
        assert "octo_worker_event_loop_lag_seconds" in families
        assert "octo_worker_cpu_seconds" in families

        before = sample(families, "octo_requests_total", status_class="2xx")
        victim = int(next(iter(pids)))
        os.kill(victim, signal.SIGKILL)

        def replaced() -> dict[str, list[Any]] | None:
            families = scrape(url)
            crashed = sample(families, "octo_worker_restarts_total", cause="crash") == 1
            back = len(ready_workers(appdir)) == 2
            return families if crashed and back else None

        families = wait_for(replaced, "the crash counted and the worker replaced")
        # What the killed worker counted stays in the totals: counters never go down.
        assert sample(families, "octo_requests_total", status_class="2xx") >= before
        assert sample(families, "octo_worker_restarts_total", cause="liveness") == 0
        assert "restarts: crash 1" in _status_text(appdir)


def _status_text(appdir: Path) -> str:
    from octo.cli import format_status

    return format_status(status(appdir))


def test_livez_and_readyz(appdir: Path) -> None:
    with serve(appdir) as srv:
        url = metrics_url(srv)
        wait_for(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 200,
                 "/readyz 200")
        live = httpx.get(url + "/livez", timeout=10)
        assert live.status_code == 200 and live.text.startswith("live")
        assert httpx.get(url + "/nothing", timeout=10).status_code == 404


def test_hostile_metrics_clients_do_not_stall_the_master(appdir: Path) -> None:
    with serve(appdir) as srv:
        url = metrics_url(srv)
        port = int(url.rsplit(":", 1)[1])
        wait_for(lambda: ready_workers(appdir), "a ready worker")
        silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
        huge = socket.create_connection(("127.0.0.1", port), timeout=10)
        half = socket.create_connection(("127.0.0.1", port), timeout=10)
        stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")  # and no more
            half.sendall(b"GET /metr")
            half.shutdown(socket.SHUT_WR)  # half a request line, then end of input
            huge.sendall(b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * 20000)
            # Meanwhile the master supervises, answers its control socket and scrapes.
            started = time.monotonic()
            assert status(appdir)["ok"]
            assert httpx.get(url + "/livez", timeout=10).status_code == 200
            assert httpx.get(srv.url + "/", timeout=10).status_code == 200
            assert time.monotonic() - started < 30
            half.settimeout(10)
            assert half.recv(100) == b""  # closed unanswered: nothing to answer
            huge.settimeout(10)
            try:
                answer = huge.recv(100)
            except ConnectionResetError:  # closed with our unread bytes: a reset
                answer = b"HTTP/1.0 431"
            assert answer.startswith(b"HTTP/1.0 431")
        finally:
            for sock in (*silent, huge, half, stalled):
                sock.close()


def test_shutdown_delay_keeps_serving_while_readyz_fails(appdir: Path) -> None:
    delay = 4.0
    with serve(appdir, "--workers", "2", "--shutdown-delay", str(delay)) as srv:
        url = metrics_url(srv)
        wait_for(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 200,
                 "/readyz 200")
        kept = httpx.Client(base_url=srv.url, timeout=10)  # a keep-alive client, as a proxy
        assert kept.get("/").status_code == 200
        sent_sigterm = time.monotonic()
        srv.process.send_signal(signal.SIGTERM)
        wait_for(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 503,
                 "/readyz 503 after SIGTERM")
        answers: list[int] = []
        failures: list[str] = []
        # Every request sent within the delay (which starts when the master handles the
        # signal, so no earlier than sent_sigterm) must be answered.
        while time.monotonic() < sent_sigterm + delay - 0.5:
            for client in (kept, None):
                try:
                    reply = client.get("/") if client else httpx.get(srv.url + "/", timeout=10)
                    answers.append(reply.status_code)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
        kept.close()
        assert not failures, failures
        assert answers and set(answers) == {200}
        srv.wait_for_log(f"--shutdown-delay {delay} s passed: stopping", timeout=TIMEOUT)
        assert srv.process.wait(TIMEOUT) == 0
        assert "SIGTERM: /readyz fails from now on" in srv.log()


def test_max_wait_time_warns_once_per_episode_and_fires_long_wait_detected(
        appdir: Path) -> None:
    with serve(appdir, "--workers", "2", "--max-wait-time", "0.5") as srv:
        url = metrics_url(srv)
        wait_for(lambda: len(ready_workers(appdir)) == 2, "two ready workers")
        stop = threading.Event()

        def late_requests() -> None:  # a proxy that queued every request for 3 s
            with httpx.Client(base_url=srv.url, timeout=10) as client:
                while not stop.is_set():
                    client.get("/", headers={"X-Request-Start": f"t={time.time() - 3:.3f}"})
                    time.sleep(0.05)

        load = threading.Thread(target=late_requests, daemon=True)
        load.start()
        try:
            srv.wait_for_log("above --max-wait-time 0.5 s (LongWaitDetected)", timeout=TIMEOUT)
            watch = wait_for(lambda: status(appdir)["long_wait"]["active"] and
                             status(appdir)["long_wait"], "the episode in octo status")
            assert watch["episodes"] == 1 and watch["peak"] > 2.5
            assert "LONG WAIT since" in _status_text(appdir)
            marks = wait_for(lambda: list((appdir / "marks").iterdir()),
                             "the LongWaitDetected listener's mark")
        finally:
            stop.set()
            load.join(30)
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            srv_log = srv.log_size()

            def ended() -> bool:
                client.get("/")  # no X-Request-Start: no wait
                return "back below --max-wait-time" in srv.log(srv_log)

            wait_for(ended, "the episode's end")
        families = scrape(url)
        assert sample(families, "octo_long_wait_episodes_total") == 1
        assert sample(families, "octo_long_wait") == 0
        assert srv.log().count("(LongWaitDetected)") == 1  # one warning for the episode
        assert len(list((appdir / "marks").iterdir())) == len(marks) == 1  # one worker fired
        wait, threshold = (appdir / "marks" / marks[0].name).read_text().split()
        assert float(wait) > 2.5 and float(threshold) == 0.5


class Load:
    """Closed-loop clients on /cpu until stopped; every answer that is not 200 is kept."""

    def __init__(self, url: str, clients: int, deadline: float) -> None:
        self.url = url
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.deadline = time.monotonic() + deadline
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                try:
                    reply = client.get("/cpu?50")
                    failure = None if reply.status_code == 200 else f"status {reply.status_code}"
                except httpx.HTTPError as exc:
                    failure = repr(exc)
                with self.lock:
                    if failure is None:
                        self.ok += 1
                    else:
                        self.failures.append(failure)


def test_autoscaling_under_a_load_step_up_then_down_without_failures(appdir: Path) -> None:
    # Thresholds far from what the load gives (busy ~100 % under it, 0 after it), so that
    # clients starved of CPU on a busy machine do not make it look idle.
    with serve(appdir, "--workers", "1:3", "--scale-cooldown", "1", "--scale-up-busy", "0.5",
               "--scale-down-busy", "0.1") as srv:
        url = metrics_url(srv)
        wait_for(lambda: len(ready_workers(appdir)) == 1, "one ready worker")
        timeline: list[tuple[float, int, int]] = []
        started = time.monotonic()

        def record() -> dict[str, Any]:
            reply = status(appdir)
            ready = [w for w in reply["workers"] if w["state"] == "ready"]
            timeline.append((round(time.monotonic() - started, 1), reply["target"], len(ready)))
            return reply

        with Load(srv.url, clients=8, deadline=240) as load:
            try:
                # Up: at least one worker more (3, the maximum, on a machine with room).
                wait_for(lambda: record()["target"] >= 2 and len(ready_workers(appdir)) >= 2,
                         "more workers under load")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; timeline {timeline[-5:]}; log:\n"
                                     f"{srv.log()[-3000:]}") from None
        assert not load.failures, load.failures[:5]
        assert load.ok > 0
        wait_for(lambda: record()["target"] == 1 and len(status(appdir)["workers"]) == 1,
                 "back to one worker after the load")
        families = scrape(url)
        # The two workers scaled down left their counts in the totals.
        assert sample(families, "octo_requests_total", status_class="2xx") >= load.ok
        ups = sample(families, "octo_autoscale_changes_total", direction="up")
        assert ups >= 1
        assert sample(families, "octo_autoscale_changes_total", direction="down") == ups
        log = srv.log()
        # Eight clients of a CPU-bound view on one worker: busy, and (before Python 3.12's
        # eager tasks) their requests wait for the loop's turn: either reason adds one.
        assert re.search(r"autoscale: 1 -> 2 worker\(s\): (busy \d|queue wait \d)", log), log
        assert "autoscale: 2 -> 1 worker(s): idle" in log
        changes = [(t, target) for i, (t, target, _) in enumerate(timeline)
                   if i == 0 or timeline[i - 1][1] != target]
        print(f"\nautoscale timeline (seconds, target): {changes}; {load.ok} requests, "
              f"{len(load.failures)} failed")
        targets = [target for _, target in changes]
        peak = targets.index(max(targets))
        # Up one at a time under the load, then down one at a time after it.
        assert targets[:peak + 1] == list(range(1, max(targets) + 1)), changes
        assert targets[peak:] == list(range(max(targets), 0, -1)), changes


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield


def test_status_watch_refreshes_until_ctrl_c(appdir: Path) -> None:
    import subprocess
    import sys

    with serve(appdir) as srv:
        wait_for(lambda: ready_workers(appdir), "a ready worker")
        watcher = subprocess.Popen(
            [sys.executable, "-m", "octo", "status", "--watch", "--interval", "0.2",
             "--control", str(appdir / "octo.ctl")], stdout=subprocess.PIPE, text=True)
        try:
            assert watcher.stdout is not None
            heads = 0
            deadline = time.monotonic() + TIMEOUT
            while heads < 3 and time.monotonic() < deadline:
                line = watcher.stdout.readline()
                assert line, "the watch ended early"
                heads += line.startswith("master ")
            assert heads == 3  # three refreshes of the view
            watcher.send_signal(signal.SIGINT)
            watcher.communicate(timeout=TIMEOUT)  # read on: a full pipe would hold its exit
            assert watcher.returncode == 0
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
        srv.stop()
        done = subprocess.run([sys.executable, "-m", "octo", "status", "--watch", "--control",
                               str(appdir / "octo.ctl")], capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert done.returncode == 1 and "no octo server is running" in done.stderr
