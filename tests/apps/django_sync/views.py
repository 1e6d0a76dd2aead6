"""Sync views (Django runs them in threads) using each sync entry point, and views that
misuse the entry points on purpose."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.utils import timezone, translation

import octo
from apps.django_sync.runtime import AppSettings, Profile, ViewThread, counts, rt
from apps.django_sync.tasks import note, square


def _greeting(user: str) -> str:
    counts.incr(user, "builds")  # how many times remember_sync computed it, all workers
    return f"hello {user}"


def whoami(request: HttpRequest) -> JsonResponse:
    user = request.GET["user"]
    profile = octo.resolve_sync(Profile)
    settings = octo.resolve_sync(AppSettings)
    greeting = rt.cache.remember_sync(f"greeting:{user}", 60, lambda: _greeting(user))
    with rt.lock(f"user:{user}").block(30):
        if counts.incr(user, "inside") != 1:
            counts.incr(user, "overlaps")
        counts.decr(user, "inside")
    n = int(request.GET["n"])
    holder_pid, task_pid, squared = rt.tasks.run_sync(square, n, timeout=60)
    rt.tasks.dispatch_sync(note, user)
    return JsonResponse({
        "user": profile.user, "asked": user, "same": profile is octo.resolve_sync(Profile),
        "same_via_async_to_sync": async_to_sync(octo.resolve)(Profile) is profile,
        "factory_used_view_thread": octo.resolve_sync(ViewThread).ident == threading.get_ident(),
        "view_in_main_thread": threading.current_thread() is threading.main_thread(),
        "factory_in_main_thread": profile.built_in_main_thread,
        "settings_pid": settings.pid, "pid": os.getpid(), "greeting": greeting,
        "squared": squared, "task_pid": task_pid, "task_settings_pid": holder_pid,
    })


def _errors(calls: dict[str, Callable[[], Any]]) -> dict[str, str]:
    out = {}
    for name, call in calls.items():
        try:
            call()
        except (RuntimeError, octo.NotAwaited) as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
        else:
            out[name] = "no error"
    return out


def misuse_sync(request: HttpRequest) -> JsonResponse:
    """Async entry points called without await from a sync view, their results used."""
    rt.tasks.dispatch(note, "nobody")  # dropped unawaited: logged, nothing dispatched
    return JsonResponse(_errors({
        "resolve": lambda: octo.resolve(Profile).user,
        "remember": lambda: rt.cache.remember("k", 10, lambda: 1).bit_length(),
        "run": lambda: rt.tasks.run(square, 2).count(4),
    }))


async def misuse_async(request: HttpRequest) -> JsonResponse:
    """Sync entry points called on the event loop's thread, from an async view."""
    return JsonResponse(_errors({
        "resolve_sync": lambda: octo.resolve_sync(Profile),
        "remember_sync": lambda: rt.cache.remember_sync("k", 10, lambda: 1),
        "block": lambda: rt.lock("x").block(1).__enter__(),
        "run_sync": lambda: rt.tasks.run_sync(square, 2),
        "dispatch_sync": lambda: rt.tasks.dispatch_sync(note, "nobody"),
    }))


def tally(request: HttpRequest) -> JsonResponse:
    user = request.GET["user"]
    return JsonResponse({column: counts.get(user, column) or 0
                         for column in ("builds", "dispatched", "overlaps")})


def activate(request: HttpRequest) -> JsonResponse:
    """Leaves French and Paris time active, as a view that forgets to deactivate does."""
    translation.activate("fr")
    timezone.activate("Europe/Paris")
    return JsonResponse({"thread": threading.get_ident(), "pid": os.getpid()})


def language(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"language": translation.get_language(),
                         "timezone": timezone.get_current_timezone_name(),
                         "thread": threading.get_ident(), "pid": os.getpid()})


_thread_state = threading.local()


def sync_thread(request: HttpRequest) -> JsonResponse:
    """How many requests this view's thread has served (a thread-local count): 1 each time
    when every request gets a new thread."""
    _thread_state.served = getattr(_thread_state, "served", 0) + 1
    return JsonResponse({"served": _thread_state.served, "thread": threading.get_ident(),
                         "pid": os.getpid()})


urlpatterns = [
    path("sync-thread", sync_thread),
    path("activate", activate),
    path("language", language),
    path("whoami", whoami),
    path("misuse-sync", misuse_sync),
    path("misuse-async", misuse_async),
    path("tally", tally),
]
