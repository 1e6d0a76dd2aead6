"""URL configuration: the async and the sync view."""

from __future__ import annotations

from django.urls import path

from django_bench import views

urlpatterns = [path("json", views.hello), path("json-sync", views.hello_sync)]
