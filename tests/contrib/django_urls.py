"""The test project's URLconf: the admin, and the dashboard mounted under it."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/queues/", include("rq_sched.contrib.django.urls")),
    path("admin/", admin.site.urls),
]
