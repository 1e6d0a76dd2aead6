"""--static over real sockets against a real ``octo serve``: sendfile, traversal attempts
sent byte for byte (an HTTP client library would normalise them), a client that stops
reading a huge file, files that shrink or vanish while they are sent."""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server import ROOT, Server, run_server

APP = "apps.serving:app"
APP_DIR = ("--app-dir", str(ROOT / "tests"))
DEADLINE = 30.0  # only ends a hung test
SECRET = b"outside-the-root-secret"
BIG = 3 * 1024 * 1024 + 17


def connect(server: Server, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=timeout)


def raw_get(server: Server, target: bytes, *headers: bytes) -> tuple[bytes, bytes]:
    """(head, body) of one request sent exactly as given, on a closing connection."""
    with connect(server) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     + b"".join(h + b"\r\n" for h in headers) + b"\r\n")
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    return head, body


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("static")
    root = base / "public"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(BIG))
    (root / "site.css").write_bytes(b"body { color: red }\n")
    (root / "sub").mkdir()
    (root / "sub" / "inner.txt").write_bytes(b"inner")
    (root / "page.html").write_bytes(b"<p>page</p>")
    (root / "page.html.gz").write_bytes(gzip.compress(b"<p>page, from the .gz</p>"))
    (root / "leak.txt").symlink_to(base / "secret.txt")
    (base / "secret.txt").write_bytes(SECRET)
    (base / "current").symlink_to(root)  # a symlinked root
    return root


@pytest.fixture(scope="module")
def srv(site: Path) -> Iterator[Server]:
    with run_server(APP, *APP_DIR, "--static", f"/static={site}",
                    "--static", f"/linked={site.parent / 'current'}") as server:
        yield server


