"""Building the dashboard's ASGI app and a uvicorn server for it.

The app state (inspector, flags, metrics registry) hangs off ``app.state``, never module
globals, so a process can serve several dashboards (the test suite does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from rq_sched.errors import RqSchedError, ValidationError
from rq_sched.inspector.inspector import Inspector
from rq_sched.web import api
from rq_sched.web.metrics import metrics, registry_for
from rq_sched.web.security import Guard

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
"""The UI's files: ``rq_sched/static`` is a link to the repository's top-level ``web/``."""
MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted (the API's bodies are a few dozen bytes)."""


def create_app(
    inspector: Inspector,
    *,
    auth_token: str | None = None,
    read_only: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    allow_ip_hosts: bool = False,
    sample_minutes: bool | None = None,
) -> Starlette:
    """The dashboard app: JSON API under ``/api``, ``/metrics``, and the UI at ``/``.

    Args:
        inspector: where the data comes from; the app does not close it.
        auth_token: when set, ``/api`` and ``/metrics`` require ``Authorization: Bearer <it>``.
        read_only: refuse every mutating request (403) and hide actions in the UI.
        allowed_hosts: Host header names accepted (e.g. loopback names when bound to
            127.0.0.1, against DNS rebinding); None accepts any.
        allow_ip_hosts: with ``allowed_hosts``, also accept any IP literal as Host (a
            rebinding attack needs a DNS name, so an IP literal is never one).
        sample_minutes: run the per-minute sampler for the hour/day charts while serving
            (``inspector.minutes``); by default on unless ``read_only`` (a read-only
            dashboard may use a Redis user that cannot write).

    Raises:
        ValidationError: ``auth_token`` is empty or blank.
        RqSchedError: the UI's static files are missing from the installation.
    """
    if auth_token is not None and not auth_token.strip():
        raise ValidationError(
            "auth_token is empty, which would leave the API open while claiming auth; pass a "
            "real token (e.g. from `python -c 'import secrets; print(secrets.token_urlsafe())'`) "
            "or None for no auth"
        )
    if not (STATIC_DIR / "index.html").is_file():
        raise RqSchedError(
            f"dashboard files not found in {STATIC_DIR}; reinstall rq_sched (they ship as "
            "package data linked from the repository's web/ directory)"
        )
    routes: list[BaseRoute] = [
        *api.routes(),
        Route("/metrics", metrics),
        Route("/", _index),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    guard = Middleware(
        Guard,
        auth_token=auth_token,
        read_only=read_only,
        allowed_hosts=allowed_hosts,
        allow_ip_hosts=allow_ip_hosts,
    )
    sampling = (not read_only) if sample_minutes is None else sample_minutes
    app = Starlette(
        routes=routes,
        lifespan=sampler_lifespan(inspector) if sampling else None,
        middleware=[guard],
        exception_handlers={
            RqSchedError: api.error_response,
            HTTPException: api.error_response,
            Exception: api.error_response,
        },
        max_body_size=MAX_BODY_BYTES,
    )
    # A trailing-slash redirect would turn "DELETE /api/queues/q/" (what a browser sends for a
    # task id "..") into "DELETE /api/queues/q": no redirects, an unknown path is a 404.
    app.router.redirect_slashes = False
    app.state.inspector = inspector
    app.state.read_only = read_only
    app.state.auth = auth_token is not None
    app.state.metrics_registry = registry_for(inspector)
    return app


def sampler_lifespan(
    inspector: Inspector,
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan that samples every queue once a minute while the app serves."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_sample_forever(inspector), name="rq-sched-minute-sampler")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan


async def _sample_forever(inspector: Inspector) -> None:
    while True:
        try:
            await run_in_threadpool(inspector.sample_minute)
        except RqSchedError as exc:  # Redis down or read-only: the charts show a gap
            log.warning("per-minute sample skipped: %s", exc)
        now = time.time()
        await asyncio.sleep(60 - now % 60 + 1)  # just after the next minute starts


async def _index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process hosting it: stop it by
    setting ``should_exit = True``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def make_server(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "warning",
    embedded: bool = True,
) -> uvicorn.Server:
    """A uvicorn server for ``app``: ``await server.serve()`` in an event loop, or
    ``server.run()`` in a thread. ``embedded=True`` leaves SIGINT/SIGTERM to the host process
    (set ``server.should_exit = True`` to stop); ``embedded=False`` stops on them itself."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
    return EmbeddedServer(config) if embedded else uvicorn.Server(config)
