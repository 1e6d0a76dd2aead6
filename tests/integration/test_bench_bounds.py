"""The benchmark suite's two bounds answer real HTTP like the servers they bound.

``raw_ceiling.py`` (fixed bytes) and ``asgi_floor.py`` (only what ASGI demands) are
reported beside octo; a bound that answered wrongly would make every ratio to it wrong.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

APPS = Path(__file__).resolve().parents[2] / "benchmarks" / "apps"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def bound_server(script: str, *args: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(APPS / script), "--port", str(port), *args],
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                httpx.get(url, timeout=0.5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"{script} did not answer in 30 s"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(("app", "path", "body", "ctype"), [
    ("hello:app", "/", b"Hello, world!", b"text/plain"),
    ("plain:json_app", "/", b'{"message": "Hello, world!"}', b"application/json"),
    ("starlette_json:app", "/json", b'{"message":"Hello, world!"}', b"application/json"),
])
def test_asgi_floor_serves_the_scenario_apps(app: str, path: str, body: bytes,
                                             ctype: bytes) -> None:
    with bound_server("asgi_floor.py", "--app", app) as url, httpx.Client() as client:
        for _ in range(3):  # keep-alive: the same connection answers again
            response = client.get(url + path)
            assert response.status_code == 200
            assert response.content == body
            assert response.headers["content-type"].encode() == ctype
            assert response.headers["date"].endswith(" GMT")
            assert response.headers["content-length"] == str(len(body))


def test_asgi_floor_refuses_an_app_that_suspends() -> None:
    # The floor drives coroutines by hand; an app that awaits a real future cannot be served
    # there and must fail loudly (500, a line on stderr) rather than be measured as fast.
    with bound_server("asgi_floor.py", "--app", "plain:sleep_10ms") as url:
        response = httpx.get(url + "/", timeout=10)
        assert response.status_code == 500
        assert response.headers["connection"] == "close"


def test_raw_ceiling_answers_hello() -> None:
    with bound_server("raw_ceiling.py") as url:
        response = httpx.get(url)
        assert response.status_code == 200
        assert response.content == b"Hello, world!"
