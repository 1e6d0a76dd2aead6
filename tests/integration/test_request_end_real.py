"""Requests that end early, against a real ``octo serve`` over real sockets: the
--max-execution-time deadline (never early, 504 or an abort), and clients leaving a
Starlette stream (closing, half-closing, resetting, or no longer reading)."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time

import pytest
from harness import parse_responses
from server import ROOT, Server, read_until_closed, run_server

pytest.importorskip("starlette")

APP = "apps.ending_app:app"
APP_DIR = ("--app-dir", str(ROOT / "tests"))
LIMIT = 1.0
# Requests are started this far apart, so that together they cover every phase of the
# worker's 0.5 s clock (a deadline taken from that clock fired up to 0.5 s early).
STAGGER = 0.05
SPREAD = 10
WAIT = 60.0  # only ends a hung test


def get(server: Server, target: str) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=WAIT)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return sock



def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before the head: {data!r}"
        data += chunk
    return data


def timed_requests(server: Server, target: str) -> list[tuple[float, bytes]]:
    """SPREAD requests for *target*, started STAGGER apart; per request the seconds from
    before it was sent until the server closed, and what came back."""
    results: list[tuple[float, bytes]] = [(0.0, b"")] * SPREAD

    def one(i: int) -> None:
        start = time.monotonic()
        with get(server, target) as sock:
            out = read_until_closed(sock, WAIT)
        results[i] = (time.monotonic() - start, out)

    threads = []
    for i in range(SPREAD):
        thread = threading.Thread(target=one, args=(i,))
        thread.start()
        threads.append(thread)
        time.sleep(STAGGER)  # a spacing between starts, not a wait for an event
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), "a request hung"
    return results


@pytest.fixture(scope="module")
def limited():
    with run_server(APP, *APP_DIR, "--max-execution-time", str(LIMIT)) as server:
        yield server


def test_a_request_under_the_limit_is_answered_whatever_the_clock_phase(limited) -> None:
    since = limited.log_size()
    results = timed_requests(limited, "/sleep?s=0.9")
    statuses = [[r.status for r in parse_responses(out)] for _, out in results]
    assert statuses == [[200]] * SPREAD, (statuses, limited.log(since))
    assert "--max-execution-time" not in limited.log(since)


def test_a_request_over_the_limit_gets_504_never_before_it(limited) -> None:
    since = limited.log_size()
    results = timed_requests(limited, "/sleep?s=30")
    statuses = [[r.status for r in parse_responses(out)] for _, out in results]
    assert statuses == [[504]] * SPREAD, statuses
    # Measured from before each request was sent: the server's own start was later.
    early = [round(elapsed, 3) for elapsed, _ in results if elapsed < LIMIT]
    assert early == [], f"answered before the {LIMIT}s limit: {early}"
    log = limited.wait_for_log("answering 504", since=since)
    assert log.count("GET /sleep exceeded --max-execution-time 1.0s: cancelled, "
                     "answering 504") >= 1


def test_a_stream_past_the_limit_is_cut_and_logged_as_an_abort(limited) -> None:
    since = limited.log_size()
    start = time.monotonic()
    with get(limited, "/stream-slow") as sock:
        out = read_until_closed(sock, WAIT)
    elapsed = time.monotonic() - start
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"first part" in body
    assert not body.endswith(b"0\r\n\r\n"), "the cut response must not look complete"
    assert elapsed >= LIMIT
    log = limited.wait_for_log("(aborted: --max-execution-time)", since=since)
    assert "GET /stream-slow exceeded --max-execution-time 1.0s after its response " \
           "started: connection aborted" in log
    assert "answering 504" not in log
    assert "ERROR" not in log and "Traceback" not in log


# -- a client leaving a stream -----------------------------------------------------------------

@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory):
    big = tmp_path_factory.mktemp("file") / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(256 * 1024 * 1024)  # sparse: far more than the socket buffers hold
    with run_server(APP, *APP_DIR, "--send-timeout", "2",
                    env={"OCTO_TEST_FILE": str(big)}) as server:
        yield server


def _close(sock: socket.socket) -> None:
    sock.close()


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST, not FIN


def _half_close_then_close(sock: socket.socket) -> None:
    sock.shutdown(socket.SHUT_WR)
    seen = b""
    while seen.count(b"data: ") < 20:  # a half-close alone is no departure: it streams on
        chunk = sock.recv(4096)
        assert chunk, "the server stopped streaming on a half-close"
        seen += chunk
    sock.close()


@pytest.mark.parametrize("leave", [_close, _reset, _half_close_then_close],
                         ids=["close", "reset", "half-close"])
def test_a_client_leaving_an_event_stream_is_one_access_line_and_no_error(streams,
                                                                         leave) -> None:
    since = streams.log_size()
    sock = get(streams, "/events")
    port = sock.getsockname()[1]
    assert read_head(sock).startswith(b"HTTP/1.1 200 OK")
    leave(sock)
    line = f'127.0.0.1:{port} - "GET /events HTTP/1.1" 200 (client disconnected)'
    log = streams.wait_for_log(line, timeout=WAIT, since=since)
    assert len(re.findall(rf"127\.0\.0\.1:{port} - ", log)) == 1, log
    assert "ERROR" not in log and "Traceback" not in log, log
    # The worker carries on.
    with get(streams, "/sleep?s=0") as fresh:
        assert read_until_closed(fresh, WAIT).endswith(b"slept")


def test_a_client_that_stops_reading_a_stream_is_aborted_with_one_access_line(streams) -> None:
    since = streams.log_size()
    sock = get(streams, "/big")
    port = sock.getsockname()[1]
    try:
        assert read_head(sock).startswith(b"HTTP/1.1 200 OK")
        # ... and reads nothing more: --send-timeout (2 s here) aborts the connection.
        line = f'127.0.0.1:{port} - "GET /big HTTP/1.1" 200 (aborted: --send-timeout)'
        log = streams.wait_for_log(line, timeout=WAIT, since=since)
    finally:
        sock.close()
    assert len(re.findall(rf"127\.0\.0\.1:{port} - ", log)) == 1, log
    assert "took no response bytes for 2.0s (--send-timeout)" in log
    assert "ERROR" not in log and "Traceback" not in log, log


def test_a_client_resetting_a_file_download_is_one_access_line_and_no_error(streams) -> None:
    """The reset may reach the server as a failed sendfile() before the transport reports
    the connection lost: the access line still says the client left."""
    since = streams.log_size()
    sock = get(streams, "/file")
    port = sock.getsockname()[1]
    assert read_head(sock).startswith(b"HTTP/1.1 200 OK")
    sock.recv(65536)  # some of the file, then a reset
    _reset(sock)
    line = f'127.0.0.1:{port} - "GET /file HTTP/1.1" 200 (client disconnected)'
    log = streams.wait_for_log(line, timeout=WAIT, since=since)
    assert len(re.findall(rf"127\.0\.0\.1:{port} - ", log)) == 1, log
    assert "ERROR" not in log and "Traceback" not in log, log


# -- an error tracker's view of clients leaving --------------------------------------------------

def test_clients_leaving_a_stream_are_no_error_tracker_events(tmp_path) -> None:
    """Sentry's ASGI middleware records what escapes the app. Under ASGI spec 2.4 (declared
    before) each early close was one ClientDisconnect event from Starlette; under 2.3 a
    leaving client is an access line and nothing else, while a real error is still one."""
    pytest.importorskip("sentry_sdk")
    events = tmp_path / "events.jsonl"
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse; far more than the socket buffers hold
    with run_server("apps.error_tracker_app:app", *APP_DIR, "--workers", "1",
                    env={"OCTO_TEST_EVENTS": str(events), "OCTO_TEST_FILE": str(big)}
                    ) as server:
        since = server.log_size()
        for target, first in [("/stream", b"first")] * 3 + [("/file", b"\r\n\r\n")] * 3:
            with get(server, target) as sock:
                data = b""
                while first not in data:
                    chunk = sock.recv(4096)
                    assert chunk, data
                    data += chunk
                # Unread bytes make the close a reset: the server's next write fails.
        for target in ("/stream", "/file"):
            line = f'"GET {target} HTTP/1.1" 200 (client disconnected)'
            deadline = time.monotonic() + WAIT
            while server.log(since).count(line) < 3:  # the worker saw each one go
                assert time.monotonic() < deadline, server.log(since)
                time.sleep(0.05)  # polling the server's log
        assert " ERROR " not in server.log(since) and "Traceback" not in server.log(since)
        with get(server, "/boom") as sock:
            assert parse_responses(read_until_closed(sock, WAIT))[0].status == 500
        deadline = time.monotonic() + WAIT
        while not (events.exists() and "ZeroDivisionError" in events.read_text()):
            assert time.monotonic() < deadline, "the tracker recorded nothing"
            time.sleep(0.05)  # polling a file another process writes
        # The tracker records in order: the error is there, so any earlier event is too.
        assert events.read_text().splitlines() == ['{"type": "ZeroDivisionError"}']
