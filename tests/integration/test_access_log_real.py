"""Access-log formats, structured records and request ids through a real ``octo serve``."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx
from server import ROOT, Server, run_server

APP = "apps.serving:app"
APP_DIR = ("--app-dir", str(ROOT / "tests"))
GENERATED = re.compile(r"^[0-9a-f]{12}-[0-9a-f]+$")


def raw(server: Server, request: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def json_records(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def _wait_records(server: Server, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while len(records := json_records(server.log())) < count:
        assert time.monotonic() < deadline, f"{count} JSON records not in:\n{server.log()}"
        time.sleep(0.02)
    return records


def test_json_access_log_with_incoming_and_generated_request_ids(tmp_path: Path) -> None:
    config = tmp_path / "log.json"
    # A bare message formatter: the JSON object is the whole line.
    config.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"bare": {"format": "%(message)s"}},
        "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "bare"}},
        "loggers": {"octo": {"handlers": ["err"], "propagate": False}},
    }))
    with run_server(APP, *APP_DIR, "--access-log-json", "--log-config", str(config),
                    "--echo-request-id") as server:
        given = httpx.get(server.url + "/state?x=1", timeout=10,
                          headers={"X-Request-ID": "abc-123", "User-Agent": "tester/1"})
        assert given.headers["x-request-id"] == "abc-123"
        assert "('request_id', 'abc-123')" in given.text  # scope["state"]["request_id"]
        made = httpx.get(server.url + "/state", timeout=10)
        made_id = made.headers["x-request-id"]
        assert GENERATED.match(made_id) and f"('request_id', '{made_id}')" in made.text
        # Forged ids are not taken: too long, spaces/quotes, a fake log line.
        for forged in ("x" * 129, 'a" b', "id%0d%0afake 200", "\u00e9t\u00e9"):
            reply = httpx.get(server.url + "/", timeout=10,
                              headers={"X-Request-ID": forged.encode("utf-8")})
            assert GENERATED.match(reply.headers["x-request-id"]), forged
        # A raw CR/LF inside the header never gets that far: the request is refused.
        answer = raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\rfake\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400")
        records = _wait_records(server, 7)  # the readiness probe's GET / too
        log = server.log()
    first = next(r for r in records if r["query"] == "x=1")
    assert first["method"] == "GET" and first["path"] == "/state" and first["query"] == "x=1"
    assert first["status"] == 200 and first["request_id"] == "abc-123"
    assert first["user_agent"] == "tester/1" and first["client"].startswith("127.0.0.1:")
    assert isinstance(first["bytes"], int) and first["bytes"] == len(given.content)
    assert isinstance(first["duration"], float) and first["duration"] >= 0
    assert isinstance(first["pid"], int) and first["pid"] != server.pid  # a worker's
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", str(first["time"]))
    assert [r["request_id"] for r in records if r["path"] == "/state"] == ["abc-123", made_id]
    assert not any(line.startswith("fake") for line in log.splitlines())


def test_gunicorn_atoms(tmp_path: Path) -> None:
    atoms = ('%(h)s|%(l)s|%(u)s|%(t)s|%(r)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|'
             '%(f)s|%(a)s|%(T)s|%(D)s|%(M)s|%(L)s|%(p)s|%({x-request-id}i)s|'
             '%({content-type}o)s|%({x-missing}i)s|%({OCTO_TEST_ENV}e)s')
    with run_server(APP, *APP_DIR, "--access-log-format", atoms,
                    env={"OCTO_TEST_ENV": "from-env"}) as server:
        httpx.get(server.url + "/atoms?q=1", timeout=10, auth=("alice", "pw"),
                  headers={"Referer": b"http://ref/\x9b31m", "User-Agent": "ua/2",
                           "X-Request-ID": "rid-7"})
        log = server.wait_for_log("|rid-7|")
    line = next(line for line in log.splitlines() if "|rid-7|" in line)
    fields = line.split("|")
    fields[0] = fields[0].rsplit(" ", 1)[-1]  # after the logging prefix
    (h, l_, u, t, r, m, path, q, proto, s, big_b, b, f, a, sec, micro, milli, dec, p, rid,
     ctype, missing, env) = fields
    assert h == "127.0.0.1" and l_ == "-" and u == "alice"
    assert re.match(r"^\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]$", t)
    assert r == "GET /atoms?q=1 HTTP/1.1" and m == "GET" and path == "/atoms" and q == "q=1"
    assert proto == "HTTP/1.1" and s == "200" and big_b == b == "5"
    assert f == "http://ref/\\x9b31m" and a == "ua/2"  # request data escaped
    assert int(sec) >= 0 and int(micro) >= int(milli) >= 0 and float(dec) >= 0
    assert p.startswith("<") and int(p[1:-1]) != server.pid
    assert rid == "rid-7" and ctype == "text/plain" and missing == "-" and env == "from-env"


def test_default_line_unchanged_and_generated_id_in_the_atom() -> None:
    with run_server(APP, *APP_DIR) as server:
        httpx.get(server.url + "/plain?a=b", timeout=10)
        log = server.wait_for_log('"GET /plain?a=b HTTP/1.1" 200')
    assert re.search(r'\] INFO 127\.0\.0\.1:\d+ - "GET /plain\?a=b HTTP/1\.1" 200$', log,
                     re.MULTILINE), log
    with run_server(APP, *APP_DIR, "--access-log-format",
                    "%(r)s id=%({x-request-id}i)s") as server:
        httpx.get(server.url + "/gen", timeout=10)
        log = server.wait_for_log("GET /gen HTTP/1.1 id=")
    assert re.search(r"GET /gen HTTP/1\.1 id=[0-9a-f]{12}-[0-9a-f]+$", log, re.MULTILINE), log


def test_log_config_formatter_from_the_app_dir_gets_the_fields(tmp_path: Path) -> None:
    (tmp_path / "mylogging.py").write_text(
        "import json, logging\n"
        "class Fields(logging.Formatter):\n"
        "    def format(self, record):\n"
        "        if record.name != 'octo.access':\n"
        "            return record.getMessage()\n"
        "        keys = ('method', 'path', 'status', 'bytes', 'request_id', 'user_agent')\n"
        "        return 'FIELDS ' + json.dumps({k: getattr(record, k) for k in keys})\n")
    (tmp_path / "app.py").write_text("from apps.serving import app\n")
    config = tmp_path / "log.json"
    config.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"fields": {"()": "mylogging.Fields"}},
        "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "fields"}},
        "loggers": {"octo": {"handlers": ["err"], "propagate": False}},
    }))
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"),
                                          os.environ.get("PYTHONPATH", "")])}
    with run_server("app:app", "--app-dir", str(tmp_path), "--log-config", str(config),
                    env=env) as server:
        httpx.get(server.url + "/fmt", timeout=10, headers={"X-Request-ID": "r-1",
                                                            "User-Agent": b"a\x9bb"})
        log = server.wait_for_log('"path": "/fmt"')
    record = json.loads(next(line for line in log.splitlines()
                             if line.startswith("FIELDS ") and "/fmt" in line)[7:])
    assert record == {"method": "GET", "path": "/fmt", "status": 200, "bytes": 5,
                      "request_id": "r-1", "user_agent": "a\\x9bb"}


def test_bad_format_stops_the_start_with_one_line() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "octo", "serve", APP, *APP_DIR, "--access-log-format",
         "%(h)s %(Z)s"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and "unknown atom %(Z)s" in result.stderr


def test_no_request_id() -> None:
    with run_server(APP, *APP_DIR, "--no-request-id", "--echo-request-id") as server:
        reply = httpx.get(server.url + "/state", timeout=10, headers={"X-Request-ID": "a"})
    assert "request_id" not in reply.text and "x-request-id" not in reply.headers


WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def logged_json(log: str) -> list[dict[str, Any]]:
    """The JSON objects of access lines on the default handler (after its prefix)."""
    return [json.loads(line[line.index(" INFO {") + 6:]) for line in log.splitlines()
            if " INFO {" in line]


def _handshake(server: Server, path: bytes, extra: bytes = b"") -> bytes:
    """A WebSocket upgrade of *path*; what came back until the head (101) or the close."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: " + WS_KEY + b"\r\nUser-Agent: ws-tester/2\r\n"
                     + extra + b"\r\n")
        out = b""
        while b"\r\n\r\n" not in out and (chunk := sock.recv(65536)):
            out += chunk
        return out


