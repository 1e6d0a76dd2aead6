from __future__ import annotations

from django.conf import settings
from django.db import models


class Profile(models.Model):
    """One row per user with a value only that user should ever see."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="profile")
    motto = models.CharField(max_length=200)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.motto}"
