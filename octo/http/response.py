"""Pre-encoded response pieces: status lines, the cached Date header, fixed error replies."""

from __future__ import annotations

import http
from email.utils import formatdate

STATUS_LINES: dict[int, bytes] = {
    int(s): f"HTTP/1.1 {int(s)} {s.phrase}\r\n".encode("latin-1") for s in http.HTTPStatus
}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} \r\n".encode("latin-1")
    return line


class DateHeader:
    """``date: ...\r\n``, refreshed once a second by the worker's clock tick.

    ``prefixes`` caches status line + server + date per status until the next refresh.
    """

    value: bytes = b""
    prefixes: dict[tuple[int, bool], bytes] = {}

    @classmethod
    def refresh(cls, now: float) -> None:
        cls.value = b"date: " + formatdate(now, usegmt=True).encode("latin-1") + b"\r\n"
        cls.prefixes = {}

    @classmethod
    def prefix(cls, status: int, server_header: bool) -> bytes:
        head = cls.prefixes.get((status, server_header))
        if head is None:
            head = status_line(status) + (SERVER if server_header else b"") + cls.value
            cls.prefixes[status, server_header] = head
        return head


SERVER = b"server: octo\r\n"


def simple_response(status: int, body: bytes, *, close: bool = True,
                    extra: bytes = b"") -> bytes:
    """A complete plain-text response the server sends by itself (errors, 503, 100)."""
    return b"".join((
        status_line(status),
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: ", str(len(body)).encode(), b"\r\n",
        b"connection: close\r\n" if close else b"",
        extra,
        DateHeader.value,
        b"\r\n",
        body,
    ))


def error_body(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Error"


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
