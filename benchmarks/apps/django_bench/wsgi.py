"""The same Django project's WSGI application (``get_wsgi_application()``): how projects
are served under gunicorn, and by octo (a WSGI app is detected and run in a thread)."""

from __future__ import annotations

from django.core.wsgi import get_wsgi_application

import django_bench.asgi  # noqa: F401  (configures the settings)

application = get_wsgi_application()
