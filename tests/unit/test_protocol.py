"""In-memory protocol tests: every HTTP/1.1 behaviour through a fake transport."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from harness import Client, echo, exchange, hello, parse_responses

from octo.config import Config
from octo.http.protocol import SHUTDOWN_IDLE_GRACE

# Every test here runs on both HTTP cores, pure-Python and compiled.
pytestmark = pytest.mark.usefixtures("http_core")

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def cfg(**kw: Any) -> Config:
    return Config(app="x:y", **kw)


def test_keep_alive_two_requests_on_one_connection(run) -> None:
    async def main() -> None:
        client = Client(hello)
        client.send(GET)
        await client.settle()
        client.send(GET)
        await client.settle()
        responses = parse_responses(client.take())
        assert [r.status for r in responses] == [200, 200]
        assert not client.closed

    run(main())


def test_pipelined_responses_in_order_and_reading_paused(run) -> None:
    order: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(0.01)
        order.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    async def main() -> None:
        client = Client(app)
        client.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
        assert client.transport.reading is False  # second request queued: stop reading
        out = b""
        deadline = asyncio.get_running_loop().time() + 20
        while len(parse_responses(out)) < 2:  # /fast starts only once /slow is answered
            assert asyncio.get_running_loop().time() < deadline, parse_responses(out)
            await client.settle()
            out += client.take()
        responses = parse_responses(out)
        assert [r.body for r in responses] == [b"/slow", b"/fast"]
        assert order == ["/slow", "/fast"]
        assert client.transport.reading is True

    run(main())


def test_connection_close_header_closes(run) -> None:
    out, closed = run(exchange(hello, [b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"]))
    [resp] = parse_responses(out)
    assert resp.header(b"connection") == b"close"
    assert closed


def test_http10_without_keep_alive_closes(run) -> None:
    out, closed = run(exchange(hello, [b"GET / HTTP/1.0\r\n\r\n"]))
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert closed


def test_http10_with_keep_alive_stays_open(run) -> None:
    out, closed = run(exchange(hello, [b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]))
    [resp] = parse_responses(out)
    assert resp.header(b"connection") == b"keep-alive"
    assert not closed


def test_chunked_request_body(run) -> None:
    req = (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    out, _ = run(exchange(echo, [req]))
    assert parse_responses(out)[0].body == b"hello world"


def test_streaming_response_is_chunked(run) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a", b"bb", b""):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"ccc"})

    out, closed = run(exchange(app, [GET]))
    assert b"transfer-encoding: chunked" in out
    assert out.endswith(b"1\r\na\r\n2\r\nbb\r\n3\r\nccc\r\n0\r\n\r\n")
    assert parse_responses(out)[0].body == b"abbccc"
    assert not closed


def _record_writes(client: Client, writes: list[bytes]) -> None:
    """Append each transport write of *client* to *writes* (the buffer still gets it)."""
    write = client.transport.write

    def recording(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)

    client.transport.write = recording  # type: ignore[method-assign]


def test_streamed_parts_sent_without_a_pause_go_out_in_one_write(run) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(10):
            await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        client = Client(app)
        writes: list[bytes] = []
        _record_writes(client, writes)
        client.send(GET)
        await client.settle()
        assert len(writes) == 1
        assert parse_responses(writes[0])[0].body == b"x" * 1000
        assert writes[0].endswith(b"0\r\n\r\n")

    run(main())


def test_a_held_part_goes_out_as_soon_as_the_app_waits(run) -> None:
    writes: list[bytes] = []
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0.05)  # e.g. waiting for the next server-sent event
        seen.append(b"".join(writes))
        await send({"type": "http.response.body", "body": b"last"})

    async def main() -> None:
        client = Client(app)
        _record_writes(client, writes)
        client.send(GET)
        await client.settle()
        assert b"5\r\nfirst\r\n" in seen[0] and b"last" not in seen[0]
        assert parse_responses(client.take())[0].body == b"firstlast"

    run(main())


def test_holding_is_bounded_so_flow_control_sees_the_bytes(run) -> None:
    from octo.http.cycle import HOLD_MAX

    part = b"y" * 4096
    writes: list[bytes] = []
    written_before_last: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3 * HOLD_MAX // len(part)):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        written_before_last.append(sum(map(len, writes)))
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        client = Client(app)
        _record_writes(client, writes)
        client.send(GET)
        await client.settle()
        assert written_before_last[0] >= 2 * HOLD_MAX  # no more than HOLD_MAX stayed held
        assert len(parse_responses(client.take())[0].body) == 3 * HOLD_MAX

    run(main())


def test_parts_sent_before_an_app_error_are_written_before_the_close(run) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")

    out, closed = run(exchange(app, [GET]))
    assert b"7\r\npartial\r\n" in out
    assert not out.endswith(b"0\r\n\r\n")  # not a complete response: the close says so
    assert closed


def test_streaming_http10_is_close_delimited(run) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    out, closed = run(exchange(app, [b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]))
    assert b"transfer-encoding" not in out and out.endswith(b"\r\n\r\nab")
    assert closed


def test_head_sends_no_body_but_length(run) -> None:
    out, closed = run(exchange(hello, [b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"]))
    assert out.endswith(b"\r\n\r\n")
    assert b"content-length: 5" in out
    assert not closed


def test_expect_continue_sent_only_when_app_reads(run) -> None:
    req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"

    async def main() -> None:
        client = Client(echo)
        client.send(req)
        await client.settle(5, 0)
        assert client.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(b"hello")
        await client.settle()
        assert parse_responses(client.take())[0].body == b"hello"

    run(main())


def test_expect_continue_not_sent_when_app_answers_without_reading(run) -> None:
    req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    out, closed = run(exchange(hello, [req]))
    assert b"100 Continue" not in out
    assert parse_responses(out)[0].status == 200
    assert closed  # the unread body may still come: the connection cannot be reused


def test_request_body_flow_control_pauses_reading(run) -> None:
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await echo(scope, receive, send)

    async def main() -> None:
        client = Client(app)
        size = 300_000
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
        await client.settle(5, 0)
        client.send(b"x" * 100_000)
        assert client.transport.reading is False  # app has not consumed: stop reading
        release.set()
        await client.settle(20, 0)
        assert client.transport.reading is True
        client.send(b"x" * 200_000)
        await client.settle()
        assert len(parse_responses(client.take())[0].body) == size

    run(main())


def test_send_waits_while_transport_write_buffer_is_full(run) -> None:
    sent: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            sent.append(i)
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        client = Client(app)
        client.protocol.pause_writing()
        client.send(GET)
        await client.settle(5, 0)
        assert sent == []  # first chunk written, then blocked on drain
        client.protocol.resume_writing()
        await client.settle()
        assert sent == [0, 1, 2]

    run(main())


def test_disconnect_reaches_app_while_streaming(run) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        message = await receive()  # blocks until the client goes away
        seen.append(message["type"])
        with pytest.raises(OSError):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"late"})

    async def main() -> None:
        client = Client(app)
        client.send(GET)
        await client.settle(5, 0)
        client.transport.close()
        await client.settle()
        assert seen == ["http.disconnect"]

    run(main())


def test_app_exception_before_start_gives_500_and_log(run, caplog) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="octo.error"):
        out, closed = run(exchange(app, [GET]))
    assert parse_responses(out)[0].status == 500
    assert closed
    assert "boom" in caplog.text and "Traceback" in caplog.text


def test_app_exception_after_start_closes_connection(run) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("boom")

    out, closed = run(exchange(app, [GET]))
    assert out.startswith(b"HTTP/1.1 200") and closed
    assert not out.endswith(b"0\r\n\r\n")  # no false end-of-body marker


def test_app_returning_without_response_gives_500(run, caplog) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    out, _ = run(exchange(app, [GET]))
    assert parse_responses(out)[0].status == 500
    assert "without sending a response" in caplog.text


@pytest.mark.parametrize("messages, text", [
    ([{"type": "http.response.body", "body": b"x"}], "before http.response.start"),
    ([{"type": "http.response.start", "status": 200},
      {"type": "http.response.start", "status": 200}], "sent twice"),
    ([{"type": "http.response.nope"}], "unexpected ASGI message"),
])
def test_protocol_misuse_is_logged(run, caplog, messages: list[dict[str, Any]], text: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    out, _ = run(exchange(app, [GET]))
    assert parse_responses(out)[0].status == 500
    assert text in caplog.text


@pytest.mark.parametrize("name, value", [
    (b"x-bad", b"a\r\nSet-Cookie: evil=1"),
    (b"x-bad", b"a\nb"),
    (b"x-bad", b"a\x00b"),
    (b"x bad", b"a"),
    (b"x-bad:", b"a"),
])
def test_response_splitting_refused(run, caplog, name: bytes, value: bytes) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(name, value)]})
        await send({"type": "http.response.body", "body": b"ok"})

    out, _ = run(exchange(app, [GET]))
    [resp] = parse_responses(out)
    assert resp.status == 500
    assert b"evil" not in out
    assert "split the response" in caplog.text


def test_response_headers_cache_gives_identical_heads_and_never_caches_bad_ones(
        run, caplog) -> None:
    import harness

    cycle_mod = harness.CORE.module("head")  # the cache of the core under test
    cycle_mod._ENCODED.clear()
    headers = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"2"),
               (b"Transfer-Encoding", b"gzip")]
    sets = [headers, headers, [[b"x-list", b"form"]], [(b"Set-Cookie", b"s=secret")],
            [(b"x-bad", b"a\r\nx: y")], [(b"x-bad", b"a\r\nx: y")]]
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": sets[len(seen)]})
        await send({"type": "http.response.body", "body": b"ok"})

    for _ in sets:
        out, _ = run(exchange(app, [GET]))
        seen.append(out)
    first, second, listed, cookie, bad1, bad2 = [parse_responses(o)[0] for o in seen]
    assert first.status == second.status == 200 and seen[0] == seen[1]
    assert b"transfer-encoding" not in seen[0].lower()  # framing stays the server's
    assert listed.status == 200 and b"x-list: form" in seen[2]
    assert cookie.status == 200 and b"s=secret" in seen[3]
    assert bad1.status == bad2.status == 500  # refused both times: errors are not cached
    assert tuple(headers) in cycle_mod._ENCODED
    cached_names = {name.lower() for key in cycle_mod._ENCODED for name, _ in key}
    assert not cached_names & {b"set-cookie", b"x-bad", b"x-list"}


def test_response_headers_of_one_list_mutated_between_responses_are_encoded_anew(
        run) -> None:
    """The last set is compared, not trusted: an app that changes its one header list in
    place (or sends a cookie in it) gets each response's own headers."""
    import harness

    head_mod = harness.CORE.module("head")
    headers = [(b"content-type", b"text/plain"), (b"x-count", b"1")]
    changes = [None, (1, (b"x-count", b"2")), (1, (b"x-count", b"2")),
               (1, (b"set-cookie", b"s=a")), (1, (b"set-cookie", b"s=b")),
               (1, (b"x-count", b"3"))]
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        change = changes[len(seen)]
        if change is not None:
            headers[change[0]] = change[1]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    for _ in changes:
        out, _ = run(exchange(app, [GET]))
        seen.append(out.lower())
    assert [b"x-count: 1" in o for o in seen] == [True, False, False, False, False, False]
    assert b"x-count: 2" in seen[1] and b"x-count: 2" in seen[2]
    assert b"s=a" in seen[3] and b"s=b" not in seen[3]
    assert b"s=b" in seen[4] and b"s=a" not in seen[4]
    assert b"x-count: 3" in seen[5] and b"set-cookie" not in seen[5]
    assert b"set-cookie" not in b"".join(name for name, _ in head_mod._LAST.key)


