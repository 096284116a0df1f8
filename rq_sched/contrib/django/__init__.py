"""rq_sched as a Django app: settings, enqueue on commit, management commands, the dashboard.

Needs the ``django`` extra (``pip install 'rq_sched[django]'``). Add the app and a settings
dict::

    INSTALLED_APPS = [..., "rq_sched.contrib.django"]
    RQ_SCHED = {"URL": "redis://localhost:6379/0", "ROUTER": "myapp.tasks:router"}

* :mod:`~rq_sched.contrib.django.conf`: the ``RQ_SCHED`` settings, read and checked once.
* :mod:`~rq_sched.contrib.django.producer`: :func:`get_client` and :func:`enqueue_on_commit`
  (a task enqueued inside a transaction is sent after the commit, never on rollback).
* ``manage.py rqsched_worker`` and ``manage.py rqsched_scheduler`` run a worker and the
  periodic scheduler with those settings (they are ``rq-sched worker`` / ``scheduler``).
* :mod:`~rq_sched.contrib.django.urls`: the dashboard for the URLconf, behind the admin
  login (staff users): ``path("admin/queues/", include("rq_sched.contrib.django.urls"))``.

Importing it needs Django installed but not configured settings.
"""

from __future__ import annotations

from rq_sched.contrib._optional import missing

try:
    import django  # noqa: F401 - only to fail early, naming the extra
except ImportError as exc:  # pragma: no cover - the test extra installs it
    raise ImportError(missing("django", extra="django", feature="rq_sched.contrib.django")) from exc

from rq_sched.contrib.django.producer import enqueue_on_commit, get_client, on_commit

__all__ = ["enqueue_on_commit", "get_client", "on_commit"]
