from __future__ import annotations

import pytest
from harness import exchange, hello, parse_responses

# Every test here runs on both HTTP cores, pure-Python and compiled.
pytestmark = pytest.mark.usefixtures("http_core")


def test_hello(run) -> None:
    out, closed = run(exchange(hello, [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]))
    [resp] = parse_responses(out)
    assert resp.status == 200 and resp.body == b"hello"
    assert not closed


def test_http_date_matches_the_standard_library_format() -> None:
    from email.utils import formatdate

    from octo.http.response import http_date

    for stamp in (0.0, 784111777.0, 1_795_881_600.5, 4_102_444_799.0, 951_782_400.0):
        assert http_date(stamp) == formatdate(stamp, usegmt=True).encode()
