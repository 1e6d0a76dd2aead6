"""Measures the lines of a chunked body that llhttp parses but never bounds.

llhttp validates chunked framing strictly, but it lets a chunk-size line (size plus chunk
extensions) and a trailer line run on without limit, and httptools reports no byte offsets.
A :class:`ChunkMeter` follows one chunked body over the reads that carry it, *after* llhttp
has accepted them, and checks each line against ``--limit-chunk-extension`` and
``--limit-request-field-size``. It reads nothing llhttp did not accept first; to be sure it
followed the same framing, it must count exactly the chunks, body bytes and end llhttp
reported (the protocol's ``on_chunk_header``, ``on_body`` and ``on_message_complete``), or
the request is refused: a meter that lost its place would otherwise stop bounding anything.
It also holds the body's trailer fields, apart from the request's headers.
"""

from __future__ import annotations

from typing import Final

from .validate import RequestError

# Final ints: compiled, C constants (a module-dict lookup per use otherwise).
_LINE: Final = 0
_DATA: Final = 1
_TRAILER: Final = 2
_DONE: Final = 3
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
_SIZE_DIGITS: Final = 16  # llhttp refuses a chunk size that does not fit 64 bits
_UNLIMITED: Final = 1 << 62
# Chunk-size lines without extensions, parsed: senders repeat a few sizes, and int() of
# bytes costs more than the rest of a chunk's bookkeeping.
_SIZES: Final[dict[bytes, int]] = {}
_SIZES_MAX: Final = 256


