"""The Django project's ASGI application, settings configured in code (no settings module).

No database, no installed apps, one middleware (CommonMiddleware); an async view at
``/json`` and a sync one at ``/json-sync``. Django itself does not speak the lifespan
protocol, so ``application`` completes lifespan itself and passes HTTP on: every server then
starts it the same way, with no "lifespan unsupported" message in its log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bench_lifespan import lifespan
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only-not-secret",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF="django_bench.urls",
        INSTALLED_APPS=[],
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )

from django.core.asgi import get_asgi_application  # noqa: E402  (needs the settings above)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

django_app = get_asgi_application()


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "lifespan":
        await django_app(scope, receive, send)
        return
    await lifespan(receive, send)
