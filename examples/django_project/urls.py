"""URL configuration of the demo project."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from examples.django_project.demo import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("hello", views.hello),
    path("login", views.login_view),
    path("whoami", views.whoami),
    path("logout", views.logout_view),
]
