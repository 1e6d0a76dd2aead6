"""The access log: one record per response, as the default line, as a line in
``--access-log-format`` (gunicorn's atoms), or as a JSON object (``--access-log-json``).

Every record carries the request's fields as ``extra`` (``record.method``, ``record.status``,
``record.request_id``, ...), so a JSON formatter from ``--log-config`` gets them without
parsing the message. Request data in them is escaped as in every log line (octo.logs.escape):
a formatter that prints a field as it is cannot be made to write a forged line.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

from octo.logs import access_log, escape, format_access
from octo.stats import clock


class RequestCycle(Protocol):
    """What an access record reads of a request cycle: ``octo.http.cycle.RequestCycle``,
    of either HTTP core (a Protocol, so the compiled core's class fits it too)."""

    scope: MutableMapping[str, Any]
    status: int
    headers: Any  # the response's, as the app sent them
    head_sent: bool
    complete: bool
    ended: str | None
    sent_bytes: int
    began: float
    request_id: str | None


Fields = dict[str, Any]
Atom = Callable[[RequestCycle, Fields], str]


class AccessFormatError(ValueError):
    """An ``--access-log-format`` that cannot be used; the message says why."""


class AccessLog:
    """Writes the access record of one finished response (``__call__``)."""

    def __init__(self, log_format: str | None = None, as_json: bool = False,
                 request_id_header: bytes | None = None, structured: bool = True) -> None:
        self.pid = os.getpid()  # built in the worker: its own pid
        self.as_json = as_json
        # The fields are built when something can read them: a --log-config formatter, the
        # JSON line or a format. The default line on the default handler needs none of
        # them, and building them would cost it a quarter more (see protocol_cost.py).
        self.structured = structured or as_json or log_format is not None
        self.request_id_header = request_id_header
        self.template = log_format
        self.atoms: list[tuple[str, Atom]] = (
            compile_format(log_format, request_id_header) if log_format else [])

    def __call__(self, cycle: RequestCycle) -> None:
        if not self.structured:
            scope = cycle.scope
            client = scope["client"]
            target = scope["raw_path"].decode("latin-1")
            if scope["query_string"]:
                target += "?" + scope["query_string"].decode("latin-1")
            access_log.info(format_access(f"{client[0]}:{client[1]}" if client else "-",
                                          scope["method"], target, scope["http_version"],
                                          cycle.status if cycle.head_sent else "-",
                                          None if cycle.complete else cycle.ended))
            return
        fields = self.fields(cycle)
        if self.as_json:
            message = json_line(fields)
        elif self.template is not None:
            message = self.template % {key: atom(cycle, fields) for key, atom in self.atoms}
        else:
            message = format_access(fields["client"], fields["method"], fields["target"],
                                    fields["http_version"], fields["status"] or "-",
                                    fields["ended"], escaped=True)
        access_log.info(message, extra=fields)

    def fields(self, cycle: RequestCycle) -> Fields:
        """The structured fields of *cycle*'s record, request data escaped."""
        scope = cycle.scope
        client = scope["client"]
        agent = referer = None
        for name, value in scope["headers"]:
            if name == b"user-agent":
                agent = escape(value)
            elif name == b"referer":
                referer = escape(value)
        path = escape(scope["raw_path"])
        query = escape(scope["query_string"])
        return {
            "method": escape(scope["method"]),
            "path": path,
            "query": query,
            "target": path + "?" + query if query else path,
            "http_version": scope["http_version"],
            "status": cycle.status if cycle.head_sent else None,
            "ended": None if cycle.complete else cycle.ended,  # why it was cut short
            "bytes": cycle.sent_bytes,
            "duration": round(clock() - cycle.began, 6),  # from its queueing, see _run
            "client": escape(f"{client[0]}:{client[1]}") if client else "-",
            "request_id": cycle.request_id,
            "pid": self.pid,
            "user_agent": agent,
            "referer": referer,
        }


def json_line(fields: Fields) -> str:
    """One JSON object: the time (UTC, ISO 8601) and the fields; ASCII only, so no control
    or separator character can end the line early."""
    now = time.time()
    millis = int(now * 1000) % 1000
    stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(now))}.{millis:03d}Z"
    return json.dumps({"time": stamp, **fields}, ensure_ascii=True,
                      separators=(",", ":")).replace("\x7f", "\\u007f")


