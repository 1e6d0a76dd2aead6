"""A finished awaitable: what ``send`` returns when a message needed no wait.

ASGI's ``send`` is awaited twice a hello request. As a coroutine it is an object made,
run, finished by raising StopIteration and freed each time; a plain call that does the
work and returns DONE skips all of that (about 2,000 instructions a request on 3.11, more
on 3.12, callgrind). DONE looks like a finished coroutine to whoever checks
(``collections.abc.Coroutine``: anyio's ``start_soon``, ``asyncio.create_task``), so an app
that hands ``send(message)`` on sees what it would with a coroutine.

This class is the reference. The compiled core uses its C twin, done.c (``done()`` picks),
which adds what Python cannot: an ``am_send`` slot, so that ``await DONE`` returns without
raising StopIteration at all.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any, Final, NoReturn


class Done:
    """An awaitable that has finished: awaiting it returns None at once."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator function: one that ends at once

    def send(self, value: object) -> NoReturn:
        raise StopIteration

    def throw(self, typ: Any, val: Any = None, tb: TracebackType | None = None) -> NoReturn:
        """Raises the exception here, as a finished coroutine does."""
        if isinstance(typ, BaseException):
            if val is not None:
                raise TypeError("instance exception may not have a separate value")
            exc = typ
        elif isinstance(typ, type) and issubclass(typ, BaseException):
            exc = val if isinstance(val, typ) else typ() if val is None else typ(val)
        else:
            raise TypeError("exceptions must be classes or instances deriving from "
                            "BaseException")
        raise exc.with_traceback(tb) if tb is not None else exc

    def close(self) -> None:
        """Nothing to close."""

    def __repr__(self) -> str:
        return "<octo DONE>"


_DONE: Final = Done()


def done() -> Coroutine[Any, Any, None]:
    """The finished awaitable of this core: the C one beside the compiled modules, else
    this module's Done."""
    try:
        from ._done import DONE
    except ImportError:
        return _DONE
    found: Coroutine[Any, Any, None] = DONE
    return found
