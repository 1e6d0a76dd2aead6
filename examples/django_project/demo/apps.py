from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "examples.django_project.demo"
    label = "demo"
    default_auto_field = "django.db.models.BigAutoField"