def test_head_prefixes_follow_the_status_and_the_date_refresh(http_core: str) -> None:
    import harness

    head_mod = harness.CORE.module("head")
    prefixes = head_mod.HeadPrefixes()
    ok, missing = prefixes.get(200, True), prefixes.get(404, True)
    assert ok.startswith(b"HTTP/1.1 200 ") and missing.startswith(b"HTTP/1.1 404 ")
    assert prefixes.get(200, True) == ok and b"server: octo" in ok.lower()
    assert b"server:" not in prefixes.get(200, False).lower()
    prefixes.clear()
    assert prefixes.get(404, True).startswith(b"HTTP/1.1 404 ")


def test_scope_contents(run) -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await hello(scope, receive, send)

    req = b"GET /a%20b/c?x=1&y=%20 HTTP/1.1\r\nHost: example\r\nX-Thing: V\r\n\r\n"
    run(exchange(app, [req], cfg(root_path="/root"), lifespan_state={"k": 1}))
    [scope] = scopes
    assert scope["type"] == "http" and scope["asgi"]["spec_version"] == "2.3"
    assert scope["http_version"] == "1.1" and scope["method"] == "GET"
    assert scope["path"] == "/root/a b/c" and scope["raw_path"] == b"/a%20b/c"
    assert scope["query_string"] == b"x=1&y=%20" and scope["root_path"] == "/root"
    assert (b"x-thing", b"V") in scope["headers"]
    assert scope["client"] == ("127.0.0.1", 50000) and scope["server"] == ("127.0.0.1", 8000)
    assert scope["scheme"] == "http" and scope["state"]["k"] == 1
    assert set(scope["state"]) == {"k", "request_id"}  # a copy, with this request's id
    assert "http.response.pathsend" in scope["extensions"]


