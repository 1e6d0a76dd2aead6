"""Two views returning the same JSON: ``hello`` is async, so no request pays a hop to a
thread (sync_to_async); ``hello_sync`` is the sync view most Django code is, which Django
runs in a thread of its own per request."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


async def hello(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"message": "Hello, world!"})


def hello_sync(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"message": "Hello, world!"})
