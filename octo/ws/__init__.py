"""ASGI WebSockets: one ASGI/I/O layer (protocol.py) over a choice of sans-I/O framing engines.

``--ws`` picks the engine: ``wsproto`` (wsproto_engine.py) or ``websockets``
(websockets_engine.py); ``auto`` takes the first of AUTO_ORDER that is installed; ``none``
serves upgrade requests as plain HTTP. This module only resolves the choice: it imports
neither library (each costs a worker megabytes of RSS), so a worker that never sees an
upgrade never loads them.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from octo.http.protocol import HttpProtocol, UpgradeHook
    from octo.types import Scope

BACKENDS = ("wsproto", "websockets")
# The --ws auto preference, best first. websockets leads on speed: in the echo benchmark
# (benchmarks/ws_echo.py, one worker on one core, the core saturated) octo moved ~1.55x the
# messages per second on it that it did on wsproto (median 81.7k vs 52.5k msg/s; wsproto's
# pure-Python frame parser costs ~15 us a message in memory, websockets' ~8). Both pass the
# whole Autobahn|Testsuite without a FAILED case; wsproto is a little stricter (it rejects
# invalid UTF-8 as the bytes of a frame arrive, websockets once the frame is whole).
AUTO_ORDER = ("websockets", "wsproto")


class BackendMissing(RuntimeError):
    """``--ws NAME`` names a backend whose package is not installed."""


def installed(backend: str) -> bool:
    """Whether the package behind *backend* can be imported (without importing it)."""
    return importlib.util.find_spec(backend) is not None


def resolve(choice: str) -> str | None:
    """The backend that ``--ws choice`` serves with, or None for no WebSocket support.

    Raises BackendMissing when a backend named explicitly is not installed; ``auto`` without
    either package is None (upgrades are then served as plain HTTP).
    """
    if choice == "none":
        return None
    if choice != "auto":
        if choice not in BACKENDS:
            raise ValueError(f"unknown WebSocket backend {choice!r}")
        if not installed(choice):
            raise BackendMissing(f"--ws {choice} needs the {choice} package "
                                 f"(pip install 'octo-server[{choice}]')")
        return choice
    return next((name for name in AUTO_ORDER if installed(name)), None)


def upgrade_hook(backend: str) -> UpgradeHook:
    """The HTTP layer's upgrade hook for *backend*. It imports the WebSocket layer on the
    first upgrade only, then installs the real hook so every later upgrade goes straight
    to it."""

    def first_upgrade(http: HttpProtocol, scope: Scope, rest: bytes) -> None:
        from octo.ws.protocol import upgrader

        hook = upgrader(backend)
        http.server.upgrade_handler = hook
        hook(http, scope, rest)

    return first_upgrade


__all__ = ["AUTO_ORDER", "BACKENDS", "BackendMissing", "installed", "resolve", "upgrade_hook"]
