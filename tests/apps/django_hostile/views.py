"""Views that show what Django makes of a request once it has read the body."""

from __future__ import annotations

import sys

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def meta(request: HttpRequest) -> JsonResponse:
    """The body's size and every HTTP_* entry of request.META (the request's headers)."""
    size = len(request.body)
    print(f"DJANGO: meta view ran ({size} bytes)", file=sys.stderr, flush=True)
    return JsonResponse({"body": size, "host": request.get_host(),
                         "meta": {k: v for k, v in request.META.items()
                                  if k.startswith("HTTP_")}})


urlpatterns = [path("meta", meta), path("", lambda request: JsonResponse({"ok": True}))]
