"""The common request, read whole, without the general parser (pure, tested directly).

Most reads of a keep-alive connection hold one whole request head and nothing else: a GET
with a handful of fields. For those, feeding llhttp costs more than the head itself: its
callbacks into Python (message begin, the target, each field, head complete, message
complete) were 4,000 of the 40,000 instructions a hello request cost (callgrind).

``parse`` reads such a head in a few C-level scans (find, count, translate, split; the
compiled core's C twin, headscan.c, in one pass) and returns what llhttp would have
reported for it; for anything else it returns None and the read goes to llhttp as before.
It accepts a strict subset of what llhttp accepts, so it never answers differently, only
sooner: one HTTP/1.1 request line of a known method, an origin-form target of unreserved,
sub-delim, ``:@/?%`` characters, field lines of a token, a colon and printable ASCII, and
no field that frames a body or changes the connection (Content-Length, Transfer-Encoding,
Upgrade, Expect, Connection other than keep-alive).
tests/corpus/test_quickhead.py checks that subset against llhttp, vector by vector and on
random mutations of the request corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .validate import TOKEN_CHARS

_HEAD_END: Final = b"\r\n\r\n"
_CRLF: Final = b"\r\n"
_LF: Final = b"\n"
_SP: Final = b" "
_OWS: Final = b" \t"
_SLASH: Final = 0x2F
_HTTP11: Final = b"HTTP/1.1"
_METHODS: Final = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS",
                             b"PATCH"))
# RFC 3986 pchar and query characters, without '#' (llhttp reads a fragment on its own).
_TARGET_CHARS: Final = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%"
)
# Printable ASCII and HTAB: deleted from the head, what is left must be its CRLFs alone.
_TEXT: Final = bytes(range(0x20, 0x7F)) + b"\t"
_KEEP_ALIVE: Final = b"keep-alive"
# Fields that frame a body or change what the connection does next: llhttp acts on them.
_DECLINED: Final = frozenset((b"content-length", b"transfer-encoding", b"upgrade", b"expect",
                              b"connection"))

# Common request header names as clients spell them, lowercased: a dict lookup where
# ``lower()`` and the ``rstrip()`` of every value cost 670 instructions a header (callgrind).
# Fixed: names a client makes up are lowered, never added. A name found here is a token.
_COMMON_NAMES = (
    "host", "user-agent", "accept", "accept-encoding", "accept-language", "connection",
    "content-length", "content-type", "cookie", "referer", "origin", "cache-control",
    "pragma", "upgrade", "upgrade-insecure-requests", "authorization", "if-none-match",
    "if-modified-since", "range", "expect", "te", "dnt", "priority", "forwarded",
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "x-request-id",
    "x-request-start", "transfer-encoding", "sec-fetch-dest", "sec-fetch-mode",
    "sec-fetch-site", "sec-fetch-user", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform",
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol",
)
LOWERED: Final[dict[bytes, bytes]] = {
    spelling.encode(): name.encode()
    for name in _COMMON_NAMES
    for spelling in (name, "-".join(part.capitalize() for part in name.split("-")))
}


# What llhttp would report of a simple head: its method, its target, its fields (lowercased,
# values without surrounding whitespace) and their size as the parser callbacks count it.
Head = tuple[bytes, bytes, list[tuple[bytes, bytes]], int]


def parse(data: bytes) -> Head | None:
    """*data*, a read that starts at a request boundary, when it is exactly one simple head
    (see the module docstring); else None, and nothing was decided about it."""
    end = len(data) - 4
    if end < 0 or data.find(_HEAD_END) != end:
        return None
    lines = data[:end].split(_CRLF)
    crlfs = len(lines) + 1
    # Only CR and LF are left after the text is deleted, as many LFs as CRLF pairs: no CR
    # or LF stands alone, no control byte or obs-text is anywhere.
    if len(data.translate(None, _TEXT)) != 2 * crlfs or data.count(_LF) != crlfs:
        return None
    parts = lines[0].split(_SP)
    if len(parts) != 3:
        return None
    method, target, version = parts
    if (version != _HTTP11 or method not in _METHODS or not target or target[0] != _SLASH
            or target.translate(None, _TARGET_CHARS)):
        return None
    fields = _fields(lines)
    if fields is None:
        return None
    size = len(target)
    for name, value in fields:
        size += len(name) + len(value) + 4
    return method, target, fields, size


def plain_target(target: bytes) -> bool:
    """Whether *target* has no query, fragment or percent-escape (no ``?``, ``#``, ``%``):
    its path is the target itself. The scope needs to know of every request; three
    ``in`` tests cost 350 instructions, the C twin 60 (callgrind)."""
    return not (b"?" in target or b"#" in target or b"%" in target)


def target_checker() -> Callable[[bytes], bool]:
    """``plain_target``, or in the compiled core its C twin (headscan.c)."""
    try:
        from ._headscan import plain_target as check
    except ImportError:
        return plain_target
    found: Callable[[bytes], bool] = check
    return found


def scanner() -> Callable[[bytes], Head | None]:
    """``parse``, or in the compiled core the C scanner built beside it (headscan.c),
    which returns the same for every input."""
    try:
        from ._headscan import parse as scan
    except ImportError:
        return parse
    found: Callable[[bytes], Head | None] = scan
    return found


def _fields(lines: list[bytes]) -> list[tuple[bytes, bytes]] | None:
    fields: list[tuple[bytes, bytes]] = []
    for index in range(1, len(lines)):
        line = lines[index]
        colon = line.find(b":")
        if colon <= 0:
            return None
        raw = line[:colon]
        name = LOWERED.get(raw)
        if name is None:
            if raw.translate(None, TOKEN_CHARS):
                return None
            name = raw.lower()
        value = line[colon + 1:].strip(_OWS)
        if name in _DECLINED and (name != b"connection" or value.lower() != _KEEP_ALIVE):
            return None
        fields.append((name, value))
    return fields
