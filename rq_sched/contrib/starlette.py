"""Starlette and FastAPI: open a client (and optionally a worker) with the app, hand the client
to endpoints, and mount the dashboard behind the app's own authentication.

Needs the ``web`` extra (``pip install 'rq_sched[web]'``: starlette, uvicorn); FastAPI is
optional and yours (it is Starlette underneath)::

    rq = RqSched("redis://localhost:6379/0", worker=router)   # worker=None: producer only
    app = FastAPI(lifespan=rq.lifespan)
    app.mount("/queues", rq.dashboard(authorize=is_admin))

    @app.post("/signup")
    async def signup(client: AsyncClient = Depends(get_client)) -> dict[str, str]:
        info = await client.enqueue("user:signup", {"user": 42})
        return {"task": info.id}

* :meth:`RqSched.lifespan` opens an :class:`~rq_sched.AsyncClient` on startup and closes it on
  shutdown. With ``worker=`` it also serves that router in the app's event loop (small
  deployments: one process answers HTTP and runs tasks); shutdown stops it gracefully first,
  handing unfinished tasks back. A worker that fails while starting fails the app's startup.
* :func:`get_client` is the dependency (``Depends(get_client)`` in FastAPI, or call it with the
  request in a Starlette endpoint).
* :meth:`RqSched.dashboard` is the dashboard as an ASGI app to mount. ``authorize`` is your
  check, run on every request before the dashboard sees it (a session, ``request.user``
  from Starlette's AuthenticationMiddleware, a header set by your proxy); it is a required
  argument so that mounting a dashboard without any check is a visible decision
  (``authorize=None``). The dashboard's own rules (cross-site refusal, read-only, optional
  token) still apply under the mount.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from rq_sched.client import AsyncClient
from rq_sched.connection import aconnect
from rq_sched.contrib._optional import missing
from rq_sched.errors import RqSchedError, ValidationError
from rq_sched.inspector.inspector import Inspector
from rq_sched.keys import DEFAULT_NAMESPACE, check_namespace
from rq_sched.router import Router
from rq_sched.worker.config import ServerConfig
from rq_sched.worker.server import CONNECTION_OPTIONS, Server

try:
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import JSONResponse, Response
    from starlette.types import ASGIApp, Receive, Scope, Send

    from rq_sched.web.app import create_app, sampler_lifespan
except ImportError as exc:  # pragma: no cover - the test extra installs it
    raise ImportError(
        missing("starlette", extra="web", feature="rq_sched.contrib.starlette")
    ) from exc

__all__ = ["Authorize", "RqSched", "get_client"]

log = logging.getLogger(__name__)

Authorize = Callable[[Request], "bool | Response | Awaitable[bool | Response]"]
"""Your check for a dashboard request: True lets it through, False answers 403, a Response
(e.g. a redirect to your login page) is sent as it is. May be ``async``."""

STATE_KEY = "rq_sched_client"
WORKER_START_TIMEOUT = 30.0
"""How long the lifespan waits for an embedded worker to start before failing the startup."""


class RqSched:
    """rq_sched for one Starlette or FastAPI app; see the module docstring.

    Args:
        url: the Redis URL.
        namespace: the key namespace.
        cluster: the URL names a node of a Redis Cluster.
        worker: a router to serve in the app's process (None: enqueue only).
        server_config: that worker's configuration (queues, concurrency...); its namespace
            must be ``namespace``. Default: ``ServerConfig(namespace=namespace)``.
        client_options: more keyword options for the :class:`~rq_sched.AsyncClient`
            (``max_payload_bytes``, ``clock``).

    Raises:
        ValidationError: bad namespace, or a ``server_config`` for another namespace.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        cluster: bool = False,
        worker: Router | None = None,
        server_config: ServerConfig | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        check_namespace(namespace)
        if server_config is not None and server_config.namespace != namespace:
            raise ValidationError(
                f"server_config has namespace {server_config.namespace!r} but the client uses "
                f"{namespace!r}; the worker would never see the app's tasks"
            )
        if worker is not None and not isinstance(worker, Router):
            raise ValidationError(f"worker must be a rq_sched.Router, got {worker!r}")
        self.url = url
        self.namespace = namespace
        self.cluster = cluster
        self.worker = worker
        self.server_config = server_config or ServerConfig(namespace=namespace)
        self.client_options = dict(client_options or {})
        self.server: Server | None = None
        """The embedded worker while the app runs (None without ``worker=``)."""
        self._dashboards: list[tuple[Inspector, bool]] = []
        """Each mounted dashboard's inspector, and whether its chart sampler runs."""

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """Open the client (and start the worker) for the app's lifetime.

        Pass it as ``lifespan=rq.lifespan``, or enter it from your own lifespan with
        ``async with rq.lifespan(app): yield``.

        Raises:
            RqSchedError: the embedded worker stopped or hung while starting (an unreachable
                Redis does not count: the worker starts and its loops retry, logging why).
            ServerUnhealthyError: at shutdown, when the worker had stopped unhealthy.
        """
        client = AsyncClient.from_url(
            self.url, cluster=self.cluster, namespace=self.namespace, **self.client_options
        )
        setattr(app.state, STATE_KEY, client)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for inspector, sampling in self._dashboards:
                    stack.callback(inspector.close)
                    if sampling:
                        await stack.enter_async_context(sampler_lifespan(inspector)(app))
                if self.worker is not None:
                    await stack.enter_async_context(self._embedded_worker(self.worker))
                yield
        finally:
            setattr(app.state, STATE_KEY, None)
            await client.close()

    @contextlib.asynccontextmanager
    async def _embedded_worker(self, router: Router) -> AsyncIterator[None]:
        server = Server(
            aconnect(self.url, cluster=self.cluster, **CONNECTION_OPTIONS),
            config=self.server_config,
        )
        self.server = server
        job = asyncio.create_task(_serve(server, router), name=f"rq-sched-worker {server.id}")
        job.add_done_callback(_report_stop)
        try:
            await _wait_started(server, job)
            yield
        finally:
            server.stop()
            await job  # a graceful stop: unfinished tasks go back to their queues

    def dashboard(
        self,
        *,
        authorize: Authorize | None,
        read_only: bool = False,
        auth_token: str | None = None,
    ) -> ASGIApp:
        """The dashboard as an ASGI app to mount (``app.mount("/queues", rq.dashboard(...))``).

        Its per-minute chart sampler runs in :meth:`lifespan` unless ``read_only`` (as with
        ``rq-sched web``); the dashboard's Redis connections close with the app.

        Args:
            authorize: your check for every request (see :data:`Authorize`); None lets every
                request through to the dashboard's own rules.
            read_only: refuse every mutating request.
            auth_token: also require ``Authorization: Bearer <token>`` on the API.

        Raises:
            ValidationError: ``auth_token`` is blank.
        """
        inspector = Inspector.from_url(self.url, cluster=self.cluster, namespace=self.namespace)
        app = create_app(
            inspector, auth_token=auth_token, read_only=read_only, sample_minutes=False
        )
        # The sampler writes; a read-only dashboard may use a Redis user that cannot.
        self._dashboards.append((inspector, not read_only))
        return app if authorize is None else Authorized(app, authorize)


