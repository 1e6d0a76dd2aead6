"""A Django project served through its WSGI handler by a real ``octo serve`` (forked
worker, real sockets): detected as WSGI, what views see, bodies, streams, errors, a client
leaving a stream, --threads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from harness import parse_responses
from server import ROOT, Server, read_until_closed, run_server

pytest.importorskip("django")

APP = "apps.django_wsgi.wsgi:application"
APP_DIR = ("--app-dir", str(ROOT / "tests"))
WAIT = 60.0  # only ends a hung test


@pytest.fixture(scope="module")
def srv():
    with run_server(APP, *APP_DIR, "--workers", "1", "--root-path", "/site") as server:
        yield server


def test_a_wsgi_app_is_detected_and_served(srv: Server) -> None:
    assert "as a WSGI app, 1 thread(s) per worker" in srv.log()
    response = httpx.get(srv.url + "/json", timeout=WAIT)
    assert response.status_code == 200 and response.json() == {"hello": "world"}
    assert httpx.head(srv.url + "/json", timeout=WAIT).content == b""
    assert httpx.get(srv.url + "/missing", timeout=WAIT).status_code == 404


def test_views_see_the_request_as_under_a_wsgi_server(srv: Server) -> None:
    with socket.create_connection((srv.host, srv.port), timeout=WAIT) as sock:
        sock.sendall(b"GET /meta?a=1&b=%20 HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n"
                     b"Cookie: b=2\r\nX-Forwarded-For: 1.2.3.4\r\nX_Forwarded_For: 6.6.6.6\r\n"
                     b"Connection: close\r\n\r\n")
        [response] = parse_responses(read_until_closed(sock, WAIT))
    seen = json.loads(response.body)
    assert seen["query"] == {"a": "1", "b": " "} and seen["cookies"] == {"a": "1", "b": "2"}
    # The underscore twin is dropped: it cannot pass for the proxy's header.
    assert seen["headers"]["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
    assert seen["script"] == "/site" and seen["path_info"] == "/meta"
    # The peer is a trusted proxy (--forwarded-allow-ips' default): its header names the client.
    assert seen["remote"] == "1.2.3.4"


def test_request_bodies_reach_the_view(srv: Server) -> None:
    form = httpx.post(srv.url + "/echo", data={"x": "1", "y": "2"}, timeout=WAIT).json()
    assert form == {"size": 7, "form": {"x": "1", "y": "2"},
                    "type": "application/x-www-form-urlencoded"}
    big = b"b" * (2 * 1024 * 1024)  # spooled on the way (Django itself refuses > 2.5 MB)
    sized = httpx.post(srv.url + "/echo", content=big, timeout=WAIT,
                       headers={"Content-Type": "application/octet-stream"}).json()
    assert sized["size"] == len(big)


def test_a_streaming_response_streams_and_is_closed(srv: Server) -> None:
    since = srv.log_size()
    response = httpx.get(srv.url + "/stream?n=3", timeout=WAIT)
    assert response.text == "part 0\npart 1\npart 2\n"
    assert response.headers["transfer-encoding"] == "chunked"
    srv.wait_for_log("APP: stream closed after asking 3", timeout=WAIT, since=since)


def test_a_view_error_is_a_500_with_its_traceback(srv: Server) -> None:
    since = srv.log_size()
    assert httpx.get(srv.url + "/boom", timeout=WAIT).status_code == 500
    log = srv.wait_for_log("ZeroDivisionError: a view error", timeout=WAIT, since=since)
    assert "Traceback" in log
    assert httpx.get(srv.url + "/json", timeout=WAIT).status_code == 200  # serving on


def test_a_client_leaving_a_stream_ends_it(srv: Server) -> None:
    since = srv.log_size()
    with socket.create_connection((srv.host, srv.port), timeout=WAIT) as sock:
        sock.sendall(b"GET /stream?n=100000 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"part 3\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    log = srv.wait_for_log("APP: stream closed after asking 100000", timeout=WAIT,
                           since=since)
    assert '"GET /stream?n=100000 HTTP/1.1" 200 (client disconnected)' in log
    assert " ERROR " not in log


def test_a_file_response_arrives_whole(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    payload = bytes(range(256)) * 4096  # 1 MiB, several wsgi.file_wrapper blocks
    path.write_bytes(payload)
    with run_server(APP, *APP_DIR, "--workers", "1",
                    env={"OCTO_TEST_FILE": str(path)}) as server:
        response = httpx.get(server.url + "/file", timeout=WAIT)
    assert response.status_code == 200 and response.content == payload


def test_threads_run_views_side_by_side(tmp_path: Path) -> None:
    """--threads 2: a second request is served while a first one's view is held."""
    release = tmp_path / "release"
    with run_server(APP, *APP_DIR, "--workers", "1", "--threads", "2",
                    env={"OCTO_TEST_RELEASE": str(release)}) as server:
        assert "2 thread(s) per worker" in server.log()
        held: list[int] = []
        first = threading.Thread(target=lambda: held.append(
            httpx.get(server.url + "/hold", timeout=WAIT).status_code))
        first.start()
        server.wait_for_log("APP: holding", timeout=WAIT)
        # Served while the first view still holds its thread.
        assert httpx.get(server.url + "/json", timeout=WAIT).status_code == 200
        assert held == []
        release.touch()
        first.join(WAIT)
        assert held == [200]


def test_interface_wsgi_on_an_asgi_app_is_a_one_line_error() -> None:
    # A fork loop would never end: the subprocess timeout ends the test then.
    proc = subprocess.run([sys.executable, "-m", "octo", "serve", "apps.serving:app",
                           *APP_DIR, "--interface", "wsgi", "--port", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "--interface wsgi: apps.serving:app is not a WSGI app" in proc.stderr
    assert "Traceback" not in proc.stderr
