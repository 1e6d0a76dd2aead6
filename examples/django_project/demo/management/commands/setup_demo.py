"""``manage setup_demo``: create the schema and the demo users with their profiles."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from examples.django_project.demo.models import Profile

DEMO_USERS = {
    "alice": ("alice-password", "alice: curiouser and curiouser"),
    "bob": ("bob-password", "bob: can we fix it? yes we can"),
}


class Command(BaseCommand):
    help = "Apply migrations and create the demo users (alice, bob) if they are absent."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        user_model = get_user_model()
        for username, (password, motto) in DEMO_USERS.items():
            user = user_model.objects.filter(username=username).first()
            if user is None:
                user = user_model.objects.create_user(username=username, password=password)
                self.stdout.write(f"created demo user {username!r}")
            Profile.objects.update_or_create(user=user, defaults={"motto": motto})
        self.stdout.write("demo database ready")
