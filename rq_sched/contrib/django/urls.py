"""The dashboard's URL patterns, for the project's URLconf::

    path("admin/queues/", include("rq_sched.contrib.django.urls")),

Mount it at a path that ends with ``/``; the page is served at that path and loads its files
and API relative to it.
"""

from __future__ import annotations

from django.urls import re_path

from rq_sched.contrib.django.dashboard import dashboard_view

app_name = "rq_sched"
urlpatterns = [re_path(r"^(?P<path>.*)$", dashboard_view, name="dashboard")]
