"""Logging set-up and the access-log line (control characters escaped)."""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_log = logging.getLogger("octo.error")
access_log = logging.getLogger("octo.access")

# Everything below 0x20 and DEL becomes a visible escape so a client cannot forge log lines
# (a path or header with \r\n would otherwise start a new, fake entry).
_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F]}
_ESCAPES[ord("\\")] = "\\\\"
_ESCAPES[ord('"')] = '\\"'


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def setup(level: str, access: bool) -> None:
    numeric = TRACE if level == "trace" else getattr(logging, level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger("octo")
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    root.propagate = False
    access_log.disabled = not access


def format_access(client: str, method: str, target: str, version: str, status: int) -> str:
    return f'{escape(client)} - "{escape(method)} {escape(target)} HTTP/{version}" {status}'
