"""URL configuration of the demo project."""

from __future__ import annotations

from django.urls import path

from examples.django_project.demo import views

urlpatterns = [
    path("hello", views.hello),
    path("login", views.login_view),
    path("whoami", views.whoami),
    path("logout", views.logout_view),
]
