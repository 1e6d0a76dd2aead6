from __future__ import annotations

import pytest

from octo.http.validate import (
    RequestError,
    check_request_line,
    check_target,
    check_trailer,
    check_version,
    inspect_headers,
)
from octo.logs import escape, format_access


@pytest.mark.parametrize("line", [b"GET / HTTP/1.1\r\n", b"OPTIONS * HTTP/1.0\r\n",
                                  b"M-SEARCH /x?y HTTP/1.1\r\n"])
def test_good_request_lines(line: bytes) -> None:
    check_request_line(line)


@pytest.mark.parametrize("line", [b"GET  / HTTP/1.1\r\n", b"GET /  HTTP/1.1\r\n",
                                  b" GET / HTTP/1.1\r\n", b"GET / HTTP/1.1 \r\n",
                                  b"GET / HTTP/1.1\n", b"G(T / HTTP/1.1\r\n",
                                  b"GET / HTTP/2.0\r\n", b"GET /\r\n"])
def test_bad_request_lines(line: bytes) -> None:
    with pytest.raises(RequestError):
        check_request_line(line)


def test_versions() -> None:
    check_version("1.1")
    check_version("1.0")
    with pytest.raises(RequestError) as info:
        check_version("2.0")
    assert info.value.status == 505
    with pytest.raises(RequestError) as info:
        check_version("0.9")
    assert info.value.status == 400


@pytest.mark.parametrize("method, url, ok", [
    (b"GET", b"/x", True), (b"OPTIONS", b"*", True), (b"GET", b"*", False),
    (b"GET", b"http://a/b", True), (b"GET", b"a.example:80", False), (b"GET", b"x", False),
])
def test_targets(method: bytes, url: bytes, ok: bool) -> None:
    if ok:
        check_target(method, url)
    else:
        with pytest.raises(RequestError):
            check_target(method, url)


def test_host_rules() -> None:
    inspect_headers([(b"host", b"a")], True)
    for headers in ([], [(b"host", b"a"), (b"host", b"b")]):
        with pytest.raises(RequestError, match="Host"):
            inspect_headers(headers, True)
    inspect_headers([], False)  # HTTP/1.0 needs no Host


@pytest.mark.parametrize("value", [b"gzip", b"gzip, chunked", b"chunked, gzip", b"identity"])
def test_only_plain_chunked_transfer_encoding(value: bytes) -> None:
    with pytest.raises(RequestError, match="Transfer-Encoding"):
        inspect_headers([(b"host", b"a"), (b"transfer-encoding", value)], True)


def test_transfer_encoding_rejected_on_http10() -> None:
    with pytest.raises(RequestError, match="HTTP/1.0"):
        inspect_headers([(b"transfer-encoding", b"chunked")], False)


def test_connection_facts() -> None:
    facts = inspect_headers([(b"host", b"a"), (b"connection", b"Keep-Alive, Upgrade"),
                             (b"upgrade", b"WebSocket"), (b"expect", b"100-Continue")], True)
    assert facts.keep_alive and facts.upgrade == b"websocket" and facts.expect_continue
    assert not inspect_headers([(b"connection", b"close"), (b"host", b"a")], True).keep_alive
    assert inspect_headers([(b"connection", b"keep-alive")], False).keep_alive
    assert inspect_headers([(b"upgrade", b"h2c"), (b"host", b"a")], True).upgrade is None
    with pytest.raises(RequestError) as info:
        inspect_headers([(b"host", b"a"), (b"expect", b"magic")], True)
    assert info.value.status == 417


def test_access_log_escapes_control_characters() -> None:
    line = format_access("1.2.3.4:5", "GET", '/a\r\n1.1.1.1 - "GET /admin" 200', "1.1", 404)
    assert "\r" not in line and "\n" not in line
    assert "\\x0d\\x0a" in line and '\\"GET /admin\\"' in line
    assert escape("\x1b[31m") == "\\x1b[31m"


@pytest.mark.parametrize(("extra", "forwarded"), [
    ([], False),
    ([(b"x-forwarded-for", b"1.2.3.4")], True),
    ([(b"x-forwarded-proto", b"https")], True),
    ([(b"x-forwarded-host", b"a")], False),  # not one the server applies
])
def test_forwarding_headers_are_noted(extra: list[tuple[bytes, bytes]],
                                      forwarded: bool) -> None:
    assert inspect_headers([(b"host", b"a"), *extra], True).forwarded is forwarded


@pytest.mark.parametrize("name", [b"host", b"content-length", b"transfer-encoding", b"cookie",
                                  b"set-cookie", b"authorization", b"x-forwarded-for",
                                  b"trailer", b"connection", b"content-type"])
def test_forbidden_trailers_are_refused(name: bytes) -> None:
    with pytest.raises(RequestError) as info:
        check_trailer(name)
    assert info.value.status == 400 and name.decode() in info.value.reason


def test_allowed_trailers_pass() -> None:
    for name in (b"x-checksum", b"server-timing", b"x-admin"):
        check_trailer(name)


def test_plain_heads_share_read_only_facts() -> None:
    """A head with nothing to tell but keep-alive gets one shared HeadFacts (no allocation
    per request); anything else gets its own."""
    plain = [(b"host", b"a"), (b"accept", b"*/*")]
    first = inspect_headers(plain, True)
    assert first is inspect_headers(list(plain), True) and first.keep_alive
    closing = inspect_headers([(b"host", b"a"), (b"connection", b"close")], True)
    assert closing is inspect_headers([], False) and not closing.keep_alive
    own = inspect_headers([*plain, (b"x-request-id", b"abc")], True, b"x-request-id")
    assert own is not first and own.request_id == b"abc" and own.keep_alive
    assert first.request_id is None and first.content_length is None
