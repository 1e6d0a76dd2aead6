"""Task functions (sync: they run in a task worker's thread and use resolve_sync there)."""

from __future__ import annotations

import os

import octo
from apps.django_sync.runtime import AppSettings, counts


def square(n: int) -> list[int]:
    settings = octo.resolve_sync(AppSettings)  # the task worker's singleton
    return [settings.pid, os.getpid(), n * n]


def note(user: str) -> None:
    counts.incr(user, "dispatched")
