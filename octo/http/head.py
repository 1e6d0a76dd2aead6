"""Response heads and chunks, for HTTP responses and WebSocket denials alike: the app's
headers checked (a name that is not a token, or a value with CR, LF or NUL, would split
the response) and encoded, the status line with the server's headers, and chunk framing.
A core module (compiled with the others, see octo.http.core): it runs for every response."""

from __future__ import annotations

from typing import Any, Final

from octo.http.errors import ProtocolMisuse
from octo.http.response import DateHeader

from .validate import TOKEN_CHARS  # a core module

CHUNK_END = b"0\r\n\r\n"  # the last chunk, no trailers
# Ints for ``in``: ``b"\r" in value`` first tries b"\r" as an int and drops the TypeError
# it formats (2,100 instructions a test more than ``13 in value``, callgrind).
_CR: Final = ord("\r")
_LF: Final = ord("\n")
_NUL: Final = 0


EncodedHeaders = tuple[bytes, "int | None", bool]  # header lines, Content-Length, close
_ENCODED: Final[dict[tuple[Any, ...], EncodedHeaders]] = {}
_ENCODED_MAX: Final = 256


class _Last:
    """The last headers ``encoded_headers`` cached, and their encoding."""

    def __init__(self) -> None:
        self.key: tuple[Any, ...] = ()
        self.encoded: EncodedHeaders = (b"", None, False)


_LAST: Final = _Last()


def encoded_headers(headers: Any) -> EncodedHeaders:
    """The app's headers checked and joined, cached: most apps send the same few sets."""
    try:
        key = tuple(headers)
    except TypeError:
        return encode_headers(headers)
    last = _LAST
    # The same set as the last response's is compared, not hashed: a tuple of pairs hashes
    # its items anew each time (a lookup in _ENCODED cost 550 instructions, this 100,
    # callgrind). Only cacheable sets are kept in it: tuples of bytes, immutable.
    if key == last.key:
        return last.encoded  # () at first, whose encoding it holds
    try:
        cached = _ENCODED.get(key)
    except TypeError:  # [name, value] lists: fine for ASGI, not hashable
        return encode_headers(headers)
    if cached is None:
        cached = encode_headers(headers)
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        if cached[0].lower().find(b"set-cookie") >= 0:  # keep no session tokens around
            return cached
        _ENCODED[key] = cached
    last.key = key
    last.encoded = cached
    return cached


def chunk(data: bytes) -> bytes:
    """*data* framed as one chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def head_and_chunk(head: bytes, data: bytes) -> bytes:
    """*head* followed by *data* as the first chunk: one buffer, one write."""
    return b"%s%x\r\n%s\r\n" % (head, len(data), data)


def encode_headers(headers: Any) -> EncodedHeaders:
    """An app's response headers as header lines, checked: a name that is not a token or a
    value with CR, LF or NUL (which would split the response) is ProtocolMisuse. Also the
    Content-Length given and whether the app asked to close; Transfer-Encoding is dropped
    (framing is the server's job). Used for every response head, WebSocket denials too."""
    parts: list[bytes] = []
    length: int | None = None
    close = False
    for name, value in headers:
        lname = name.lower()
        if lname.translate(None, TOKEN_CHARS) or not name or (
                _CR in value or _LF in value or _NUL in value):
            raise ProtocolMisuse(f"response header {name[:60]!r} contains characters that "
                                 "would split the response")
        if lname == b"content-length":
            length = int(value)
        elif lname == b"connection" and value.lower() == b"close":
            close = True
        elif lname == b"transfer-encoding":
            continue  # framing is the server's job
        parts += (name, b": ", value, b"\r\n")
    return b"".join(parts), length, close


class HeadPrefixes:
    """``DateHeader.prefix`` (status line, server and date headers) per status, dropped at
    each ``DateHeader.refresh``. Compiled, this is a dict lookup where ``DateHeader.prefix``
    is a Python call (about 1,000 instructions a response); told of the refresh rather
    than comparing dates per response (300 more, callgrind)."""

    def __init__(self) -> None:
        self.heads: dict[int, bytes] = {}
        # The last one asked for, compared before the dict (most responses of a worker
        # share one status: a lookup cost 460 instructions, callgrind).
        self.last_key = -1
        self.last = b""

    def clear(self) -> None:
        self.heads = {}
        self.last_key = -1

    def get(self, status: int, server_header: bool) -> bytes:
        key = status * 2 + 1 if server_header else status * 2
        if key == self.last_key:
            return self.last
        head = self.heads.get(key)
        if head is None:
            head = self.heads[key] = DateHeader.prefix(status, server_header)
        self.last_key = key
        self.last = head
        return head


PREFIXES: Final = HeadPrefixes()
DateHeader.listeners.append(PREFIXES.clear)


__all__ = ["CHUNK_END", "PREFIXES", "EncodedHeaders", "HeadPrefixes", "chunk", "encode_headers",
           "encoded_headers", "head_and_chunk"]