class ChunkMeter:
    """One chunked request body: what llhttp reported, and where the meter is in its bytes."""

    __slots__ = ("limit_line", "limit_field", "head_index", "started", "trailers",
                 "reported_chunks", "chunk_body", "reported_done", "state", "line", "size",
                 "remaining", "chunks", "body")

    def __init__(self, limit_line: int, limit_field: int, head_index: int) -> None:
        self.limit_line = limit_line
        self.limit_field = limit_field
        self.head_index = head_index  # messages the connection had completed before this one
        self.started = False  # the meter has found where the body starts
        # The body's trailer section, kept apart from the request's headers (merged, a
        # trailer would pass for a header field; no ASGI extension carries request
        # trailers, so they are dropped). The parser's on_header fills it, refusing fields
        # that must not be trailers as they arrive (validate.check_trailer).
        self.trailers: list[tuple[bytes, bytes]] = []
        # What llhttp reported, cumulative over the message: the protocol's on_chunk_header
        # counts chunk-size lines and notes the body size at each (at the zero-size last
        # chunk, the whole body's); reported_done is set once the message is complete.
        self.reported_chunks = 0
        self.chunk_body = 0
        self.reported_done = False
        # The meter's own position.
        self.state = _LINE
        self.line = 0  # bytes of the current line so far
        self.size = b""  # the current chunk-size line's first bytes (its hex digits)
        self.remaining = 0
        self.chunks = 0
        self.body = 0

    # -- following the bytes ---------------------------------------------------------------

    def follow(self, data: bytes, pos: int, body_now: int) -> int:
        """Measure ``data[pos:]``; return where the body ends in *data*, or -1 if it goes on.

        *body_now* is the body size llhttp reported by the end of this read. Raises
        RequestError for a line over its limit, or when the meter's count disagrees with
        llhttp's.
        """
        try:
            end = self._walk(data, pos)
        except ValueError:  # int() of a size line llhttp accepted: cannot happen
            raise RequestError(400, "chunked framing could not be followed (size)") from None
        if not self._agrees(body_now):
            raise RequestError(400, "chunked framing could not be followed (chunks "
                                    f"{self.chunks}/{self.reported_chunks}, body bytes "
                                    f"{self.body}/{body_now})")
        self.started = True
        return end

    def locate(self, data: bytes, start: int, body_now: int) -> int:
        """Find where this body starts in *data* after *start*, when the read also carried
        earlier messages whose ends are not known: right after one of the ``CRLF CRLF`` that
        end a head, at the first from which the framing agrees with llhttp's count. The
        search ignores the limits (a wrong start may look like a long line); the body is
        then measured from the start found."""
        pos = data.find(b"\r\n\r\n", start)
        while pos != -1:
            body_start = pos + 4
            if body_start == len(data) or data[body_start] in _HEX:
                trial = ChunkMeter(_UNLIMITED, _UNLIMITED, self.head_index)
                trial.reported_chunks = self.reported_chunks
                trial.reported_done = self.reported_done
                try:
                    trial._walk(data, body_start)
                except (RequestError, ValueError):  # not a chunked body's start
                    pass
                else:
                    if trial._agrees(body_now):
                        return self.follow(data, body_start, body_now)
            pos = data.find(b"\r\n\r\n", pos + 1)
        raise RequestError(400, "chunked framing could not be followed (no start found)")

    def _agrees(self, body_now: int) -> bool:
        return (self.chunks == self.reported_chunks and self.body == body_now
                and (self.state == _DONE) == self.reported_done)

    def _walk(self, data: bytes, pos: int) -> int:
        length = len(data)
        while pos < length:
            pos = self._chunks(data, pos)
            if pos >= length:
                break
            if self.state == _DONE:
                return pos
            pos = self._line(data, pos)  # a line split over reads, or a trailer line
        return pos if self.state == _DONE else -1

    def _chunks(self, data: bytes, pos: int) -> int:
        """The usual case, kept in locals: chunk data and whole chunk-size lines. Stops at
        anything else (a line begun in an earlier read, a partial one, the trailers)."""
        if self.line:
            return pos
        length = len(data)
        state, remaining, body, chunks = self.state, self.remaining, self.body, self.chunks
        limit = self.limit_line
        find = data.find
        sizes = _SIZES
        in_data, in_line = _DATA, _LINE
        try:
            while pos < length:
                if state == in_data:  # chunk data, then its CRLF (*remaining* counts both)
                    take = length - pos
                    if remaining <= take:
                        body += remaining - 2 if remaining > 2 else 0
                        pos += remaining
                        remaining = 0
                        state = in_line
                    else:
                        left = remaining - 2
                        body += take if take <= left else left
                        pos = length
                        remaining -= take
                elif state == in_line:
                    newline = find(b"\n", pos)
                    if newline == -1:
                        break
                    if newline - 1 - pos > limit:  # without its CRLF
                        raise _too_long(newline - 1 - pos)
                    token = data[pos:newline - 1]
                    size = sizes.get(token)
                    if size is None:
                        size = _parse_size(token)
                    chunks += 1
                    pos = newline + 1
                    if size:
                        state = in_data
                        remaining = size + 2
                    else:
                        state = _TRAILER
                        break
                else:
                    break
        finally:
            self.state, self.remaining, self.body, self.chunks = state, remaining, body, chunks
        return pos

    def _line(self, data: bytes, pos: int) -> int:
        """Consume a chunk-size or trailer line (or as much of it as *data* holds)."""
        newline = data.find(b"\n", pos)
        end = len(data) if newline == -1 else newline + 1
        if self.state == _LINE and len(self.size) <= _SIZE_DIGITS:
            self.size += data[pos:min(end, pos + _SIZE_DIGITS + 1)]
        self.line += end - pos
        # Until its LF arrives a line has at most one byte (its CR) that is not content.
        content = self.line - (2 if newline != -1 else 1)
        if self.state == _LINE:
            if content > self.limit_line:
                raise _too_long(content)
        elif content + 2 > self.limit_field:
            raise RequestError(431, f"trailer field of {content}+ bytes exceeds "
                                    "--limit-request-field-size")
        if newline != -1:
            self._line_done()
        return end

    def _line_done(self) -> None:
        if self.state == _TRAILER:
            self.state = _DONE if self.line == 2 else _TRAILER
        else:
            digits = 0
            size = self.size
            while digits < len(size) and size[digits] in _HEX:
                digits += 1
            if not digits or size[digits:digits + 1] not in (b";", b"\r"):
                raise RequestError(400, "chunked framing could not be followed (size line)")
            self.chunks += 1
            size_value = int(size[:digits], 16)
            self.remaining = size_value + 2 if size_value else 0
            self.state = _DATA if size_value else _TRAILER
        self.line = 0
        self.size = b""


def _too_long(content: int) -> RequestError:
    return RequestError(413, f"chunk-size line of {content}+ bytes exceeds "
                             "--limit-chunk-extension")


def _parse_size(token: bytes) -> int:
    """The size of a chunk-size line's content (hex digits, extensions after ";")."""
    semicolon = token.find(b";")
    if semicolon != -1:
        return int(token[:semicolon], 16)
    size = int(token, 16)
    if len(_SIZES) < _SIZES_MAX and len(token) <= _SIZE_DIGITS:
        _SIZES[token] = size
    return size
