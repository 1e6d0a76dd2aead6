"""Settings for the demo project (not for production: fixed secret key, demo passwords)."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "octo-example-insecure-secret-key-do-not-use-in-production"
DEBUG = os.environ.get("EXAMPLE_DJANGO_DEBUG", "") in ("1", "true", "yes", "on")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "examples.django_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": [
            "django.template.context_processors.request",
            "django.contrib.auth.context_processors.auth",
            "django.contrib.messages.context_processors.messages",
        ]},
    }
]

# The admin's CSS and JavaScript: `collectstatic` copies them into STATIC_ROOT (next to
# this module, git-ignored, unless EXAMPLE_DJANGO_STATIC says where), and octo serves that
# directory itself with --static /static=STATIC_ROOT (see __main__.py): Django never sees
# those requests.
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("EXAMPLE_DJANGO_STATIC") or str(BASE_DIR / "collected_static")

ROOT_URLCONF = "examples.django_project.urls"
ASGI_APPLICATION = "examples.django_project.asgi.application"

# The database file lives next to this module (git-ignored: *.sqlite3) unless
# EXAMPLE_DJANGO_DB points somewhere writable, e.g. a temporary directory in tests.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DJANGO_DB") or str(BASE_DIR / "db.sqlite3"),
        "OPTIONS": {"timeout": 20},
    }
}

SESSION_ENGINE = "django.contrib.sessions.backends.db"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["stderr"], "level": "WARNING"}},
}
