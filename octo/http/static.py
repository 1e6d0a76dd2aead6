"""``--static /prefix=DIR``: files the worker serves itself, without calling the app.

A request whose raw path starts with a mount's prefix never reaches the application: the
file is found under the mount's directory, answered with validators (ETag, Last-Modified),
conditional 304s, a single byte range (206/416), a Cache-Control, and a precompressed
``.br``/``.gz`` sibling when the client accepts it, and its bytes go out with
``sendfile()`` (the same path as the ``http.response.pathsend`` extension).

Confinement: the path is decoded once and refused (404) when it holds an encoded slash or
backslash, a NUL, an empty, ``.`` or ``..`` segment, or a segment starting with a dot
(hidden files); the file is then opened and what was *opened* (not the path) must lie under
the mount's directory, resolved when the worker starts, so a symlink pointing out of the
root is refused without a check-then-open race.
"""

from __future__ import annotations

import calendar
import dataclasses
import mimetypes
import os
import re
import stat
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from octo.http.response import http_date
from octo.logs import error_log, escape
from octo.types import Scope, Send

FILE_MESSAGE = "octo.response.file"  # private: a file descriptor the cycle sends (see cycle)
HASHED_CACHE_CONTROL = b"public, max-age=31536000, immutable"
# A content hash in the name, as bundlers and Django's ManifestStaticFilesStorage write them
# (app.3f2a9c.js, base.5af66c1b1797.css, index-4f3a2b1c.js): at least six hex digits, one of
# them a digit, between the stem and the extension.
_HASHED = re.compile(r"[.-](?=[0-9a-f]*[0-9])[0-9a-f]{6,}\.[A-Za-z0-9]+$")
_SAFE_RAW = re.compile(rb"%(?:2[fF]|5[cC]|00)")
_PROC_FD = os.path.isdir("/proc/self/fd")
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(
    os, "O_NOCTTY", 0)  # O_NONBLOCK: a FIFO in the root must not block the worker
_ENCODINGS = (("br", ".br", b"br"), ("gzip", ".gz", b"gzip"))
_MAX_RANGE_DIGITS = 19  # a position with more digits is beyond any file: the range is ignored


class StaticConfigError(ValueError):
    """A ``--static`` value that cannot be served; the message names the flag."""


@dataclasses.dataclass(frozen=True, slots=True)
class Mount:
    """One ``--static PREFIX=DIR``: requests under *prefix* are files under *directory*."""

    prefix: str  # "/static", no trailing slash ("" for "/")
    directory: str  # as given (resolved in the worker, see StaticFiles)

    @classmethod
    def parse(cls, spec: str) -> Mount:
        prefix, sep, directory = spec.partition("=")
        if not sep or not prefix.startswith("/") or not directory:
            raise StaticConfigError(f"--static {spec!r}: expected /PREFIX=DIRECTORY, e.g. "
                                    "/static=./public")
        if any(part in (".", "..") for part in prefix.split("/")) or "%" in prefix:
            raise StaticConfigError(f"--static {spec!r}: the prefix must be a plain path")
        return cls(prefix.rstrip("/"), directory)

    def check(self) -> None:
        """StaticConfigError unless the directory exists (checked when serving starts, not
        by the control commands, which read the same settings from anywhere)."""
        if not Path(self.directory).is_dir():
            raise StaticConfigError(f"--static {self.prefix or '/'}={self.directory}: "
                                    f"{self.directory} is not a directory")


def relative_path(rest: bytes) -> str | None:
    """The file path under a mount for the raw path bytes after its prefix and slash, or
    None when the path may not name a file there (see the module docstring)."""
    if not rest:
        return None
    if b"%" in rest:
        if _SAFE_RAW.search(rest):
            return None  # %2f, %5c, %00: a separator or NUL hidden from the check below
        rest = unquote_to_bytes(rest)
    try:
        text = rest.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\0" in text or "\\" in text:
        return None
    for part in text.split("/"):
        if not part or part[0] == ".":
            return None  # "//", ".", "..", and hidden files such as .env or .git
    return text


