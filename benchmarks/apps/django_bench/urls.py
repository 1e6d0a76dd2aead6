"""URL configuration: one route."""

from __future__ import annotations

from django.urls import path

from django_bench import views

urlpatterns = [path("json", views.hello)]
