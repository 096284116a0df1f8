"""Starlette / FastAPI: a FastAPI app served by a real uvicorn enqueues from an endpoint and its
embedded worker runs the task; the dashboard mounted in the app answers only behind the app's
own check, keeps its own rules under the mount, and serves its UI from the prefix."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
import pytest
import redis
import uvicorn
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from rq_sched import AsyncClient, Client, Router, RqSchedError, ServerConfig, Task, ValidationError
from rq_sched.contrib.starlette import RqSched, get_client
from rq_sched.local_redis import free_port
from rq_sched.web.app import EmbeddedServer
from tests.worker_support import Recorder, queue_state, wait_until


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL.
    On exit the server shuts down (running the app's lifespan shutdown) within a bound."""
    port = free_port()
    server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started or errors or not thread.is_alive(), what="uvicorn started")
    assert server.started, f"uvicorn did not start: {errors}"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "uvicorn did not stop within 30s"
        assert not errors, errors


def test_an_endpoint_enqueues_and_the_embedded_worker_runs_the_task(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    seen = Recorder()

    @router.task("user:signup")
    async def on_signup(task: Task) -> None:
        seen.add((task.payload, task.queue, task.id))

    rq = RqSched(
        redis_url,
        namespace=namespace,
        worker=router,
        server_config=ServerConfig(
            namespace=namespace, queues={"web": 1}, lease_duration=2.0, shutdown_timeout=2.0
        ),
    )
    app = FastAPI(lifespan=rq.lifespan)

    @app.post("/signup/{user_id}")
    async def signup(
        user_id: int, client: Annotated[AsyncClient, Depends(get_client)]
    ) -> dict[str, str]:
        info = await client.enqueue("user:signup", {"user": user_id}, queue="web")
        return {"task": info.id}

    with serving(app) as base:
        assert rq.server is not None and rq.server.status == "running"
        reply = httpx.post(f"{base}/signup/42", timeout=10)
        assert reply.status_code == 200, reply.text
        ((payload, queue, task_id),) = seen.wait_for(1)
    assert (payload, queue, task_id) == ({"user": 42}, "web", reply.json()["task"])
    assert rq.server.status == "stopped"  # the app's shutdown stopped the worker gracefully
    assert queue_state(r, namespace, "web")["msg"] == 0
    with pytest.raises(RqSchedError, match="lifespan"):
        get_client(Request({"type": "http", "app": app}))


def test_a_producer_only_app_enqueues_without_a_worker(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    rq = RqSched(redis_url, namespace=namespace)

    async def enqueue(request: Request) -> Response:
        info = await get_client(request).enqueue("report:build", {"n": 1})
        return JSONResponse({"task": info.id})

    app = Starlette(routes=[Route("/build", enqueue, methods=["POST"])], lifespan=rq.lifespan)
    with serving(app) as base:
        reply = httpx.post(f"{base}/build", timeout=10)
    assert reply.status_code == 200, reply.text
    assert rq.server is None
    assert queue_state(r, namespace)["pending"] == 1


def test_a_worker_config_for_another_namespace_is_refused(redis_url: str) -> None:
    with pytest.raises(ValidationError, match="never see the app's tasks"):
        RqSched(redis_url, namespace="a", server_config=ServerConfig(namespace="b"))


def is_admin(request: Request) -> bool | Response:
    """The app's own authentication, as a test stands it in: a header a proxy would set."""
    user = request.headers.get("x-user")
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return user == "admin"


def test_the_mounted_dashboard_answers_only_behind_the_apps_own_check(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    Client(r, namespace=namespace).enqueue("report:build", None, queue="reports")
    rq = RqSched(redis_url, namespace=namespace)
    app = FastAPI(lifespan=rq.lifespan)
    app.mount("/ops/queues", rq.dashboard(authorize=is_admin))
    admin = {"x-user": "admin"}
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as http:
        anonymous = http.get("/ops/queues/api/queues")
        assert (anonymous.status_code, anonymous.headers["location"]) == (303, "/login")
        assert http.get("/ops/queues/api/queues", headers={"x-user": "eve"}).status_code == 403
        queues = http.get("/ops/queues/api/queues", headers=admin)
        assert queues.status_code == 200, queues.text
        assert [q["info"]["queue"] for q in queues.json()] == ["reports"]
        # The UI loads its files and calls the API relative to the mount point.
        page = http.get("/ops/queues/", headers=admin)
        assert page.status_code == 200 and 'src="static/app.js"' in page.text
        assert http.get("/ops/queues/static/app.js", headers=admin).status_code == 200
        # The dashboard's own cross-site rule still holds under the mount.
        refused = http.post("/ops/queues/api/queues/reports/pause", headers=admin)
        assert refused.status_code == 403 and "cross-site" in refused.json()["error"]
        paused = http.post(
            "/ops/queues/api/queues/reports/pause", headers={**admin, "x-requested-with": "t"}
        )
        assert paused.status_code == 200, paused.text
    assert r.exists(f"{namespace}:{{reports}}:paused")


def test_the_dashboards_token_and_read_only_mode_hold_under_a_mount(
    redis_url: str, namespace: str
) -> None:
    rq = RqSched(redis_url, namespace=namespace)
    app = Starlette(lifespan=rq.lifespan)
    app.mount("/q", rq.dashboard(authorize=None, auth_token="s3cret", read_only=True))
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as http:
        # Before the fix, the guard looked at "/q/api/..." and let it through without a token.
        assert http.get("/q/api/queues").status_code == 401
        assert http.get("/q/metrics").status_code == 401
        bearer = {"authorization": "Bearer s3cret", "x-requested-with": "t"}
        assert http.get("/q/api/queues", headers=bearer).status_code == 200
        assert http.post("/q/api/queues/default/pause", headers=bearer).status_code == 403
