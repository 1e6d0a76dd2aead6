"""The access-log line of a WebSocket handshake, in the format HTTP requests use.

A handshake is answered once (101, or the denial's status) and then the connection is no
longer HTTP, so the line is written at that answer: the default line gets ``(websocket)``
at its end, as before; ``--access-log-format`` fills gunicorn's atoms from the upgrade
request, and ``--access-log-json`` (and a ``--log-config`` formatter, through ``extra``)
gets the HTTP fields plus ``"websocket": true``. The HTTP layer's :class:`~octo.http.access.
AccessLog` does the formatting; :class:`Handshake` gives it what it reads of a request cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from octo.http.access import AccessLog, json_line
from octo.logs import access_log, format_access

if TYPE_CHECKING:
    from octo.http.cycle import RequestCycle

Headers = Iterable[tuple[bytes, bytes]]


class Handshake:
    """The attributes of a request cycle the access log reads, for a handshake."""

    __slots__ = ("scope", "status", "began", "request_id", "headers", "sent_bytes",
                 "head_sent", "complete", "ended")

    def __init__(self, scope: dict[str, Any], status: int, began: float,
                 headers: Headers) -> None:
        self.scope = {**scope, "method": "GET"}  # a WebSocket scope has no method
        self.status = status
        self.began = began
        state = scope.get("state")
        self.request_id: str | None = state.get("request_id") if isinstance(state, dict) \
            else None
        self.headers = list(headers)
        self.sent_bytes = 0  # the 101 head only: no body
        self.head_sent = True
        self.complete = True
        self.ended: str | None = None


def log_handshake(access: AccessLog, scope: dict[str, Any], status: int, began: float,
                  headers: Headers = ()) -> None:
    """Write the access line of a handshake answered with *status*; *began*: the upgrade
    request's start (``octo.stats.clock``), *headers*: the response's."""
    if not access.structured:  # the default line on the default handler: no fields
        client = scope["client"]
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        access_log.info(format_access(f"{client[0]}:{client[1]}" if client else "-", "GET",
                                      target, scope["http_version"], status) + " (websocket)")
        return
    record = Handshake(scope, status, began, headers)
    cycle = cast("RequestCycle", record)  # what AccessLog reads of one, see Handshake
    fields = access.fields(cycle)
    fields["websocket"] = True
    if access.as_json:
        message = json_line(fields)
    elif access.template is not None:
        message = access.template % {key: atom(cycle, fields) for key, atom in access.atoms}
    else:
        message = format_access(fields["client"], "GET", fields["target"],
                                fields["http_version"], status, escaped=True) + " (websocket)"
    access_log.info(message, extra=fields)
