"""``octo bench`` against a real octo server (small, bounded loads)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from server import ROOT, run_server

APP = "apps.serving:app"
APP_DIR = ("--app-dir", str(ROOT / "tests"))


def bench(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "octo", "bench", *args, "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def srv():
    with run_server(APP, *APP_DIR, "--no-access-log") as server:
        yield server


def test_request_count_is_exact_and_reported(srv) -> None:
    data = bench(srv.url + "/", "-c", "8", "-n", "500")
    assert data["requests"] == 500 and data["statuses"] == {"200": 500}
    assert data["errors"] == {"connect": 0, "read": 0, "timeout": 0, "non-2xx/3xx": 0}
    lat = data["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert data["bytes"] > 500 * 100 and data["load_cpu_seconds"] > 0


def test_post_body_pipeline_and_two_processes(srv) -> None:
    data = bench(srv.url + "/echo", "-c", "4", "-n", "400", "-m", "POST", "-b", "x" * 100,
                 "-p", "4", "--processes", "2")
    assert data["requests"] == 400 and data["statuses"] == {"200": 400}
    assert data["processes"] == 2


def test_non_2xx_and_read_errors_are_counted(srv) -> None:
    data = bench(srv.url + "/crash", "-c", "2", "-n", "20")
    assert data["statuses"] == {"500": 20} and data["errors"]["non-2xx/3xx"] == 20


@pytest.fixture
def closed_url() -> Iterator[str]:
    """A loopback URL nothing listens on: its port stays bound (never listening) for the
    test. A port only probed free was taken by a server another test started meanwhile
    (suite on three processes: the bench found it listening and succeeded)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{holder.getsockname()[1]}/"


def test_connect_errors_are_counted_and_fail_the_run(closed_url: str) -> None:
    url = closed_url
    result = subprocess.run([sys.executable, "-m", "octo", "bench", url, "-c", "2", "-d", "0.5",
                             "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["requests"] == 0 and data["errors"]["connect"] > 0
    assert f"could not connect to {url}" in result.stderr


def test_request_count_with_nothing_listening_ends(closed_url: str) -> None:
    """-n N against a closed port: each failed connection counts toward N, so the run ends
    (it used to retry forever, spinning a core)."""
    url = closed_url
    result = subprocess.run([sys.executable, "-m", "octo", "bench", url, "-c", "4", "-n", "40"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "40 connection attempts failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_open_model_sends_at_most_the_scheduled_rate(srv) -> None:
    data = bench(srv.url + "/", "-c", "4", "-d", "1", "-R", "200")
    # 200/s for 1 s: never more than scheduled (a few in flight at the end may be cut). The
    # lower bound only says it kept sending: a slow machine may fall behind the schedule.
    assert 20 <= data["requests"] <= 201 and data["model"] == "open"


def test_remote_targets_are_refused() -> None:
    result = subprocess.run([sys.executable, "-m", "octo", "bench", "http://192.0.2.1/",
                             "-n", "1"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--allow-remote" in result.stderr
