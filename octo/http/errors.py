"""The HTTP layer's exceptions, kept in a module of their own: they subclass OSError and
RuntimeError, which a compiled (mypyc) class cannot, so this module always stays Python."""

from __future__ import annotations

from octo.errors import ClientDisconnected  # public, defined once for HTTP and WebSocket


class FileShrank(OSError):
    """A file being sent ended before the length its response promised."""

    def __init__(self, sent: int, size: int) -> None:
        super().__init__(f"file shrank while being sent ({sent} of {size} bytes went out)")


class ProtocolMisuse(RuntimeError):
    """The application broke the ASGI message order; the message says how."""


class InvalidTransition(RuntimeError):
    """A connection-state change that ``states.TRANSITIONS`` does not allow."""


__all__ = ["ClientDisconnected", "FileShrank", "InvalidTransition", "ProtocolMisuse"]
