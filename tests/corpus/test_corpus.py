"""Replay every request vector whole, byte by byte and in seeded random splits."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
from harness import echo, exchange, parse_responses
from vectors import KNOWN_BUGS, VECTORS, Seen, Vector

from octo.config import Config

# Every test here runs on both HTTP cores, pure-Python and compiled.
pytestmark = pytest.mark.usefixtures("http_core")

SEEDS = range(5)
MODES = ["whole", "bytes", *(f"split{seed}" for seed in SEEDS)]


def chunks_for(data: bytes, mode: str) -> list[bytes]:
    if mode == "whole":
        return [data]
    if mode == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    rng = random.Random(f"{mode}:{len(data)}:{data[:64]!r}")
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


class Reply:
    def __init__(self, status: int, headers: dict[bytes, list[bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def one(self, name: bytes) -> bytes | None:
        values = self.headers.get(name, [])
        assert len(values) <= 1, f"{name!r} sent {len(values)} times"
        return values[0] if values else None


def split_responses(data: bytes) -> list[Reply]:
    """A strict response splitter that knows HEAD (echo marks it with x-method) and checks
    that no stray bytes follow the last response."""
    out: list[Reply] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        assert end != -1, f"incomplete response head: {data[pos:pos + 200]!r}"
        lines = data[pos:end].split(b"\r\n")
        pos = end + 4
        version, status_text, *_ = lines[0].split(b" ", 2)
        assert version == b"HTTP/1.1", lines[0]
        status = int(status_text)
        headers: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            assert sep and name and name == name.strip(), f"bad response header {line!r}"
            headers.setdefault(name.lower(), []).append(value.strip())
        reply = Reply(status, headers, b"")
        length = reply.one(b"content-length")
        te = reply.one(b"transfer-encoding")
        if status < 200 or status in (204, 304) or reply.one(b"x-method") == b"HEAD":
            assert te is None or status >= 200
        elif length is not None:
            assert te is None, "both Content-Length and Transfer-Encoding in a response"
            n = int(length)
            reply.body = data[pos:pos + n]
            assert len(reply.body) == n, "response body shorter than its Content-Length"
            pos += n
        elif te is not None:
            assert te == b"chunked", te
            body = bytearray()
            while True:
                eol = data.index(b"\r\n", pos)
                size = int(data[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    assert data[pos:pos + 2] == b"\r\n", "trailers/final CRLF"
                    pos += 2
                    break
                body += data[pos:pos + size]
                assert data[pos + size:pos + size + 2] == b"\r\n"
                pos += size + 2
            reply.body = bytes(body)
        else:
            reply.body = data[pos:]  # delimited by the close
            pos = len(data)
        out.append(reply)
    return out


def status_ok(expected: int | frozenset[int], got: int) -> bool:
    return got in expected if isinstance(expected, frozenset) else got == expected


def check(vector: Vector, out: bytes, closed: bool, scopes: list[dict[str, Any]]) -> None:
    replies = split_responses(out)
    got = [r.status for r in replies]
    assert len(got) == len(vector.statuses) and all(
        status_ok(e, g) for e, g in zip(vector.statuses, got, strict=True)), (
        f"statuses: expected {list(vector.statuses)}, got {got}; output {out[:600]!r}")
    assert closed is vector.closed, (
        f"connection {'closed' if closed else 'left open'}, expected "
        f"{'closed' if vector.closed else 'open'}")
    if vector.closed and replies and not vector.eof:
        assert replies[-1].one(b"connection") == b"close", "last response lacks connection: close"

    if not any(r.one(b"x-method") == b"HEAD" for r in replies):
        # The shared harness parser must agree (it cannot frame responses to HEAD).
        parsed = parse_responses(out)
        assert [p.status for p in parsed] == got
        assert [p.body for p in parsed] == [r.body for r in replies]

    # App responses, in order, match what each request should have shown the app.
    answered = [r for r in replies if r.one(b"x-method") is not None]
    assert len(answered) == len(vector.seen), f"app answered {len(answered)} requests"
    for reply, seen in zip(answered, vector.seen, strict=True):
        assert reply.status == 200
        assert reply.one(b"x-method") == seen.method.encode()
        assert reply.one(b"x-path") == seen.path.encode("utf-8", "surrogateescape")
        assert reply.one(b"x-query") == seen.query
        if seen.method == "HEAD":
            assert reply.body == b""
            assert reply.one(b"content-length") == b"%d" % len(seen.body)
        else:
            assert reply.body == seen.body

    # Scopes the app was called with (an app started for a request whose body then turns
    # out bad is allowed by app_may_start).
    assert len(vector.seen) <= len(scopes) <= len(vector.seen) + vector.app_may_start, (
        f"app called {len(scopes)} times for {len(vector.seen)} valid requests")
    for scope, seen in zip(scopes, vector.seen, strict=False):
        check_scope(scope, seen)


def check_scope(scope: dict[str, Any], seen: Seen) -> None:
    assert scope["method"] == seen.method
    assert scope["path"] == seen.path
    assert scope["raw_path"] == seen.expected_raw_path
    assert scope["query_string"] == seen.query
    assert scope["http_version"] == seen.version
    for header in seen.headers:
        assert header in scope["headers"], f"{header!r} not in {scope['headers']!r}"
    names = {name for name, _ in scope["headers"]}
    for name in seen.absent:
        assert name not in names, f"{name!r} reached the app's headers {scope['headers']!r}"
    assert not any(0xD800 <= ord(c) < 0xE000 for c in scope["path"]), "lone surrogate in path"


def cases() -> list[Any]:
    params = []
    for vector in VECTORS:
        for mode in MODES:
            reason = KNOWN_BUGS.get((vector.name, mode))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(vector, mode, id=f"{vector.name}-{mode}", marks=marks))
    return params


@pytest.mark.parametrize(("vector", "mode"), cases())
def test_vector(run: Any, caplog: pytest.LogCaptureFixture, vector: Vector, mode: str) -> None:
    scopes: list[dict[str, Any]] = []

    async def recording_echo(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(dict(scope))
        await echo(scope, receive, send)

    config = Config(app="x:y", **vector.config)
    octo_log = logging.getLogger("octo")
    octo_log.addHandler(caplog.handler)  # also when logging setup stopped propagation
    try:
        with caplog.at_level(logging.DEBUG, logger="octo"):
            out, closed = run(exchange(recording_echo, chunks_for(vector.data, mode), config,
                                       eof=vector.eof))
    finally:
        octo_log.removeHandler(caplog.handler)
    check(vector, out, closed, scopes)
    check_log(caplog.records)


def check_log(records: list[logging.LogRecord]) -> None:
    """Whatever a vector sends, each log record stays one line of visible text: request
    bytes quoted in it are escaped."""
    for record in records:
        message = record.getMessage()
        unsafe = [c for c in message if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0
                  or 0xD800 <= ord(c) < 0xE000 or c in "\u2028\u2029"]
        assert not unsafe, f"unescaped {unsafe!r} in log line {message!r}"


def test_corpus_size_and_known_bugs_name_real_vectors() -> None:
    assert len(VECTORS) >= 80
    names = {v.name for v in VECTORS}
    assert {name for name, _ in KNOWN_BUGS} <= names
    assert {mode for _, mode in KNOWN_BUGS} <= set(MODES)
