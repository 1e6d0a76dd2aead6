"""The access line of a WebSocket handshake in memory: every format, request data escaped."""

from __future__ import annotations

import json
import logging

import pytest

from octo.http.access import AccessLog
from octo.logs import access_log
from octo.ws.access import log_handshake

SCOPE = {"type": "websocket", "http_version": "1.1", "client": ("10.0.0.7", 4321),
         "raw_path": b"/chat\nFAKE 200", "path": "/chat\nFAKE 200", "query_string": b"a=1",
         "headers": [(b"user-agent", b"probe/1")], "state": {"request_id": "rid-9"}}


def test_default_json_and_format_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=access_log.name)
    lines = caplog.records
    log_handshake(AccessLog(structured=False), SCOPE, 101, 0.0)
    default = lines[-1].getMessage()
    assert default.endswith('"GET /chat\\x0aFAKE 200?a=1 HTTP/1.1" 101 (websocket)')
    assert "\n" not in default
    log_handshake(AccessLog(as_json=True), SCOPE, 403, 0.0)
    record = json.loads(lines[-1].getMessage())
    assert record["websocket"] is True and record["status"] == 403
    assert record["request_id"] == "rid-9" and record["user_agent"] == "probe/1"
    assert lines[-1].__dict__["status"] == 403  # the fields as extra, for --log-config
    log_handshake(AccessLog("%(h)s %(r)s %(s)s %({x-up}o)s %(b)s"), SCOPE, 101, 0.0,
                  [(b"x-up", b"yes")])
    assert lines[-1].getMessage() == "10.0.0.7 GET /chat\\x0aFAKE 200?a=1 HTTP/1.1 101 yes -"
