"""HTTP/1.1 behaviour over real sockets against a real ``octo serve`` process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from harness import parse_responses
from server import ROOT, read_until_closed, run_server

APP = "apps.serving:app"
APP_DIR = ("--app-dir", str(ROOT / "tests"))


DEADLINE = 30.0  # only ends a hung test


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    return sock



def read_responses(sock: socket.socket, count: int, limit: float = 10.0) -> bytes:
    sock.settimeout(limit)
    out = b""
    while len(parse_responses(out)) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed early after {out!r}"
        out += chunk
    return out


@pytest.fixture(scope="module")
def srv():
    with run_server(APP, *APP_DIR, "--header-timeout", "1", "--limit-request-body", "100000",
                    "--limit-request-fields", "20", "--timeout-keep-alive", "2") as server:
        yield server


def test_keep_alive_and_pipelining_on_one_socket(srv) -> None:
    with connect(srv.url) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        first = read_responses(sock, 1)
        sock.sendall(b"GET /slow?0.2 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                     b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest = read_until_closed(sock)
    assert parse_responses(first)[0].body == b"hello"
    assert [r.body for r in parse_responses(rest)] == [b"slow done", b"abc", b"hello"]


def test_slowloris_is_cut_at_the_header_deadline(srv) -> None:
    # The client trickles one byte every 0.1 s: the head would take 20 s. With --header-timeout
    # 1 (checked twice a second) the server cuts it after about 1.5 s; a deadline restarted
    # per byte would never cut it. The bound only needs to tell those apart.
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 170
    with connect(srv.url) as sock:
        start = time.monotonic()
        sent = 0
        try:
            for byte in head:
                sock.send(bytes([byte]))
                sent += 1
                time.sleep(0.1)  # the slow client itself, not a wait for the server
        except (BrokenPipeError, ConnectionResetError):
            pass
        elapsed = time.monotonic() - start
        rest = b""
        try:
            rest = read_until_closed(sock)
        except (ConnectionResetError, AssertionError):
            pass
    assert sent < len(head), f"the whole slow head was accepted ({elapsed:.1f}s)"
    assert elapsed < 10, f"still sending after {elapsed:.1f}s ({sent} bytes)"
    assert rest.startswith(b"HTTP/1.1 408") or rest == b""
    srv.wait_for_log("header read deadline")


def test_idle_keep_alive_connection_is_closed(srv) -> None:
    with connect(srv.url) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_responses(sock, 1)
        start = time.monotonic()
        # --timeout-keep-alive 2: closed, and not early (a slow machine only closes it later;
        # the exact deadline is a unit test, through HttpProtocol.tick(now)).
        assert _wait_closed(sock, DEADLINE), f"still open after {DEADLINE}s"
        assert sock.recv(10) == b""
        assert time.monotonic() - start > 1.5


def _wait_closed(sock: socket.socket, limit: float) -> bool:
    sock.settimeout(limit)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(30))
     + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
])
def test_limits_and_framing_over_the_wire(srv, request_bytes: bytes, status: int) -> None:
    with connect(srv.url) as sock:
        sock.sendall(request_bytes)
        out = read_until_closed(sock)
    assert parse_responses(out)[0].status == status


def test_chunked_upload_over_limit_gets_413(srv) -> None:
    with connect(srv.url) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):
                sock.sendall(b"2000\r\n" + b"x" * 0x2000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = read_until_closed(sock, reset=True)  # a reset may come once the 413 is out
    assert out == b"" or parse_responses(out)[0].status == 413
    assert "exceeds --limit-request-body" in srv.log()


def test_disconnect_reaches_a_streaming_app(srv) -> None:
    since = srv.log_size()
    with connect(srv.url) as sock:
        sock.sendall(b"GET /stream-until-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    srv.wait_for_log("APP: saw http.disconnect", since=since)


def test_app_crash_is_500_with_traceback(srv) -> None:
    response = httpx.get(srv.url + "/crash", timeout=10)
    assert response.status_code == 500
    log = srv.wait_for_log("deliberate crash for the test")
    assert "Traceback" in log


def test_lifespan_state_reaches_requests(srv) -> None:
    # A copy of the lifespan state, with this request's id (--request-id, on by default).
    text = httpx.get(srv.url + "/state", timeout=10).text
    assert text.startswith("[('booted', True), ('request_id', '") and text.endswith("')]")


def test_pathsend_large_file_zero_copy(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    with run_server(APP, *APP_DIR, env={"OCTO_TEST_FILE": str(path)}) as server:
        with httpx.Client(timeout=10) as client:
            for _ in range(2):  # twice on one connection: framing stays intact after sendfile
                response = client.get(server.url + "/file")
                assert response.content == data
                assert response.headers["content-length"] == str(len(data))


LEFT = "client went away while the app was sending"
APP_ERROR = "Exception in ASGI application"


def test_client_leaving_during_pathsend_is_not_an_app_error(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(32 * 1024 * 1024))  # far more than the socket buffers hold
    with run_server(APP, *APP_DIR, "--log-level", "debug",
                    env={"OCTO_TEST_FILE": str(path)}) as server:
        sock = connect(server.url)
        sock.sendall(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # reset mid-file
        # The app's send fails once the reset arrives: as a client that left (a debug line),
        # or, wrongly, as an app error. Wait for whichever comes.
        deadline = time.monotonic() + DEADLINE
        while not any(line in server.log() for line in (LEFT, APP_ERROR)):
            assert time.monotonic() < deadline, f"the reset was not noticed:\n{server.log()}"
            time.sleep(0.02)
        assert httpx.get(server.url + "/", timeout=10).text == "hello"
        log = server.log()
    assert LEFT in log
    assert APP_ERROR not in log and "Traceback" not in log, log


def wait_for_count(server, text: str, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while server.log().count(text) < count:
        assert time.monotonic() < deadline, f"{count} x {text!r} not logged:\n{server.log()}"
        time.sleep(0.02)


def held_requests(server, release: Path, count: int) -> tuple[list[threading.Thread],
                                                              list[httpx.Response]]:
    """*count* requests held by the app until *release* exists; returns once all are held."""
    results: list[httpx.Response] = []
    before = server.log().count("APP: holding")

    def hold() -> None:
        results.append(httpx.get(f"{server.url}/hold?{release}", timeout=90))

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    wait_for_count(server, "APP: holding", before + count)
    return threads, results


def test_sigterm_lets_in_flight_requests_finish_then_exits_zero(tmp_path: Path) -> None:
    release = tmp_path / "release"
    with run_server(APP, *APP_DIR, "--timeout-keep-alive", "120",
                    expect_clean_exit=False) as server:
        threads, results = held_requests(server, release, 3)
        with connect(server.url) as idle:  # an idle keep-alive connection: a drain closes it
            idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            read_responses(idle, 1)
            try:
                server.process.send_signal(signal.SIGTERM)
                # The worker drains: it closes idle connections, the held ones carry on.
                assert _wait_closed(idle, DEADLINE), "SIGTERM did not start a drain"
            finally:
                release.touch()
                for thread in threads:
                    thread.join(60)
        assert server.process.wait(30) == 0
        assert "APP: lifespan shutdown" in server.log()
    assert [r.status_code for r in results] == [200, 200, 200]
    assert all(r.text == "held" for r in results)
    # Still in flight when the drain began: each was told the connection closes after it.
    assert all(r.headers["connection"] == "close" for r in results)


def test_limit_concurrency_503(tmp_path: Path) -> None:
    release = tmp_path / "release"
    with run_server(APP, *APP_DIR, "--limit-concurrency", "2") as server:
        threads, results = held_requests(server, release, 2)
        try:
            assert httpx.get(server.url + "/", timeout=10).status_code == 503
        finally:
            release.touch()
            for thread in threads:
                thread.join(60)
        assert [r.status_code for r in results] == [200, 200]
        assert "--limit-concurrency 2 reached" in server.log()


def test_proxy_headers_trusted_from_loopback() -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    with run_server(APP, *APP_DIR) as server:
        assert httpx.get(server.url + "/scope", headers=headers, timeout=10).text == \
            "https 203.0.113.7"
    with run_server(APP, *APP_DIR, "--no-proxy-headers") as server:
        assert httpx.get(server.url + "/scope", headers=headers, timeout=10).text == \
            "http 127.0.0.1"


def test_unix_domain_socket(tmp_path: Path) -> None:
    path = tmp_path / "octo.sock"
    argv = [os.sys.executable, "-m", "octo", "serve", APP, *APP_DIR, "--uds", str(path)]
    process = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + DEADLINE
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, timeout=10) as client:
            assert client.get("http://octo/").text == "hello"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert not path.exists()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_https(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    with run_server(APP, *APP_DIR, "--ssl-keyfile", str(key), "--ssl-certfile", str(cert),
                    ready=lambda s: _https_ready(s.url, cert)) as server:
        url = server.url.replace("http://", "https://")
        with httpx.Client(verify=ssl.create_default_context(cafile=cert), timeout=10) as client:
            assert client.get(url + "/scope").text.startswith("https ")
            assert client.post(url + "/echo", content=b"z" * 200_000).content == b"z" * 200_000


def _https_ready(url: str, cert: Path) -> bool:
    try:
        httpx.get(url.replace("http://", "https://"),
                  verify=ssl.create_default_context(cafile=cert), timeout=0.5)
    except httpx.HTTPError:
        return False
    return True


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this kernel")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
        probe.close()
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    argv = [os.sys.executable, "-m", "octo", "serve", APP, *APP_DIR, "--host", "::1",
            "--port", str(port)]
    process = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                assert httpx.get(f"http://[::1]:{port}/", timeout=2).text == "hello"
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not answer on ::1"
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0



def test_factory_and_access_log_escaping() -> None:
    with run_server("apps.serving:create_app", *APP_DIR, "--factory") as server:
        headers = {"X-Forwarded-For": b"\x9b31mfake"}
        assert httpx.get(server.url + "/scope?q=1", headers=headers, timeout=10).status_code == 200
        log = server.wait_for_log('"GET /scope?q=1 HTTP/1.1" 200')
        assert "\\x9b31mfake" in log and "\x9b" not in log


def test_no_access_log() -> None:
    with run_server(APP, *APP_DIR, "--no-access-log") as server:
        httpx.get(server.url + "/quiet", timeout=10)
        httpx.get(server.url + "/crash", timeout=10)
        # Logged after /quiet was answered: an access line for it would be there by now.
        server.wait_for_log("deliberate crash for the test")
        assert "/quiet" not in server.log() and '"GET /crash' not in server.log()


def test_worker_freezes_its_boot_objects_out_of_the_collector() -> None:
    with run_server(APP, *APP_DIR, "--no-access-log") as srv:
        frozen = int(httpx.get(srv.url + "/gc-frozen", timeout=10).text)
    assert frozen > 1000  # modules, the app, lifespan state: all moved to the permanent set
