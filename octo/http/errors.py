"""The HTTP layer's exceptions, kept in a module of their own: they subclass OSError and
RuntimeError, which a compiled (mypyc) class cannot, so this module always stays Python."""

from __future__ import annotations


class ClientDisconnected(OSError):
    """A write found the client gone. Inside the server only: HTTP scopes declare ASGI
    spec 2.3, so the app's ``send`` after a disconnect is a no-op (see
    RequestCycle._swallow), never this."""


class FileShrank(OSError):
    """A file being sent ended before the length its response promised."""

    def __init__(self, sent: int, size: int) -> None:
        super().__init__(f"file shrank while being sent ({sent} of {size} bytes went out)")


class ProtocolMisuse(RuntimeError):
    """The application broke the ASGI message order; the message says how."""


class InvalidTransition(RuntimeError):
    """A connection-state change that ``states.TRANSITIONS`` does not allow."""
