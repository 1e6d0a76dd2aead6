"""Strict request framing checks that llhttp leaves to the server (pure, tested directly).

llhttp already rejects CL+TE, duplicate/list Content-Length, bad chunk sizes and endings,
bare CR/LF/NUL in values, obs-fold and bad header tokens. What it accepts and RFC 9112 does
not, we reject here: extra spaces in the request line, versions other than 1.0/1.1, misplaced
asterisk/authority forms, a Host count other than one on HTTP/1.1, Transfer-Encoding other
than exactly ``chunked`` (or any Transfer-Encoding on HTTP/1.0), unknown expectations, and
trailer fields that must not be sent in a trailer.
"""

from __future__ import annotations

import re
from typing import Final

# RFC 9110 §5.6.2 tchar, as a translate() deletion table: what is left over is not a token.
TOKEN_CHARS: Final = (
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

_REQUEST_LINE = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^\x00-\x20\x7f]+ HTTP/1\.[01]\r\n\Z"
)
_SP: Final = b" "
_VERSIONS: Final = (b" HTTP/1.1\r\n", b" HTTP/1.0\r\n")


def _text(data: bytes) -> str:
    """Request bytes for a reason: as they came (the log line escapes them)."""
    return data.decode("latin-1")


class RequestError(Exception):
    """A request that must be refused: ``status`` to answer with, ``reason`` for the log.

    The reason may quote request bytes as they came; it is escaped where it is logged.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_request_line(line: bytes) -> None:
    """*line* is the raw request line including its CRLF (leading empty lines stripped).

    Exactly two spaces is the cheap common-case test; the full grammar runs only otherwise.
    """
    if (line.count(_SP) == 2 and line.endswith(_VERSIONS)
            and not line[:line.find(_SP)].translate(None, TOKEN_CHARS)):
        return
    if _REQUEST_LINE.match(line) is None:
        raise RequestError(400, f"malformed request line '{_text(line[:80])}'")


def check_version(version: str) -> None:
    if version != "1.1" and version != "1.0":
        raise RequestError(400 if version.startswith("0") else 505,
                           f"unsupported HTTP version '{version}'")


def check_target(method: bytes, url: bytes) -> None:
    """Only origin-form and absolute-form in general; ``*`` only with OPTIONS."""
    first = url[:1]
    if first == b"/":
        return
    if url == b"*":
        if method != b"OPTIONS":
            raise RequestError(400, f"asterisk-form target with {method.decode('latin-1')}")
        return
    if b"://" in url and url[:url.index(b"://")].isalpha():
        return
    raise RequestError(400, f"request target form not allowed here: '{_text(url[:80])}'")


class HeadFacts:
    """What the connection needs to know about one request head."""

    __slots__ = ("keep_alive", "expect_continue", "upgrade", "content_length", "chunked",
                 "forwarded", "request_id", "request_start")

    def __init__(self, keep_alive: bool = True, expect_continue: bool = False,
                 upgrade: bytes | None = None, content_length: int | None = None,
                 chunked: bool = False, forwarded: bool = False,
                 request_id: bytes | None = None, request_start: bytes | None = None) -> None:
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.content_length = content_length
        self.chunked = chunked
        self.forwarded = forwarded  # X-Forwarded-For/-Proto present (only trusted peers')
        self.request_id = request_id  # the --request-id-header value, unchecked
        self.request_start = request_start  # X-Request-Start (likewise)


def inspect_headers(headers: list[tuple[bytes, bytes]], http11: bool,
                    request_id_header: bytes | None = None) -> HeadFacts:
    """One pass over lowercased headers: framing and connection facts, or RequestError.
    *request_id_header* (lowercase) is the field whose value becomes ``request_id``.

    The facts are read-only: a head with nothing but its keep-alive default to tell (most
    requests) gets a shared HeadFacts rather than a new one (400 instructions a request)."""
    keep_alive = http11
    expect_continue = chunked = forwarded = connection_upgrade = False
    upgrade = content_length = request_id = request_start = None
    hosts = 0
    for name, value in headers:
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            content_length = int(value)
        elif name == b"transfer-encoding":
            if not http11:
                raise RequestError(400, "Transfer-Encoding in an HTTP/1.0 request")
            if chunked or value.strip().lower() != b"chunked":
                raise RequestError(400, f"Transfer-Encoding '{_text(value[:60])}' (only chunked)")
            chunked = True
        elif name == b"connection":
            for token in value.lower().split(b","):
                token = token.strip()
                if token == b"close":
                    keep_alive = False
                elif token == b"keep-alive" and not http11:
                    keep_alive = True
                elif token == b"upgrade":
                    connection_upgrade = True
        elif name == b"expect":
            if value.strip().lower() != b"100-continue":
                raise RequestError(417, f"unsupported expectation '{_text(value[:60])}'")
            expect_continue = http11
        elif name == b"upgrade":
            upgrade = value.strip().lower()
        elif name == b"x-forwarded-for" or name == b"x-forwarded-proto":
            forwarded = True
        elif name == request_id_header:
            request_id = value
        elif name == b"x-request-start":
            request_start = value
    if http11 and hosts != 1:
        raise RequestError(400, f"HTTP/1.1 request with {hosts} Host headers")
    if hosts > 1:
        raise RequestError(400, f"request with {hosts} Host headers")
    if chunked and content_length is not None:
        raise RequestError(400, "both Content-Length and Transfer-Encoding")
    if not connection_upgrade:
        upgrade = None
    if (not expect_continue and not chunked and not forwarded and upgrade is None
            and content_length is None and request_id is None and request_start is None):
        return _KEEP_ALIVE if keep_alive else _CLOSE
    return HeadFacts(keep_alive, expect_continue, upgrade, content_length, chunked, forwarded,
                     request_id, request_start)


# The shared facts of heads with nothing to tell but whether the connection stays open.
_KEEP_ALIVE: Final = HeadFacts(True)
_CLOSE: Final = HeadFacts(False)


# RFC 9110 §6.5.1: fields a recipient needs before the content (framing, routing,
# authentication, request modifiers, response control, content format) must not come in a
# trailer; a client sending one is probably trying to smuggle it past a front proxy that
# only inspects the head. Cookie and the forwarding headers belong to the same class.
FORBIDDEN_TRAILERS: Final = frozenset((
    b"host", b"content-length", b"transfer-encoding", b"trailer", b"te", b"connection",
    b"keep-alive", b"upgrade", b"proxy-connection", b"expect", b"max-forwards",
    b"authorization", b"proxy-authorization", b"www-authenticate", b"proxy-authenticate",
    b"cookie", b"set-cookie", b"cache-control", b"pragma", b"range", b"if-match",
    b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"if-range",
    b"content-type", b"content-encoding", b"content-range", b"content-location",
    b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
    b"x-forwarded-port", b"x-real-ip", b"via", b"age", b"date", b"location", b"retry-after",
    b"vary",
))


def check_trailer(name: bytes) -> None:
    """A trailer field (lowercased name) that may not be a trailer: RequestError(400)."""
    if name in FORBIDDEN_TRAILERS:
        raise RequestError(400, f"{name.decode('latin-1')} is not allowed in a trailer")