# -- --access-log-format ----------------------------------------------------------------

_KEY = re.compile(r"%\(([^)]*)\)")
_HEADER_ATOM = re.compile(r"\{([^}]+)\}([ioe])")


def _dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _seconds(fields: Fields) -> float:
    return float(fields["duration"])


_ATOMS: dict[str, Atom] = {
    "h": lambda c, f: escape(c.scope["client"][0]) if c.scope["client"] else "-",
    "l": lambda c, f: "-",
    "u": lambda c, f: basic_auth_user(c.scope["headers"]),
    "t": lambda c, f: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": lambda c, f: f"{f['method']} {f['target']} HTTP/{f['http_version']}",
    "m": lambda c, f: f["method"],
    "U": lambda c, f: f["path"],
    "q": lambda c, f: f["query"],
    "H": lambda c, f: f"HTTP/{f['http_version']}",
    "s": lambda c, f: str(f["status"]),
    "B": lambda c, f: str(f["bytes"]),
    "b": lambda c, f: str(f["bytes"]) if f["bytes"] else "-",
    "f": lambda c, f: _dash(f["referer"]),
    "a": lambda c, f: _dash(f["user_agent"]),
    "T": lambda c, f: str(int(_seconds(f))),
    "D": lambda c, f: str(int(_seconds(f) * 1_000_000)),
    "M": lambda c, f: str(int(_seconds(f) * 1000)),
    "L": lambda c, f: f"{_seconds(f):.6f}",
    "p": lambda c, f: f"<{f['pid']}>",
}


def compile_format(log_format: str, request_id_header: bytes | None) -> list[tuple[str, Atom]]:
    """The atoms *log_format* uses, each with the function computing it: only those are
    computed per request. AccessFormatError for an unknown atom or a broken format."""
    atoms: list[tuple[str, Atom]] = []
    for key in dict.fromkeys(_KEY.findall(log_format)):
        atom = _ATOMS.get(key)
        if atom is None:
            atom = _header_atom(key, request_id_header)
        atoms.append((key, atom))
    try:
        log_format % {key: "-" for key, _ in atoms}
    except (TypeError, ValueError, KeyError) as exc:
        raise AccessFormatError(f"--access-log-format {log_format!r}: {exc}") from None
    return atoms


def _header_atom(key: str, request_id_header: bytes | None) -> Atom:
    match = _HEADER_ATOM.fullmatch(key)
    if match is None:
        known = " ".join(_ATOMS)
        raise AccessFormatError(f"--access-log-format: unknown atom %({key})s (known: "
                                f"{known}, {{header}}i, {{header}}o, {{variable}}e)")
    name, kind = match.group(1), match.group(2)
    if kind == "e":
        return lambda c, f: escape(os.environ.get(name, "-"))
    wanted = name.lower().encode("latin-1")
    if kind == "i":
        if wanted == request_id_header:  # the id in use: incoming or generated
            return lambda c, f: _dash(c.request_id)
        return lambda c, f: _header(c.scope["headers"], wanted)
    return lambda c, f: _header(c.headers, wanted)


def _header(headers: Any, wanted: bytes) -> str:
    for name, value in headers:
        if name.lower() == wanted:
            return escape(value)
    return "-"


def basic_auth_user(headers: list[tuple[bytes, bytes]]) -> str:
    """The user name of an ``Authorization: Basic`` header (gunicorn's ``%(u)s``), or -."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() != b"basic":
                return "-"
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True)
            except (binascii.Error, ValueError):
                return "-"
            return escape(decoded.partition(b":")[0]) or "-"
    return "-"
