"""``octo serve apps.django_wsgi.wsgi:application``: a Django project served through its
WSGI handler (settings in code, no database)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import (  # noqa: E402
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path  # noqa: E402


def meta(request: HttpRequest) -> JsonResponse:
    """What the view sees of the request."""
    return JsonResponse({
        "path": request.path, "path_info": request.path_info, "script": request.META["SCRIPT_NAME"],
        "query": request.GET.dict(), "method": request.method,
        "headers": {k: v for k, v in request.META.items() if k.startswith("HTTP_")},
        "remote": request.META.get("REMOTE_ADDR"), "secure": request.is_secure(),
        "cookies": request.COOKIES, "pid": os.getpid(),
    })


def echo(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"size": len(request.body), "form": request.POST.dict(),
                         "type": request.content_type})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    count = int(request.GET.get("n", "3"))

    def parts() -> Iterator[bytes]:
        try:
            for i in range(count):
                yield f"part {i}\n".encode()
                if count > 100:
                    time.sleep(0.01)  # a slow producer: the client leaves meanwhile
        finally:
            print(f"APP: stream closed after asking {count}", file=sys.stderr, flush=True)

    return StreamingHttpResponse(parts(), content_type="text/plain")


def boom(request: HttpRequest) -> HttpResponse:
    raise ZeroDivisionError("a view error")


def hold(request: HttpRequest) -> HttpResponse:
    """Holds its thread until the file OCTO_TEST_RELEASE exists (another process makes it)."""
    print("APP: holding", file=sys.stderr, flush=True)
    give_up = time.monotonic() + 120  # only ends a test that hung
    while not os.path.exists(os.environ["OCTO_TEST_RELEASE"]) and time.monotonic() < give_up:
        time.sleep(0.01)
    return HttpResponse(b"released")


def file(request: HttpRequest) -> FileResponse:
    return FileResponse(open(os.environ["OCTO_TEST_FILE"], "rb"))  # noqa: SIM115


urlpatterns = [path("meta", meta), path("echo", echo), path("stream", stream),
               path("boom", boom), path("file", file), path("hold", hold),
               path("json", lambda request: JsonResponse({"hello": "world"}))]

application = get_wsgi_application()
__all__ = ["application"]
