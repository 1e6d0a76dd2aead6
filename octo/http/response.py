"""Pre-encoded response pieces: status lines, the cached Date header, fixed error replies."""

from __future__ import annotations

import http
import time
from collections.abc import Callable
from typing import ClassVar

STATUS_LINES: dict[int, bytes] = {
    int(s): f"HTTP/1.1 {int(s)} {s.phrase}\r\n".encode("latin-1") for s in http.HTTPStatus
}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} \r\n".encode("latin-1")
    return line


_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct",
           b"Nov", b"Dec")


def http_date(now: float) -> bytes:
    """IMF-fixdate (RFC 9110 5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``. Written out
    here because ``email.utils.formatdate`` would bring the email package (~2 MB) into
    every worker."""
    t = time.gmtime(now)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min,
        t.tm_sec)


class DateHeader:
    """``date: ...\r\n``, refreshed once a second by the worker's clock tick.

    ``prefixes`` caches status line + server + date per status until the next refresh.
    """

    value: ClassVar[bytes] = b""
    prefixes: ClassVar[dict[tuple[int, bool], bytes]] = {}
    # Called after each refresh: caches of heads built from the old value drop them.
    listeners: ClassVar[list[Callable[[], None]]] = []

    @classmethod
    def refresh(cls, now: float) -> None:
        cls.value = b"date: " + http_date(now) + b"\r\n"
        cls.prefixes = {}
        for listener in cls.listeners:
            listener()

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
