"""The dashboard inside a Django project, behind the admin login.

The dashboard is an ASGI app; :func:`dashboard_view` is an async Django view that hands it
each request in-process (no second server, no proxy) and returns its response. It works under
WSGI and ASGI alike, since Django runs async views under both. Only active staff users get
through (the bar of the Django admin), and only superusers may change anything (pause,
delete, cancel, run: a 403 for other staff); anyone else is sent to the admin login page, and
API calls get a 403 instead of a redirect. Include it in the URLconf::

    path("admin/queues/", include("rq_sched.contrib.django.urls")),

The view is exempt from Django's CSRF middleware because the dashboard enforces its own
cross-site rules on every mutating call (same-origin ``Sec-Fetch-Site`` / ``Origin``, and an
``X-Requested-With`` header or a JSON body, which a cross-site form cannot send); it keeps
them under this mount. The per-minute charts fill only while some process samples them
(``rq-sched web`` or a Starlette app with :meth:`RqSched.dashboard`); everything else is
live.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import csrf_exempt

from rq_sched.contrib.django.conf import settings
from rq_sched.inspector.inspector import Inspector
from rq_sched.web.app import create_app
from rq_sched.web.security import MUTATING

__all__ = ["dashboard_view"]

_apps: dict[tuple[str, str, bool, bool], Any] = {}
_apps_lock = threading.Lock()


def _dashboard() -> Any:
    conf = settings()
    key = (conf.url, conf.namespace, conf.cluster, conf.dashboard_read_only)
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            inspector = Inspector.from_url(conf.url, cluster=conf.cluster, namespace=conf.namespace)
            app = _apps[key] = create_app(
                inspector, read_only=conf.dashboard_read_only, sample_minutes=False
            )
    return app


@csrf_exempt
async def dashboard_view(request: HttpRequest, path: str = "") -> HttpResponseBase:
    """Serve the dashboard's page, files and API for staff users; see the module docstring."""
    user = await request.auser()
    if not (user.is_active and getattr(user, "is_staff", False)):
        if path.startswith("api/"):
            return JsonResponse({"error": "sign in to the Django admin as staff"}, status=403)
        try:
            login = reverse("admin:login")
        except NoReverseMatch:
            login = None  # redirect_to_login falls back to settings.LOGIN_URL
        return redirect_to_login(request.get_full_path(), login)
    if request.method in MUTATING and not getattr(user, "is_superuser", False):
        # Staff may look; pausing queues, deleting, cancelling or running tasks is a
        # superuser's, as Django's admin gives staff no permission it was not granted.
        return JsonResponse(
            {"error": "changing queues and tasks needs a superuser; staff accounts may look"},
            status=403,
        )
    return await _call(_dashboard(), request, path)


async def _call(app: Any, request: HttpRequest, path: str) -> HttpResponse:
    """Run one HTTP request through the ASGI ``app`` and collect its response."""
    full_path = request.path
    mount = full_path[: len(full_path) - len(path)].rstrip("/") if path else full_path.rstrip("/")
    body = request.body
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method or "GET",
        "scheme": request.scheme or "http",
        "root_path": mount,
        "path": full_path,
        "raw_path": full_path.encode("utf-8"),
        "query_string": request.META.get("QUERY_STRING", "").encode("latin-1"),
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.items()
        ],
        "client": (request.META.get("REMOTE_ADDR") or "", 0),
        "server": (request.get_host(), int(request.get_port() or 0)),
    }
    delivered = False
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        # A response may listen for the client going away while it streams (Starlette's
        # file responses do): the client stays until the whole response was sent.
        await finished.wait()
        return {"type": "http.disconnect"}

    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    response = HttpResponse(b"".join(chunks), status=start.get("status", 500))
    for name, value in start.get("headers", []):
        response.headers[name.decode("latin-1")] = value.decode("latin-1")
    return response