@pytest.mark.parametrize("chunks", [
    [b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.0\r\nHost: a\r\n\r\n"],
    [b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HT", b"TP/1.0\r\nHost: a\r\n\r\n"],
    [b"GET /a HTTP/1.1\r\nHo", b"st: a\r\n\r\n", b"GET /b HTTP/1.0\r\nHost: a\r\n\r\n"],
    [b"GET /a HTT", b"P/1.1\r\nHost: a\r\n\r\n", b"GET /b HTTP/1.0\r\n", b"Host: a\r\n\r\n"],
    [b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", b"\r\nGET /b HTTP/1.0\r\nHost: a\r\n\r\n"],
])
def test_each_request_gets_its_own_version_and_a_scope_of_its_own(run, chunks) -> None:
    """The version comes from the request line when a read starts with it whole, else from
    the parser; either way each request has its own (a pipelined one too), and a scope the
    app changes is no other request's."""
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append({**scope, "headers": list(scope["headers"])})
        scope["path"] = "/changed"
        scope["headers"].append((b"x-added", b"1"))
        await hello(scope, receive, send)

    run(exchange(app, chunks))
    assert [(s["path"], s["http_version"]) for s in scopes] == [("/a", "1.1"), ("/b", "1.0")]
    assert all((b"x-added", b"1") not in s["headers"] for s in scopes)
    assert list(scopes[0]) == list(scopes[1])  # the same keys, in the same order


def test_lifespan_state_is_a_copy_per_request(run) -> None:
    state = {"k": 1}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["state"]["k"] = 2
        await hello(scope, receive, send)

    run(exchange(app, [GET], lifespan_state=state))
    assert state == {"k": 1}


def test_proxy_headers_from_trusted_peer(run) -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await hello(scope, receive, send)

    req = (b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n"
           b"X-Forwarded-For: 1.2.3.4, 10.0.0.1\r\n\r\n")
    run(exchange(app, [req], cfg(forwarded_allow_ips="127.0.0.1,10.0.0.0/8")))
    run(exchange(app, [req], peer=("192.0.2.9", 1)))
    trusted, untrusted = scopes
    assert trusted["scheme"] == "https" and trusted["client"] == ("1.2.3.4", 0)
    assert untrusted["scheme"] == "http" and untrusted["client"] == ("192.0.2.9", 1)


def test_limit_concurrency_answers_503_at_once(run) -> None:
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await hello(scope, receive, send)

    async def main() -> None:
        config = cfg(limit_concurrency=1)
        first = Client(app, config)
        first.send(GET)
        await first.settle(5, 0)
        second = Client(app, config)
        second.state = first.state  # same worker
        second.protocol.server = first.state
        second.send(GET)
        await second.settle(5, 0)
        assert parse_responses(second.take())[0].status == 503
        gate.set()
        await first.settle()
        assert parse_responses(first.take())[0].status == 200

    run(main())


def test_header_deadline_does_not_restart_per_byte(run, caplog) -> None:
    async def main() -> None:
        client = Client(hello, cfg(header_timeout=1.0))
        start = client.loop.time()
        client.send(b"G")
        for i, byte in enumerate(b"ET / HTTP/1.1\r\nX: "):
            client.protocol.tick(start + 0.05 * i)  # each byte "in time"...
            client.send(bytes([byte]))
        assert not client.closed
        client.protocol.tick(start + 1.01)  # ...but the head as a whole is late
        await client.settle()
        assert client.closed
        assert parse_responses(client.take())[0].status == 408

    run(main())
    assert "header read deadline" in caplog.text


def test_idle_keep_alive_timeout(run) -> None:
    async def main() -> None:
        client = Client(hello, cfg(timeout_keep_alive=2.0))
        client.send(GET)
        await client.settle()
        now = client.loop.time()
        client.protocol.tick(now + 1.0)
        assert not client.closed
        client.protocol.tick(now + 2.5)
        assert client.closed

    run(main())


def test_body_limit_by_content_length_before_reading(run) -> None:
    called: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(True)

    req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"
    out, closed = run(exchange(app, [req], cfg(limit_request_body=100)))
    assert parse_responses(out)[0].status == 413 and closed and not called


def test_chunked_body_limit_while_app_reads(run) -> None:
    req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = [req] + [b"40\r\n" + b"x" * 64 + b"\r\n"] * 4
    out, closed = run(exchange(echo, chunks, cfg(limit_request_body=100)))
    assert parse_responses(out)[0].status == 413 and closed


def test_shutdown_closes_idle_and_finishes_active(run) -> None:
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await hello(scope, receive, send)

    async def main() -> None:
        idle = Client(hello)
        idle.state.stopping = True
        idle.protocol.shutdown()  # idle only just now: lingers for the grace period
        assert not idle.closed
        idle.protocol.tick(idle.state.now + 0.5)
        assert not idle.closed
        idle.protocol.tick(idle.state.now + SHUTDOWN_IDLE_GRACE + 0.1)
        await idle.settle()
        assert idle.closed
        long_idle = Client(hello)
        long_idle.state.now += SHUTDOWN_IDLE_GRACE + 0.1
        long_idle.protocol.shutdown()
        assert long_idle.closed
        busy = Client(app)
        busy.send(GET)
        await busy.settle(5, 0)
        busy.state.stopping = True
        busy.protocol.shutdown()
        assert not busy.closed
        gate.set()
        await busy.settle()
        [resp] = parse_responses(busy.take())
        assert resp.status == 200 and resp.header(b"connection") == b"close"
        assert busy.closed

    run(main())


def test_stopping_after_a_keep_alive_head_went_out_closes_instead_of_serving_more(run) -> None:
    """The head said keep-alive before the server began stopping; a request pipelined after
    the stop began is not served: the connection closes after the response in progress."""
    gate = asyncio.Event()
    paths: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await gate.wait()
        await send({"type": "http.response.body", "body": b"b"})

    async def main() -> None:
        client = Client(app)
        client.send(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle(5, 0)
        assert b"transfer-encoding: chunked" in client.transport.buffer  # the head is out
        client.state.stopping = True
        client.protocol.shutdown()
        client.send(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        gate.set()
        await client.settle()
        for _ in range(20):
            await asyncio.sleep(0)
        assert paths == ["/1"] and client.closed
        [resp] = parse_responses(client.take())
        assert resp.status == 200 and resp.body == b"ab"

    run(main())


def test_eager_completion_needs_no_task(run) -> None:
    async def main() -> None:
        client = Client(hello)
        client.send(GET)
        # On 3.12+ the app ran to completion inside data_received (eager task start).
        import sys
        if sys.version_info >= (3, 12):
            assert client.transport.buffer.startswith(b"HTTP/1.1 200")
        await client.settle()
        assert not client.state.tasks

    run(main())


def test_pathsend_small_and_large(run, tmp_path) -> None:
    small = tmp_path / "small.txt"
    small.write_bytes(b"tiny file")
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 1024)

    def app_for(path: str) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.pathsend", "path": path})
        return app

    out, _ = run(exchange(app_for(str(small)), [GET]))
    assert parse_responses(out)[0].body == b"tiny file"
    # No real socket here, so the large file takes the copy path; sendfile is covered by the
    # integration tests.
    out, _ = run(exchange(app_for(str(big)), [GET]))
    [resp] = parse_responses(out)
    assert resp.body == big.read_bytes() and resp.header(b"content-length") == b"262144"


def test_upgrade_without_websocket_layer_is_served_as_http_then_closed(run) -> None:
    req = (b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    out, closed = run(exchange(hello, [req]))
    [resp] = parse_responses(out)
    assert resp.status == 200 and resp.header(b"connection") == b"close"
    assert closed


def test_upgrade_is_handed_to_the_upgrade_handler(run) -> None:
    handed: list[tuple[str, bytes, bytes]] = []

    async def main() -> None:
        client = Client(hello)
        client.state.upgrade_handler = (
            lambda conn, scope, rest: handed.append((scope["path"], scope["octo.upgrade"], rest)))
        client.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
                    b"Upgrade: websocket\r\n\r\n\x81\x05hello")
        await client.settle()
        assert client.take() == b""  # the HTTP layer wrote nothing: the handler owns it now

    run(main())
    assert handed == [("/ws", b"websocket", b"\x81\x05hello")]


def test_well_formed_request_line_takes_the_fast_path(run, monkeypatch) -> None:
    from octo.http import validate

    def fail(line: bytes) -> None:
        raise AssertionError(f"slow request-line check ran for {line!r}")

    monkeypatch.setattr(validate, "check_request_line", fail)
    out, _ = run(exchange(hello, [b"GET /json?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"]))
    assert parse_responses(out)[0].status == 200
