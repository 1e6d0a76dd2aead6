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


def setup(level: str, access: bool, config_file: str | None = None) -> None:
    """Log to stderr at *level*; a --log-config file (dictConfig JSON or fileConfig INI)
    replaces the handlers and formats but not --log-level/--no-access-log."""
    numeric = TRACE if level == "trace" else getattr(logging, level.upper())
    if config_file is not None:
        _load_config(config_file)
        logging.getLogger("octo").setLevel(numeric)
        access_log.disabled = not access
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger("octo")
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    root.propagate = False
    access_log.disabled = not access


def format_access(client: str, method: str, target: str, version: str, status: int) -> str:
    return f'{escape(client)} - "{escape(method)} {escape(target)} HTTP/{version}" {status}'


def _load_config(path: str) -> None:
    import logging.config

    if path.endswith(".json"):
        import json

        with open(path) as fh:
            logging.config.dictConfig(json.load(fh))
    else:
        logging.config.fileConfig(path, disable_existing_loggers=False)
