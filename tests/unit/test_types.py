"""The ASGI aliases and the public exceptions are defined once (octo.types, octo.errors)."""

from __future__ import annotations

import ast
from pathlib import Path

import octo
from octo import errors

PACKAGE = Path(__file__).resolve().parents[2] / "octo"
ALIASES = {"Scope", "Message", "Receive", "Send", "ASGIApp"}


def test_the_asgi_aliases_are_defined_only_in_octo_types() -> None:
    defined = sorted(
        f"{path.relative_to(PACKAGE.parent)}: {target.id}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.parse(path.read_text()).body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name) and target.id in ALIASES)
    assert defined == [f"octo/types.py: {name}" for name in
                       ("ASGIApp", "Message", "Receive", "Scope", "Send")]


def test_one_client_disconnected_for_http_and_websocket() -> None:
    from octo.http.errors import ClientDisconnected
    from octo.ws.protocol import ClientDisconnectedWS

    assert octo.ClientDisconnected is errors.ClientDisconnected is ClientDisconnected
    assert octo.ClientDisconnectedWS is ClientDisconnectedWS
    assert issubclass(ClientDisconnectedWS, octo.ClientDisconnected)
    assert issubclass(octo.ClientDisconnected, OSError)  # ASGI spec 2.4: an OSError
