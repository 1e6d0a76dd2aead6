"""Django in a long-lived worker.

Django's ASGI handler already sends ``request_started``/``request_finished`` (which reset the
query log and close connections past CONN_MAX_AGE or in error). What it leaves behind in
the thread that runs sync views is translation and timezone activation: a view that
activates "fr" leaves that thread in French for the next request that does not activate
anything. After each request octo deactivates both in that same thread and closes unusable
database connections, as Django's own signals do.
"""

from __future__ import annotations

from typing import Any


def is_django(app: Any) -> bool:
    try:
        from django.core.handlers.asgi import ASGIHandler
    except ImportError:
        return False
    return isinstance(app, ASGIHandler)


def adapt(app: Any) -> Any:
    return DjangoAdapter(app) if is_django(app) else app


def reset_request_state() -> None:
    from django.db import close_old_connections, reset_queries
    from django.utils import timezone, translation

    translation.deactivate()
    timezone.deactivate()
    reset_queries()
    close_old_connections()


class DjangoAdapter:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from asgiref.sync import sync_to_async

        try:
            await self.app(scope, receive, send)
        finally:
            # thread_sensitive: the same thread Django ran the sync view in.
            await sync_to_async(reset_request_state, thread_sensitive=True)()
