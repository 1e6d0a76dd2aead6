"""Views of the demo project; async, so concurrent requests interleave on the event loop."""

from __future__ import annotations

from django.contrib.auth import aauthenticate, alogin, alogout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from examples.django_project.demo.models import Profile


@require_GET
async def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from Django on octo!\n", content_type="text/plain; charset=utf-8")


@csrf_exempt  # a demo: lets scripts and tests log in without fetching a CSRF token first
@require_POST
async def login_view(request: HttpRequest) -> HttpResponse:
    username = request.POST.get("username", "")
    password = request.POST.get("password", "")
    user = await aauthenticate(request, username=username, password=password)
    if user is None:
        return JsonResponse({"ok": False, "error": "invalid username or password"}, status=401)
    await alogin(request, user)
    return JsonResponse({"ok": True, "username": user.get_username()})


@require_GET
async def whoami(request: HttpRequest) -> HttpResponse:
    """The session's user and their motto from the DB; ``n`` echoes the query parameter."""
    nonce = request.GET.get("n")
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"username": None, "n": nonce}, status=401)
    profile = await Profile.objects.filter(user_id=user.pk).afirst()
    return JsonResponse({
        "username": user.get_username(),
        "motto": profile.motto if profile is not None else None,
        "n": nonce,
    })


@csrf_exempt  # a demo, see login_view
@require_POST
async def logout_view(request: HttpRequest) -> HttpResponse:
    await alogout(request)
    return JsonResponse({"ok": True})
