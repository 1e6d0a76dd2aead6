"""One async view, so no request pays a hop to a thread (sync_to_async)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


async def hello(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"message": "Hello, world!"})
