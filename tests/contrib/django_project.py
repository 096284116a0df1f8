"""The settings of a Django project for the tests, configured in-process (``settings.configure``)
or written as a settings module for a ``manage.py``-style child process; its URLconf is
``tests.contrib.django_urls``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def settings_for(
    *, redis_url: str, namespace: str, database: Path, **rq_sched: Any
) -> dict[str, Any]:
    """Settings of a small project with the admin, on SQLite, using rq_sched."""
    return {
        "DEBUG": False,
        "SECRET_KEY": "rq-sched-tests-only",
        "ALLOWED_HOSTS": ["testserver", "127.0.0.1"],
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.admin",
            "rq_sched.contrib.django",
        ],
        "MIDDLEWARE": [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        "ROOT_URLCONF": "tests.contrib.django_urls",
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}},
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        "USE_TZ": True,
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "RQ_SCHED": {"URL": redis_url, "NAMESPACE": namespace, **rq_sched},
    }
