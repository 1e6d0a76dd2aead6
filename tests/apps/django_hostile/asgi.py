"""``octo serve apps.django_hostile.asgi:application``."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.django_hostile.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