def test_files_come_from_the_worker_not_the_app(srv: Server, site: Path) -> None:
    data = (site / "big.bin").read_bytes()
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        for _ in range(2):  # twice on one connection: framing intact after sendfile
            response = client.get("/static/big.bin")
            assert response.status_code == 200 and response.content == data
        assert response.headers["content-type"] == "application/octet-stream"
        assert client.get("/static/site.css").headers["content-type"] == "text/css; charset=utf-8"
        assert client.get("/static/missing.css").status_code == 404  # not the app's "hello"
        assert client.get("/linked/site.css").text == "body { color: red }\n"
        assert client.get("/static/sub/inner.txt").text == "inner"  # (the %2f twin is 404)
        assert client.get("/other").text == "hello"
        etag = response.headers["etag"]
        again = client.get("/static/big.bin", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        since = client.get("/static/big.bin",
                           headers={"If-Modified-Since": response.headers["last-modified"]})
        assert since.status_code == 304
        # A large range goes out with sendfile from an offset.
        part = client.get("/static/big.bin", headers={"Range": "bytes=100000-2999999"})
        assert part.status_code == 206 and part.content == data[100000:3000000]
        assert part.headers["content-range"] == f"bytes 100000-2999999/{BIG}"
        tail = client.get("/static/big.bin", headers={"Range": f"bytes={BIG - 5}-"})
        assert tail.content == data[-5:]
        assert client.get("/static/big.bin",
                          headers={"Range": f"bytes={BIG}-"}).status_code == 416
        head = client.head("/static/big.bin")
        assert head.headers["content-length"] == str(BIG) and head.content == b""
        gz = client.get("/static/page.html", headers={"Accept-Encoding": "gzip"})
        assert gz.headers["content-encoding"] == "gzip" and gz.headers["vary"] == "Accept-Encoding"
        assert gz.text == "<p>page, from the .gz</p>"  # the sibling, decoded by the client
    srv.wait_for_log('"GET /static/big.bin HTTP/1.1" 200')


@pytest.mark.parametrize("target", [
    b"/static/../secret.txt", b"/static/%2e%2e/secret.txt", b"/static/%2E%2E/secret.txt",
    b"/static/..%2fsecret.txt", b"/static/..%2Fsecret.txt", b"/static/%2e%2e%2fsecret.txt",
    b"/static/..%5csecret.txt", b"/static/site.css%00.png", b"/static/leak.txt",
    b"/static//etc/passwd", b"/static/%2f%2fetc/passwd", b"/linked/../secret.txt",
    b"/static/./../secret.txt", b"/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/static/sub%2finner.txt", b"/static/sub%5Cinner.txt", b"/static/%2fsub/inner.txt",
])
def test_traversal_attempts_are_404(srv: Server, target: bytes) -> None:
    head, body = raw_get(srv, target)
    assert head.startswith(b"HTTP/1.1 404"), head
    assert SECRET not in body and b"root:" not in body
    assert srv.alive()


def test_a_client_that_stops_reading_a_huge_file_is_cut_by_send_timeout(
        tmp_path: Path) -> None:
    root = tmp_path / "public"
    root.mkdir()
    with (root / "huge.bin").open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse, far more than the socket buffers hold
    (root / "small.txt").write_bytes(b"small")
    with run_server(APP, *APP_DIR, "--static", f"/static={root}", "--send-timeout", "1",
                    "--log-level", "debug") as server:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
        stalled.settimeout(10)
        stalled.connect((server.host, server.port))
        stalled.sendall(b"GET /static/huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert stalled.recv(1024).startswith(b"HTTP/1.1 200")
        # The worker is not stuck behind the stalled download.
        assert httpx.get(server.url + "/static/small.txt", timeout=10).text == "small"
        server.wait_for_log("took no response bytes for 1.0s (--send-timeout)",
                            timeout=DEADLINE)
        stalled.settimeout(DEADLINE)
        with pytest.raises(OSError):  # aborted: a reset, or the end after what was queued
            while stalled.recv(1 << 20):
                pass
            raise ConnectionResetError("closed")
        stalled.close()
        assert httpx.get(server.url + "/static/small.txt", timeout=10).text == "small"


def _start_big_download(server: Server, path: bytes) -> tuple[socket.socket, int, bytes]:
    """Ask for *path*, read the head; return the socket, Content-Length and body so far."""
    sock = connect(server, timeout=DEADLINE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    out = b""
    while b"\r\n\r\n" not in out:
        out += sock.recv(65536)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    return sock, length, body


def _read_to_end(sock: socket.socket, body: bytes) -> bytes:
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            return body
        if not chunk:
            return body
        body += chunk


def test_a_file_truncated_while_sent_closes_the_connection(tmp_path: Path) -> None:
    root = tmp_path / "public"
    root.mkdir()
    size = 256 * 1024 * 1024
    with (root / "shrinks.bin").open("wb") as fh:
        fh.truncate(size)
    with run_server(APP, *APP_DIR, "--static", f"/static={root}") as server:
        sock, length, body = _start_big_download(server, b"/static/shrinks.bin")
        assert length == size
        os.truncate(root / "shrinks.bin", 1024 * 1024)  # while the client has read little
        body = _read_to_end(sock, body)
        sock.close()
        assert len(body) < size  # the connection ended: it could not keep its promise
        server.wait_for_log("file shrank while being sent", timeout=DEADLINE)
        assert httpx.get(server.url + "/", timeout=10).text == "hello"  # the worker lives


def test_a_file_deleted_or_replaced_while_sent_is_sent_whole(tmp_path: Path) -> None:
    root = tmp_path / "public"
    root.mkdir()
    data = os.urandom(24 * 1024 * 1024)
    (root / "gone.bin").write_bytes(data)
    with run_server(APP, *APP_DIR, "--static", f"/static={root}") as server:
        sock, length, body = _start_big_download(server, b"/static/gone.bin")
        (root / "gone.bin").unlink()  # the open file lives on until it is sent
        body = _read_to_end(sock, body)
        sock.close()
        assert length == len(data) and body == data
        assert httpx.get(server.url + "/static/gone.bin", timeout=10).status_code == 404


def test_static_through_the_master_with_two_workers(tmp_path: Path) -> None:
    root = tmp_path / "public"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a")
    with run_server(APP, *APP_DIR, "--workers", "2", "--static", f"/static={root}") as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert all(client.get("/static/a.txt").text == "a" for _ in range(20))


def test_a_bad_mount_stops_the_start_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "octo", "serve", APP, *APP_DIR, "--static",
         f"/static={tmp_path / 'nope'}"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0
    assert "--static" in result.stderr and "is not a directory" in result.stderr