def test_websocket_handshakes_get_json_access_records_like_http(tmp_path: Path) -> None:
    with run_server("apps.ws_apps:app", *APP_DIR, "--access-log-json") as server:
        assert _handshake(server, b"/echo?room=1", b"X-Request-ID: ws-id-1\r\n").startswith(
            b"HTTP/1.1 101")
        assert _handshake(server, b"/custom-deny").startswith(b"HTTP/1.1 401")
        assert _handshake(server, b"/deny").startswith(b"HTTP/1.1 403")
        deadline = time.monotonic() + 30
        while True:  # the three lines are written as each handshake is answered
            by_path = {r["path"]: r for r in logged_json(server.log()) if r.get("websocket")}
            if len(by_path) == 3:
                break
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.02)
    accepted, custom, denied = by_path["/echo"], by_path["/custom-deny"], by_path["/deny"]
    assert accepted["status"] == 101 and accepted["method"] == "GET"
    assert accepted["query"] == "room=1" and accepted["target"] == "/echo?room=1"
    assert accepted["request_id"] == "ws-id-1" and accepted["user_agent"] == "ws-tester/2"
    assert accepted["pid"] != server.pid and accepted["duration"] >= 0
    assert re.match(r"^127\.0\.0\.1:\d+$", accepted["client"])
    assert custom["status"] == 401 and denied["status"] == 403
    assert GENERATED.match(custom["request_id"])


def test_websocket_handshakes_in_an_access_log_format(tmp_path: Path) -> None:
    log_format = "WS %(h)s %(r)s %(s)s %({x-hello}o)s %({x-request-id}i)s %(a)s"
    with run_server("apps.ws_apps:app", *APP_DIR, "--access-log-format", log_format) as server:
        assert _handshake(server, b"/echo", b"X-Request-ID: fmt-7\r\n").startswith(
            b"HTTP/1.1 101")
        assert _handshake(server, b"/deny").startswith(b"HTTP/1.1 403")
        log = server.wait_for_log("WS 127.0.0.1 GET /deny HTTP/1.1 403", timeout=30)
    assert "WS 127.0.0.1 GET /echo HTTP/1.1 101 world fmt-7 ws-tester/2" in log
    assert "(websocket)" not in log  # the format is the whole line, as for HTTP


def test_websocket_handshakes_keep_the_default_line() -> None:
    with run_server("apps.ws_apps:app", *APP_DIR) as server:
        assert _handshake(server, b"/echo").startswith(b"HTTP/1.1 101")
        log = server.wait_for_log('"GET /echo HTTP/1.1" 101 (websocket)', timeout=30)
    assert re.search(r'127\.0\.0\.1:\d+ - "GET /echo HTTP/1\.1" 101 \(websocket\)', log)
