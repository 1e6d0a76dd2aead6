"""``--env-file``: read a dotenv file into the environment before the app is imported.

The format is the common subset of dotenv files (what python-dotenv, docker compose and
uvicorn's ``--env-file`` all read alike): ``KEY=VALUE`` lines, an optional ``export``
prefix, blank lines and ``#`` comments, values in single quotes (literal) or double quotes
(``\\n``, ``\\t``, ``\\"`` and ``\\\\`` escapes), and `` #`` comments after unquoted values.
Variables already set in the environment win, as with python-dotenv's default.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class EnvFileError(ValueError):
    """A line of an env file that cannot be read; the message names the file and line."""


def parse(text: str, source: str = "<env>") -> dict[str, str]:
    """The variables *text* sets, in order; *source* names it in errors."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number].strip()
        number += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise EnvFileError(f"{source}:{number}: expected KEY=VALUE, got {line[:60]!r}")
        rest = rest.lstrip()
        start = number
        if rest[:1] in ("'", '"'):
            # A quoted value may span lines: read on until its closing quote.
            while _closing_quote(rest) == -1 and number < len(lines):
                rest += "\n" + lines[number]
                number += 1
            out[key] = _quoted(rest, f"{source}:{start}")
        else:
            out[key] = re.split(r"\s+#", rest, maxsplit=1)[0].rstrip()
    return out


def _closing_quote(rest: str) -> int:
    quote = rest[0]
    i = 1
    while i < len(rest):
        if rest[i] == "\\" and quote == '"':
            i += 2
            continue
        if rest[i] == quote:
            return i
        i += 1
    return -1


def _quoted(rest: str, where: str) -> str:
    end = _closing_quote(rest)
    if end == -1:
        raise EnvFileError(f"{where}: the value's closing {rest[0]} is missing")
    after = rest[end + 1:].strip()
    if after and not after.startswith("#"):
        raise EnvFileError(f"{where}: unexpected text after the quoted value: {after[:40]!r}")
    body = rest[1:end]
    if rest[0] == "'":
        return body
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body,
                  flags=re.DOTALL)


def load(path: str, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the variables of the file at *path* that are not set yet; return those set."""
    environ = os.environ if environ is None else environ
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise EnvFileError(f"--env-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise EnvFileError(f"--env-file {path}: not UTF-8 text") from None
    added = {key: value for key, value in parse(text, path).items() if key not in environ}
    environ.update(added)
    return added