def get_client(request: HTTPConnection) -> AsyncClient:
    """The app's :class:`~rq_sched.AsyncClient` (the dependency: ``Depends(get_client)``).

    Raises:
        RqSchedError: the app's lifespan is not :meth:`RqSched.lifespan` (or is not running).
    """
    client = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(client, AsyncClient):
        raise RqSchedError(
            "no rq_sched client on this app: pass lifespan=rq.lifespan to the app (or enter "
            "rq.lifespan(app) in your own lifespan), and call get_client on that app's requests"
        )
    return client


class Authorized:
    """ASGI wrapper that runs an :data:`Authorize` check before the wrapped app."""

    def __init__(self, app: ASGIApp, authorize: Authorize) -> None:
        self.app = app
        self.authorize = authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        verdict = self.authorize(Request(scope, receive))
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is True:
            await self.app(scope, receive, send)
            return
        if not isinstance(verdict, Response):
            verdict = JSONResponse({"error": "not allowed to use the task dashboard"}, 403)
        await verdict(scope, receive, send)


async def _serve(server: Server, router: Router) -> None:
    try:
        await server.serve(router)
    finally:
        await server.redis.aclose()


async def _wait_started(server: Server, job: asyncio.Task[None]) -> None:
    # Server.started is a threading.Event (it serves callers in other threads too); it is set
    # within the first few loop iterations of serve(), so a short bounded poll is enough.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WORKER_START_TIMEOUT
    while not server.started.is_set():
        if job.done():
            job.result()  # raises what made serve() fail
            raise RqSchedError("the embedded rq_sched worker stopped while starting")
        if loop.time() > deadline:
            server.stop()
            raise RqSchedError(
                f"the embedded rq_sched worker did not start within {WORKER_START_TIMEOUT:g}s"
            )
        await asyncio.sleep(0.01)


def _report_stop(job: asyncio.Task[None]) -> None:
    if not job.cancelled() and job.exception() is not None:
        log.error("the embedded rq_sched worker stopped: %s", job.exception())