class File:
    """An open regular file under a mount, with what its response headers need."""

    __slots__ = ("fd", "size", "mtime", "etag", "encoding")

    def __init__(self, fd: int, st: os.stat_result, encoding: bytes | None) -> None:
        self.fd = fd
        self.size = st.st_size
        self.mtime = int(st.st_mtime)
        tag = b"%x-%x" % (st.st_mtime_ns, st.st_size)
        self.etag = b'"' + tag + (b"-" + encoding if encoding else b"") + b'"'
        self.encoding = encoding


class StaticFiles:
    """The worker's mounts, and the ASGI callable that answers requests under them."""

    def __init__(self, mounts: list[Mount], max_age: int) -> None:
        # Longest prefix first: /static/admin wins over /static.
        ordered = sorted(mounts, key=lambda m: len(m.prefix), reverse=True)
        self.mounts = [(m.prefix.encode("latin-1") + b"/", os.path.realpath(m.directory))
                       for m in ordered]
        self.prefixes = tuple(prefix for prefix, _ in self.mounts)
        self.cache_control = (b"public, max-age=%d" % max_age) if max_age > 0 else b"no-cache"

    # -- finding the file --------------------------------------------------------------------

    def locate(self, raw_path: bytes) -> tuple[str, str] | None:
        """(root, path under it) for a request path, or None: not servable."""
        for prefix, root in self.mounts:
            if raw_path.startswith(prefix):
                rel = relative_path(raw_path[len(prefix):])
                return None if rel is None else (root, rel)
        return None

    def open(self, root: str, rel: str, encoding: bytes | None = None,
             suffix: str = "") -> File | None:
        """Open *rel* (+ *suffix*) under *root*: a regular file that really lies there."""
        path = os.path.join(root, rel + suffix)
        if not _PROC_FD and not _inside(os.path.realpath(path), root):
            return None  # no /proc: check the path first (racy, but the best there is)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and (not _PROC_FD or _inside(
                    os.readlink(f"/proc/self/fd/{fd}"), root)):
                return File(fd, st, encoding)
            if stat.S_ISREG(st.st_mode):
                error_log.warning("--static: %s resolves outside %s (a symlink); refused",
                                  escape(rel), root)
        except OSError:
            pass
        os.close(fd)
        return None

    def choose(self, root: str, rel: str, accept: bytes, ranged: bool) -> File | None:
        """The representation to send: a precompressed sibling the client accepts (never
        for a range request: ranges count bytes of the identity file), else the file."""
        if accept and not ranged:
            for token, suffix, name in _ENCODINGS:
                if _accepts(accept, token):
                    found = self.open(root, rel, name, suffix)
                    if found is not None:
                        return found
        return self.open(root, rel)

    # -- answering ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            await _plain(send, 405, b"Method Not Allowed", [(b"allow", b"GET, HEAD")])
            return
        found = self.locate(scope["raw_path"])
        if found is None:
            await _plain(send, 404, b"Not Found")
            return
        root, rel = found
        wanted = _request_fields(scope["headers"])
        file = self.choose(root, rel, wanted.get(b"accept-encoding", b""),
                           b"range" in wanted)
        if file is None:
            await _plain(send, 404, b"Not Found")
            return
        try:
            await self._answer(send, rel, file, wanted)
        finally:
            os.close(file.fd)

    async def _answer(self, send: Send, rel: str, file: File,
                      wanted: dict[bytes, bytes]) -> None:
        last_modified = http_date(file.mtime)
        headers = [
            (b"etag", file.etag), (b"last-modified", last_modified),
            (b"cache-control", HASHED_CACHE_CONTROL if _HASHED.search(rel)
             else self.cache_control),
            (b"vary", b"Accept-Encoding"),
        ]
        if not_modified(wanted, file.etag, file.mtime):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += (
            (b"content-type", content_type(rel)),
            (b"accept-ranges", b"bytes"),
            (b"x-content-type-options", b"nosniff"),
        )
        if file.encoding is not None:
            headers.append((b"content-encoding", file.encoding))
        status, offset, length = 200, 0, file.size
        spec = wanted.get(b"range")
        if spec is not None and range_applies(wanted.get(b"if-range"), file.etag,
                                              last_modified):
            span = parse_range(spec, file.size)
            if span == UNSATISFIABLE:
                await _plain(send, 416, b"Range Not Satisfiable",
                             [(b"content-range", b"bytes */%d" % file.size)])
                return
            if span is not None:
                offset, end = span
                status, length = 206, end - offset + 1
                headers.append((b"content-range",
                                b"bytes %d-%d/%d" % (offset, end, file.size)))
        headers.append((b"content-length", b"%d" % length))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": FILE_MESSAGE, "fd": file.fd, "offset": offset, "size": length})


