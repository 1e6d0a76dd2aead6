"""The simple-head scanner's oracle: llhttp, and the Python scanner for the C one.

Shared by tests/corpus/test_quickhead.py and the fuzz target (tests/fuzz/fuzz_headscan.py).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import random
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httptools
from vectors import VECTORS

from octo.http import quickhead
from octo.http.validate import check_request_line

Parse = Callable[[bytes], Any]


def headscan() -> ModuleType | None:
    """The C scanner: the one ``OCTO_HEADSCAN`` names (a build under AddressSanitizer, see
    ``make asan``), else the compiled core's, else None."""
    path = os.environ.get("OCTO_HEADSCAN")
    if path:
        loader = importlib.machinery.ExtensionFileLoader("octo._ccore._headscan", path)
        spec = importlib.util.spec_from_file_location("octo._ccore._headscan", path,
                                                      loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return module
    try:
        return importlib.import_module("octo._ccore._headscan")
    except ImportError:
        return None


C_SCANNER = headscan()


class _Recorder:
    """Parser callbacks storing what octo's HttpProtocol stores."""

    def __init__(self) -> None:
        self.begun = self.complete = 0
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.body = b""

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name.lower(), value.rstrip(b" \t")))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


def llhttp(data: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], int] | None:
    """What llhttp reports of *data* when it is one whole bodyless HTTP/1.1 keep-alive
    request, in quickhead's form; None for anything else."""
    recorder = _Recorder()
    parser = httptools.HttpRequestParser(recorder)
    try:
        parser.feed_data(data)
    except httptools.HttpParserError:
        return None
    if (recorder.begun, recorder.complete) != (1, 1) or recorder.body:
        return None
    if parser.get_http_version() != "1.1" or not parser.should_keep_alive():
        return None
    size = len(recorder.url) + sum(len(n) + len(v) + 4 for n, v in recorder.fields)
    return parser.get_method(), recorder.url, recorder.fields, size


def check(parse: Parse, data: bytes) -> Any:
    """Assert the scanner's promise for *data*; return what it returned."""
    found = parse(data)
    if C_SCANNER is not None:
        assert C_SCANNER.parse(data) == quickhead.parse(data), data
    if found is not None:
        assert found == llhttp(data), data
        check_request_line(data[:data.index(b"\n") + 1])
    return found



INTERESTING = b" \t\r\n:;,/?#%\x00\x7f\x80\xffAz09-_\"'()"


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three random edits: a byte replaced, inserted or removed, a line doubled,
    a byte's case flipped."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(5)
        at = rng.randrange(len(out) + 1)
        if kind == 0 and out[at:]:
            out[at] = rng.choice(INTERESTING)
        elif kind == 1:
            out.insert(at, rng.choice(INTERESTING))
        elif kind == 2 and out[at:]:
            del out[at]
        elif kind == 3:
            start = out.rfind(b"\n", 0, at) + 1
            end = out.find(b"\n", at)
            if end != -1:
                out[end + 1:end + 1] = out[start:end + 1]
        elif out[at:]:
            out[at:at + 1] = bytes(out[at:at + 1]).swapcase()
    return bytes(out)


SIMPLE = [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    b"GET /a/b?c=d&e=%20f HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Agent: x/1.0\r\n\r\n",
    b"HEAD /x HTTP/1.1\r\nhost: a\r\nX-Custom-Name: \t v a l \t \r\nEmpty:\r\n\r\n",
    b"DELETE /~u/it's;p=1 HTTP/1.1\r\nHOST: a\r\nConnection: Keep-Alive\r\n\r\n",
    b"OPTIONS /@:!$&()*+,= HTTP/1.1\r\nHost: a\r\nCookie: a=b; c=\"d\"\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # no Host: the scanner passes it on, octo refuses it after
]

DECLINED = [
    b"", b"\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # pipelined
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
    b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /\"<> HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", b"GET / HTTP/1.1\r\nHost: \x00\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: \x7f\r\n\r\n", b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", b"GET / HTTP/1.1\r\n: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost a\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nX(y): a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
]


def seeds() -> list[bytes]:
    return SIMPLE + DECLINED + [vector.data for vector in VECTORS]
