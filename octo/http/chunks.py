"""Measures the lines of a chunked body that llhttp parses but never bounds.

llhttp validates chunked framing strictly, but it lets a chunk-size line (size plus chunk
extensions) and a trailer line run on without limit, and httptools reports no byte offsets.
A :class:`ChunkMeter` follows one chunked body over the reads that carry it, *after* llhttp
has accepted them, and checks each line against ``--limit-chunk-extension`` and
``--limit-request-field-size``. It parses nothing llhttp did not accept first; to be sure it
followed the same framing, it must count exactly the chunks and body bytes llhttp reported
(through the protocol's ``on_chunk_header``/``on_chunk_complete``/``on_body``), or the request
is refused: a meter that lost its place would otherwise stop bounding anything.
"""

from __future__ import annotations

from octo.http.validate import RequestError

_LINE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SIZE_DIGITS = 16  # llhttp refuses a chunk size that does not fit 64 bits
_UNLIMITED = 1 << 62


class ChunkMeter:
    """One chunked request body: what llhttp reported, and where the meter is in its bytes."""

    __slots__ = ("limit_line", "limit_field", "head_index", "started", "reported_chunks",
                 "reported_body", "chunk_body", "reported_done", "state", "line", "size",
                 "remaining", "chunks", "body")

    def __init__(self, limit_line: int, limit_field: int, head_index: int) -> None:
        self.limit_line = limit_line
        self.limit_field = limit_field
        self.head_index = head_index  # messages the connection had completed before this one
        self.started = False  # the meter has found where the body starts
        # Reported by the parser callbacks, cumulative over the message.
        self.reported_chunks = 0
        self.reported_body = 0  # body bytes as of the last chunk boundary
        self.chunk_body = 0  # body bytes when the current chunk's size line ended
        self.reported_done = False
        # The meter's own position.
        self.state = _LINE
        self.line = 0  # bytes of the current line so far
        self.size = b""  # the current chunk-size line's first bytes (its hex digits)
        self.remaining = 0
        self.chunks = 0
        self.body = 0

    # -- fed by the protocol's parser callbacks --------------------------------------------

    def chunk_header(self, body_received: int) -> None:
        self.reported_chunks += 1
        self.chunk_body = body_received

    def chunk_complete(self, body_received: int) -> bool:
        """A chunk (or, for the zero-size last chunk, the trailer section) ended; True at
        the end of the body."""
        self.reported_body = body_received
        if body_received == self.chunk_body:
            self.reported_done = True
        return self.reported_done

    # -- following the bytes ---------------------------------------------------------------

    def follow(self, data: bytes, pos: int, body_now: int) -> int:
        """Measure ``data[pos:]``; return where the body ends in *data*, or -1 if it goes on.

        *body_now* is the body size llhttp reported by the end of this read. Raises
        RequestError for a line over its limit, or when the meter's count disagrees with
        llhttp's.
        """
        end = self._walk(data, pos)
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
                except RequestError:
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
            state = self.state
            if state == _DATA:
                take = min(self.remaining, length - pos)
                pos += take
                self.body += take
                self.remaining -= take
                if not self.remaining:
                    self.state, self.remaining = _DATA_END, 2
            elif state == _DATA_END:
                take = min(self.remaining, length - pos)
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.state = _LINE
            elif state == _DONE:
                return pos
            else:
                pos = self._line(data, pos)
        return pos if self.state == _DONE else -1

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
                raise RequestError(413, f"chunk-size line of {content}+ bytes exceeds "
                                        "--limit-chunk-extension")
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
            self.remaining = int(size[:digits], 16)
            self.state = _DATA if self.remaining else _TRAILER
        self.line = 0
        self.size = b""
