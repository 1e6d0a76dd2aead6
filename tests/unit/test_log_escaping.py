"""Request data reaches log lines only through octo.logs.escape (or peer/format_access).

The first test walks every logging call in the octo package: an argument that mentions a
request-derived name (the scope, its path/method/headers, the client address, a
RequestError's reason, ...) must be wrapped in one of the escaping helpers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from octo.logs import escape, format_access, peer

PACKAGE = Path(__file__).resolve().parents[2] / "octo"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
# Names that hold, or are read from, what a client sent.
REQUEST_NAMES = {"scope", "client", "path", "raw_path", "method", "headers", "url", "target",
                 "query_string", "reason", "trailers"}
HELPERS = {"escape", "peer", "format_access"}
# Same names, other meanings: (module, name) -> what it is there.
NOT_REQUEST_DATA = {
    ("octo/master/arbiter.py", "target"): "the number of workers wanted",
    ("octo/master/arbiter.py", "reason"): "why a worker is recycled",
    ("octo/runtime/table.py", "path"): "a table's file",
    ("octo/master/arbiter.py", "path"): "the server's runtime directory",
    ("octo/master/control.py", "path"): "the control socket's file",
    ("octo/master/metrics.py", "url"): "the --metrics listener's own address",
}


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _is_logging_call(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    owner = node.func.value
    name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
    return node.func.attr in LEVELS and (name.endswith("_log") or name in ("logger", "log"))


def _mentions_request_data(node: ast.AST, wrapped: bool) -> list[tuple[str, bool]]:
    """Every request-derived name under *node*, with whether a helper wraps it."""
    if isinstance(node, ast.Call) and _call_name(node) in HELPERS:
        wrapped = True
    found = []
    if isinstance(node, ast.Name) and node.id in REQUEST_NAMES:
        found.append((node.id, wrapped))
    elif isinstance(node, ast.Attribute) and node.attr in REQUEST_NAMES:
        found.append((node.attr, wrapped))
    for child in ast.iter_child_nodes(node):
        found += _mentions_request_data(child, wrapped)
    return found


def _logging_calls() -> list[tuple[str, int, ast.Call]]:
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if _is_logging_call(node):
                assert isinstance(node, ast.Call)
                calls.append((str(path.relative_to(PACKAGE.parent)), node.lineno, node))
    return calls


def test_every_log_call_with_request_data_escapes_it() -> None:
    calls = _logging_calls()
    carrying: set[str] = set()
    unescaped = []
    for where, line, call in calls:
        args = call.args[1:] if call.func.attr == "log" else call.args  # type: ignore[attr-defined]
        for arg in [*args, *(k.value for k in call.keywords)]:
            for name, wrapped in _mentions_request_data(arg, False):
                if (where, name) in NOT_REQUEST_DATA:
                    continue
                carrying.add(where)
                if not wrapped:
                    unescaped.append(f"{where}:{line}: {name} is logged unescaped")
    assert unescaped == []
    # The walk really sees the request-data sites (it would pass vacuously otherwise).
    assert len(calls) > 50
    assert {"octo/http/protocol.py", "octo/http/cycle.py", "octo/ws/access.py"} <= carrying


def test_the_walk_flags_an_unescaped_site() -> None:
    tree = ast.parse('error_log.warning("%s %s slow", scope["method"], escape(scope["path"]))')
    call = next(node for node in ast.walk(tree) if _is_logging_call(node))
    assert isinstance(call, ast.Call)
    found = [pair for arg in call.args for pair in _mentions_request_data(arg, False)]
    assert found == [("scope", False), ("scope", True)]


@pytest.mark.parametrize("raw, shown", [
    ("a\r\nb", "a\\x0d\\x0ab"), ("\x1b[31m", "\\x1b[31m"), ("\x9b2J", "\\x9b2J"),
    ("tab\there", "tab\\x09here"), ("\x7f", "\\x7f"), ('q"uote\\', 'q\\"uote\\\\'),
    ("\u2028\u2029", "\\u2028\\u2029"), ("\u202eevil", "\\u202eevil"),
    ("\udcff", "\\udcff"), ("caf\u00e9 \ufffd", "caf\u00e9 \ufffd"),
    (b"GET /\r\n", "GET /\\x0d\\x0a"), (b"\x9b\xff", "\\x9b\u00ff"),
])
def test_escape_makes_one_visible_line(raw: str | bytes, shown: str) -> None:
    assert escape(raw) == shown
    escape(raw).encode("utf-8")  # strict: always encodable


def test_peer_and_access_line() -> None:
    assert peer(("10.0.0.1\r\nX", 5)) == "10.0.0.1\\x0d\\x0aX:5"
    assert peer(None) == "-"
    line = format_access("1.2.3.4:5", "GET", "/a\r\n\u2028", "1.1", 200)
    assert line == '1.2.3.4:5 - "GET /a\\x0d\\x0a\\u2028 HTTP/1.1" 200'
