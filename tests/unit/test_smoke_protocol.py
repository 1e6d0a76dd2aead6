from __future__ import annotations

from harness import exchange, hello, parse_responses


def test_hello(run) -> None:
    out, closed = run(exchange(hello, [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]))
    [resp] = parse_responses(out)
    assert resp.status == 200 and resp.body == b"hello"
    assert not closed
