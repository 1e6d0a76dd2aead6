"""The access record: default line, gunicorn atoms, JSON, structured fields; request ids."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from harness import Client, parse_responses

from octo.config import Config, ConfigError
from octo.http.access import AccessFormatError, basic_auth_user, compile_format, json_line
from octo.http.request_id import MAX_LENGTH, RequestIds

# The in-memory tests run on both HTTP cores (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("http_core")


async def app(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] == "/own-id":
        headers.append((b"X-Request-ID", b"from-the-app"))
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


def serve(run: Any, request: bytes, **config: Any) -> tuple[bytes, Client]:
    async def main() -> tuple[bytes, Client]:
        client = Client(app, Config(app="x:y", **config))
        client.send(request)
        await client.settle()
        return client.take(), client

    result: tuple[bytes, Client] = run(main())
    return result


REQUEST = (b"GET /p%20q?a=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: ua\r\nReferer: r\x9b\r\n"
           b"X-Request-ID: given-1\r\n\r\n")


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "octo.access"]


def test_default_line_is_unchanged_and_the_record_carries_fields(run, caplog) -> None:
    caplog.set_level(logging.INFO, "octo.access")
    serve(run, REQUEST)  # the default handler: the line alone, no fields built
    serve(run, REQUEST, log_config="logging.json")  # a formatter that may read them
    plain, record = access_records(caplog)
    line = '127.0.0.1:50000 - "GET /p%20q?a=1 HTTP/1.1" 201'
    assert plain.getMessage() == record.getMessage() == line
    assert "request_id" not in plain.__dict__
    fields: Any = record.__dict__
    assert fields["method"] == "GET" and fields["path"] == "/p%20q" and fields["query"] == "a=1"
    assert fields["status"] == 201 and fields["bytes"] == 5 and fields["duration"] >= 0
    assert fields["request_id"] == "given-1" and fields["user_agent"] == "ua"
    assert fields["referer"] == "r\\x9b"  # escaped, as in every line
    assert fields["client"] == "127.0.0.1:50000" and isinstance(fields["pid"], int)


def test_json_line_is_one_ascii_line(run, caplog) -> None:
    caplog.set_level(logging.INFO, "octo.access")
    serve(run, REQUEST.replace(b"ua", b"u\xe2\x80\xa8a\xff"), access_log_json=True)
    [record] = access_records(caplog)
    line = record.getMessage()
    assert "\n" not in line and "\u2028" not in line and "\x7f" not in line
    assert line.isascii()
    data = json.loads(line)
    assert data["status"] == 201 and data["request_id"] == "given-1"
    assert {"time", "method", "path", "status", "bytes", "duration", "client", "request_id",
            "pid", "user_agent"} <= set(data)


def test_json_line_escapes_del() -> None:
    assert "\\u007f" in json_line({"x": "\x7f"})


def test_format_atoms_in_memory(run, caplog) -> None:
    caplog.set_level(logging.INFO, "octo.access")
    serve(run, REQUEST, access_log_format='%(h)s "%(r)s" %(s)s %(b)s %({x-request-id}i)s '
                                          '%({content-type}o)s %(f)s')
    [record] = access_records(caplog)
    assert record.getMessage() == '127.0.0.1 "GET /p%20q?a=1 HTTP/1.1" 201 5 given-1 ' \
                                  'text/plain r\\x9b'


def test_format_errors_are_config_errors() -> None:
    with pytest.raises(AccessFormatError, match="unknown atom"):
        compile_format("%(Z)s", None)
    with pytest.raises(AccessFormatError):
        compile_format("%(h)d %", None)
    with pytest.raises(ConfigError, match="--access-log-format"):
        Config(app="x:y", access_log_format="%(nope)s")
    with pytest.raises(ConfigError, match="exclude each other"):
        Config(app="x:y", access_log_format="%(h)s", access_log_json=True)
    with pytest.raises(ConfigError, match="--request-id-header"):
        Config(app="x:y", request_id_header="bad header")
    assert [key for key, _ in compile_format("%(h)s %(h)s %({A}i)s", None)] == ["h", "{A}i"]


def test_basic_auth_user() -> None:
    assert basic_auth_user([(b"authorization", b"Basic YWxpY2U6cHc=")]) == "alice"
    assert basic_auth_user([(b"authorization", b"Bearer x")]) == "-"
    assert basic_auth_user([(b"authorization", b"Basic !!!")]) == "-"
    assert basic_auth_user([]) == "-"
    # A user name with a control character is escaped like any request data.
    assert basic_auth_user([(b"authorization", b"Basic YQ1iOng=")]) == "a\\x0db"


# -- request ids -----------------------------------------------------------------------------

@pytest.mark.parametrize("incoming, kept", [
    (b"abc-123", True), (b"3f2a9c1d-0e4b-4c6f-9a71-2b8f6d4e1c55", True),
    (b"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", True), (b"a" * MAX_LENGTH, True),
    (b"a" * (MAX_LENGTH + 1), False), (b"", False), (b"a b", False), (b'a"b', False),
    (b"a\r\nb", False), (b"a\x00b", False), (b"a,b", False), (b"\xc3\xa9", False),
    (b"a\x1b[31m", False), (None, False),
])
def test_request_id_validation(incoming: bytes | None, kept: bool) -> None:
    ids = RequestIds()
    got = ids.accept(incoming)
    if kept:
        assert incoming is not None and got == incoming.decode()
    else:
        assert got.startswith(ids.prefix) and got != ids.accept(None)


def test_generated_ids_differ_per_worker_and_request() -> None:
    one, two = RequestIds(), RequestIds()
    assert one.prefix != two.prefix
    assert len({one.accept(None) for _ in range(1000)}) == 1000


def test_generated_ids_are_the_prefix_and_the_count_in_decimal() -> None:
    ids = RequestIds()
    assert [ids.new() for _ in range(2500)] == [f"{ids.prefix}{n}" for n in range(1, 2501)]
    ids.issued = 999_997  # across a power of ten, from a count set by hand
    assert [ids.new() for _ in range(4)] == [f"{ids.prefix}{n}"
                                             for n in range(999_998, 1_000_002)]


def test_request_id_in_state_and_echo(run) -> None:
    out, client = serve(run, REQUEST, echo_request_id=True)
    [response] = parse_responses(out)
    assert response.header(b"x-request-id") == b"given-1"
    out, _ = serve(run, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", echo_request_id=True,
                   request_id_header="X-Correlation-ID")
    [response] = parse_responses(out)
    made = response.header(b"x-correlation-id")
    assert made is not None and made.decode().count("-") == 1
    # The app's own header wins: no second one.
    out, _ = serve(run, b"GET /own-id HTTP/1.1\r\nHost: h\r\nX-Request-ID: in\r\n\r\n",
                   echo_request_id=True)
    assert out.lower().count(b"x-request-id:") == 1 and b"from-the-app" in out
    # Off by default.
    out, _ = serve(run, REQUEST)
    assert b"x-request-id" not in out.lower()


def test_request_id_reaches_the_scope(run) -> None:
    seen: list[Any] = []

    async def record(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get("state"))
        await app(scope, receive, send)

    async def main() -> None:
        for config in (Config(app="x:y"), Config(app="x:y", request_id=False)):
            client = Client(record, config)
            client.send(REQUEST)
            await client.settle()

    run(main())
    assert seen == [{"request_id": "given-1"}, None]
