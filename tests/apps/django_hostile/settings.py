"""Settings of the hostile-client Django project."""

from __future__ import annotations

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "x"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "apps.django_hostile.views"
DATABASES: dict[str, object] = {}
USE_TZ = True
