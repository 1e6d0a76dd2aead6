"""The octo runtime of the project: a request-scoped Profile built by an async factory on
the event loop, a singleton, and shared tables the test reads back."""

from __future__ import annotations

import asyncio
import os
import threading
from urllib.parse import parse_qs

import octo

rt = octo.Octo()
counts = rt.table("sync_counts", rows=64, columns={"builds": octo.Int, "dispatched": octo.Int,
                                                    "inside": octo.Int, "overlaps": octo.Int})


class AppSettings:
    """One per worker."""

    def __init__(self) -> None:
        self.pid = os.getpid()


class Profile:
    """One per request, from its query string."""

    def __init__(self, user: str, built_in_main_thread: bool) -> None:
        self.user = user
        self.built_in_main_thread = built_in_main_thread


async def current_profile() -> Profile:
    await asyncio.sleep(0)  # a coroutine: it runs on the worker's loop, never in the view
    op = octo.current_operation()
    assert op is not None and op.scope is not None
    query = parse_qs(op.scope["query_string"].decode())
    return Profile(query["user"][0], threading.current_thread() is threading.main_thread())


class ViewThread:
    """Built by a factory that asks, as a Django ORM query would, for the request's
    thread-sensitive sync thread: the very thread a sync view waits in."""

    def __init__(self, ident: int) -> None:
        self.ident = ident


async def view_thread() -> ViewThread:
    from asgiref.sync import sync_to_async

    return ViewThread(await sync_to_async(threading.get_ident, thread_sensitive=True)())


rt.container.singleton(AppSettings)
rt.container.scoped(Profile, current_profile)
rt.container.scoped(ViewThread, view_thread)
