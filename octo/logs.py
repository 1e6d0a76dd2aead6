"""Logging set-up, the access-log line, and the one escaping helper for request data."""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_log = logging.getLogger("octo.error")
access_log = logging.getLogger("octo.access")

# Request data (path, method, headers, client address, reasons quoting them) reaches log
# lines only through escape(). C0 and C1 controls and DEL become visible escapes so a client
# cannot forge log lines (a \r\n would start a fake entry) or send terminal escape sequences
# (0x1b, 0x9b) to whoever reads the log; so do the Unicode line and paragraph separators,
# the bidirectional overrides (they reorder what a reader sees) and lone surrogates (they
# cannot be encoded, so the line would be lost).
_ESCAPES: dict[int, str] = {i: f"\\x{i:02x}" for i in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({i: f"\\u{i:04x}" for i in [0x2028, 0x2029, *range(0x202A, 0x202F),
                                               *range(0x2066, 0x206A),
                                               *range(0xD800, 0xE000)]})
_ESCAPES[ord("\\")] = "\\\\"
_ESCAPES[ord('"')] = '\\"'


def escape(value: object) -> str:
    """*value* (text, or bytes read as Latin-1) as safe text for one log line."""
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return text.translate(_ESCAPES)


def peer(client: object) -> str:
    """A client address (``(host, port)`` or None) for a log line, escaped: with proxy
    headers the host comes from X-Forwarded-For."""
    if isinstance(client, tuple) and len(client) == 2:
        return escape(f"{client[0]}:{client[1]}")
    return "-" if client is None else escape(client)


def setup(level: str, access: bool, config_file: str | None = None,
          app_dir: str | None = None) -> None:
    """Log to stderr at *level*; a --log-config file (dictConfig JSON or fileConfig INI)
    replaces the handlers and formats but not --log-level/--no-access-log. *app_dir* is on
    sys.path while the file is loaded, so it can name formatters and handlers of the app's
    own modules (``"()": "mylogging.JsonFormatter"``)."""
    numeric = TRACE if level == "trace" else getattr(logging, level.upper())
    if config_file is not None:
        if app_dir is not None:
            import os

            where = os.path.abspath(app_dir)
            if where not in sys.path:
                sys.path.insert(0, where)
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


def format_access(client: str, method: str, target: str, version: str, status: int | str,
                  ended: str | None = None, escaped: bool = False) -> str:
    """The default access line; *ended* says why a response was cut short (status "-" when
    none went out), e.g. ``... "GET /events HTTP/1.1" 200 (client disconnected)``;
    *escaped*: the request data was already passed through escape()."""
    if not escaped:
        client, method, target = escape(client), escape(method), escape(target)
    line = f'{client} - "{method} {target} HTTP/{version}" {status}'
    return f"{line} ({ended})" if ended else line


def _load_config(path: str) -> None:
    import logging.config

    if path.endswith(".json"):
        import json

        with open(path) as fh:
            logging.config.dictConfig(json.load(fh))
    else:
        logging.config.fileConfig(path, disable_existing_loggers=False)
