"""``python -m examples.django_project [octo options]``: migrate, add demo users, collect the
static files, serve (the static files by octo itself, with --static)."""

from __future__ import annotations

import os
import sys

APP = "examples.django_project.asgi:application"


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("setup_demo")
    call_command("collectstatic", interactive=False, verbosity=0)
    from django.conf import settings

    sys.stdout.flush()
    sys.stderr.flush()
    static = f"{settings.STATIC_URL.rstrip('/')}={settings.STATIC_ROOT}"
    command = [sys.executable, "-m", "octo", "serve", APP, "--static", static, *argv]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main(sys.argv[1:])