# -- pieces, tested directly ----------------------------------------------------------------

_WANTED = frozenset((b"accept-encoding", b"range", b"if-range", b"if-none-match",
                     b"if-modified-since"))


def _request_fields(headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request fields static serving reads (repeated ones joined with a comma)."""
    out: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _WANTED:
            out[name] = out[name] + b", " + value if name in out else value
    return out


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


def _accepts(accept: bytes, token: str) -> bool:
    """Whether Accept-Encoding *accept* allows *token* (q=0 refuses it)."""
    for item in accept.decode("latin-1").lower().split(","):
        name, _, params = item.partition(";")
        if name.strip() == token:
            q = params.strip()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def content_type(rel: str) -> bytes:
    kind, _ = mimetypes.guess_type(rel, strict=False)
    if kind is None:
        return b"application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json",
                                             "image/svg+xml"):
        return kind.encode("latin-1") + b"; charset=utf-8"
    return kind.encode("latin-1")


def _etags(value: bytes) -> list[bytes]:
    """The entity tags of an If-None-Match / If-Match list, weak prefixes dropped."""
    return [tag.strip().removeprefix(b"W/") for tag in value.split(b",") if tag.strip()]


def not_modified(wanted: dict[bytes, bytes], etag: bytes, mtime: int) -> bool:
    """RFC 9110 §13.2.2: If-None-Match (weak comparison) decides when present; otherwise
    If-Modified-Since."""
    none_match = wanted.get(b"if-none-match")
    if none_match is not None:
        tags = _etags(none_match)
        return b"*" in tags or etag.removeprefix(b"W/") in tags
    since = wanted.get(b"if-modified-since")
    if since is not None:
        when = parse_http_date(since)
        return when is not None and mtime <= when
    return False


def range_applies(if_range: bytes | None, etag: bytes, last_modified: bytes) -> bool:
    """If-Range: the range is honoured only for the representation the client has (strong
    ETag match, or the exact Last-Modified date)."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith((b'"', b"W/")):
        return value == etag  # a weak tag never matches here (strong comparison)
    return value == last_modified


UNSATISFIABLE = (-1, -1)


def parse_range(spec: bytes, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (first, last), UNSATISFIABLE (416), or None: ignore the
    header and send the whole file. Several ranges are answered whole (one range is what
    this server supports; RFC 9110 lets a server ignore Range), as is any invalid one:
    reversed, non-numeric, another unit."""
    unit, _, ranges = spec.strip().partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in ranges:
        return None
    first_text, dash, last_text = ranges.strip().partition(b"-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or (first_text and not first_text.isdigit()) or (
            last_text and not last_text.isdigit()):
        return None
    if not first_text:  # a suffix: the last N bytes
        if not last_text:
            return None
        suffix = int(last_text) if len(last_text) <= _MAX_RANGE_DIGITS else size
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - suffix), size - 1
    if len(first_text) > _MAX_RANGE_DIGITS:
        return UNSATISFIABLE  # a start past any file
    first = int(first_text)
    last = size - 1
    if last_text and len(last_text) <= _MAX_RANGE_DIGITS:
        if int(last_text) < first:
            return None  # reversed: invalid, so ignored
        last = min(int(last_text), size - 1)
    if first >= size:
        return UNSATISFIABLE
    return first, last


_MONTHS = {m: i for i, m in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
     b"dec"), 1)}
_IMF = re.compile(rb"\s*[A-Za-z]{3}, (\d\d) ([A-Za-z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT\s*$")


def parse_http_date(value: bytes) -> int | None:
    """An IMF-fixdate (what every current client sends) as a Unix time, else None."""
    match = _IMF.match(value)
    if match is None:
        return None
    day, month, year, hour, minute, second = match.groups()
    number = _MONTHS.get(month.lower())
    if number is None:
        return None
    try:
        return calendar.timegm((int(year), number, int(day), int(hour), int(minute),
                                int(second), 0, 0, 0))
    except (ValueError, OverflowError):
        return None


async def _plain(send: Send, status: int, body: bytes,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        *(headers or ()), (b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": body})
