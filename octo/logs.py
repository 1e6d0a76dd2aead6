"""Logging set-up and the access-log line (control characters escaped)."""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_log = logging.getLogger("octo.error")
access_log = logging.getLogger("octo.access")

# C0 and C1 controls and DEL become visible escapes so a client cannot forge log lines (a
# \r\n would start a fake entry) or send terminal escape sequences (0x1b, 0x9b) to whoever
# reads the log.
_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(0x20), *range(0x7F, 0xA0)]}
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
