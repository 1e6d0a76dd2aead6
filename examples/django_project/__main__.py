"""``python -m examples.django_project [octo options]``: migrate, add demo users, serve."""

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
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-m", "octo", "serve", APP, *argv]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main(sys.argv[1:])
