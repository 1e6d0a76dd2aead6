"""``octo serve apps.django_sync.asgi:asgi``: the Django app, wrapped by the runtime."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.django_sync.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

from apps.django_sync.runtime import rt  # noqa: E402

asgi = rt.wrap(get_asgi_application())
