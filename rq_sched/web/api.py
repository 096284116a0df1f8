"""The dashboard's REST API under ``/api``: thin handlers over the inspector.

Inspector calls are blocking Redis round trips, so every handler runs them in Starlette's
thread pool. Errors come back as ``{"error": "..."}`` with a status that says what kind:
400 bad input, 404 no such task or queue, 409 the task's state does not allow the action,
503 Redis unreachable. Auth, read-only mode and cross-site checks live in ``security``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rq_sched.errors import (
    CorruptTaskError,
    RedisUnavailableError,
    RqSchedError,
    TaskNotFoundError,
    TaskStateError,
    ValidationError,
)
from rq_sched.inspector.inspector import Inspector
from rq_sched.inspector.models import jsonable, task_json
from rq_sched.models import TaskState

log = logging.getLogger(__name__)
T = TypeVar("T")

TASK_ACTIONS = ("run", "archive", "cancel")
"""Actions posted to /api/queues/{queue}/tasks/{id}/{action} (delete is DELETE on the task)."""


def _inspector(request: Request) -> Inspector:
    inspector: Inspector = request.app.state.inspector
    return inspector


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(fn, *args, **kwargs)


def _ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(jsonable(data), status_code=status)


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(f"query parameter {name} must be an integer, got {raw!r}") from None


async def config(request: Request) -> Response:
    """GET /api/config: what the UI needs to know about this server."""
    inspector = _inspector(request)
    return _ok(
        {
            "read_only": request.app.state.read_only,
            "auth": request.app.state.auth,
            "namespace": inspector.namespace,
            "states": [s.value for s in TaskState],
        }
    )


async def queues(request: Request) -> Response:
    """GET /api/queues: every queue with counts per state, latency and counters."""
    return _ok(await _call(_inspector(request).all_queue_stats))


async def queue(request: Request) -> Response:
    """GET /api/queues/{queue}: one queue with memory estimate and daily history (?days=14)."""
    inspector = _inspector(request)
    name = request.path_params["queue"]
    days = _int(request, "days", 14)

    def read() -> dict[str, Any]:
        if not inspector.has_queue(name):
            raise TaskNotFoundError(f"no queue {name!r}")
        return {
            "stats": inspector.queue_stats(name, memory=True),
            "history": inspector.history(name, days=days),
        }

    return _ok(await _call(read))


async def delete_queue(request: Request) -> Response:
    """DELETE /api/queues/{queue}?force=1: delete a queue (refused while tasks run)."""
    force = request.query_params.get("force", "") in ("1", "true", "yes")
    name = request.path_params["queue"]
    deleted = await _call(_inspector(request).delete_queue, name, force=force)
    return _ok({"queue": name, "deleted_keys": deleted})


async def pause(request: Request) -> Response:
    """POST /api/queues/{queue}/pause and /unpause."""
    inspector = _inspector(request)
    name = request.path_params["queue"]
    paused = request.url.path.endswith("/pause")
    changed = await _call(inspector.pause if paused else inspector.unpause, name)
    return _ok({"queue": name, "paused": paused, "changed": changed})


async def tasks(request: Request) -> Response:
    """GET /api/queues/{queue}/tasks?state=pending&page=1&size=20."""
    page = await _call(
        _inspector(request).list_tasks,
        request.path_params["queue"],
        request.query_params.get("state", "pending"),
        page=_int(request, "page", 1),
        size=_int(request, "size", 20),
    )
    return _ok(page)


async def bulk(request: Request) -> Response:
    """POST /api/queues/{queue}/tasks:bulk with {"state": ..., "action": run|delete|archive}."""
    body = await _json_body(request)
    result = await _call(
        _inspector(request).bulk,
        request.path_params["queue"],
        str(body.get("state", "")),
        str(body.get("action", "")),
    )
    return _ok(result)


async def task(request: Request) -> Response:
    """GET /api/queues/{queue}/tasks/{id}: everything about one task."""
    info = await _call(
        _inspector(request).get_task, request.path_params["queue"], request.path_params["id"]
    )
    return JSONResponse(task_json(info))


async def delete_task(request: Request) -> Response:
    """DELETE /api/queues/{queue}/tasks/{id}."""
    queue_name, task_id = request.path_params["queue"], request.path_params["id"]
    await _call(_inspector(request).delete_task, queue_name, task_id)
    return _ok({"deleted": task_id})


async def task_action(request: Request) -> Response:
    """POST /api/queues/{queue}/tasks/{id}/{run|archive|cancel}."""
    inspector = _inspector(request)
    queue_name, task_id = request.path_params["queue"], request.path_params["id"]
    action = request.path_params["action"]
    if action == "cancel":
        heard = await _call(inspector.cancel_task, queue_name, task_id)
        return _ok({"cancelled": task_id, "servers_notified": heard})
    if action == "run":
        await _call(inspector.run_task, queue_name, task_id)
    elif action == "archive":
        await _call(inspector.archive_task, queue_name, task_id)
    else:
        raise HTTPException(404, f"unknown task action {action!r}; use run, archive or cancel")
    return _ok({action: task_id})


async def servers(request: Request) -> Response:
    """GET /api/servers: live worker servers and the tasks they run."""
    return _ok(await _call(_inspector(request).servers))


async def scheduler(request: Request) -> Response:
    """GET /api/scheduler?history=10: periodic entries, recent fires, live instances."""
    history = _int(request, "history", 10)
    return _ok(await _call(_inspector(request).scheduler, history=history))


async def redis_info(request: Request) -> Response:
    """GET /api/redis: a summary of Redis INFO per node."""
    return _ok(await _call(_inspector(request).redis_info))


async def stats_history(request: Request) -> Response:
    """GET /api/stats/history?days=14[&queue=q]: processed/failed per day, oldest first."""
    name = request.query_params.get("queue") or None
    days = _int(request, "days", 14)
    return _ok(await _call(_inspector(request).history, name, days=days))


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise ValidationError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    return body


ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (ValidationError, 400),
    (TaskNotFoundError, 404),
    (TaskStateError, 409),
    (RedisUnavailableError, 503),
    (CorruptTaskError, 500),
    (RqSchedError, 500),
)


async def error_response(request: Request, exc: Exception) -> Response:
    """Exception handler: rq_sched errors and HTTP errors as ``{"error": ...}``."""
    if isinstance(exc, HTTPException):
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no endpoint {request.url.path}; see docs/dashboard.md for the API"
        return JSONResponse({"error": detail}, status_code=exc.status_code)
    for cls, status in ERROR_STATUS:
        if isinstance(exc, cls):
            if status >= 500:
                log.error("%s %s failed: %s", request.method, request.url.path, exc)
            return JSONResponse({"error": str(exc)}, status_code=status)
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal error; see the server log"}, status_code=500)


def routes() -> list[Route]:
    """Every API route."""
    q = "/api/queues/{queue}"
    return [
        Route("/api/config", config),
        Route("/api/queues", queues),
        Route(q, queue),
        Route(q, delete_queue, methods=["DELETE"]),
        Route(q + "/pause", pause, methods=["POST"]),
        Route(q + "/unpause", pause, methods=["POST"]),
        Route(q + "/tasks", tasks),
        Route(q + "/tasks:bulk", bulk, methods=["POST"]),
        Route(q + "/tasks/{id}", task),
        Route(q + "/tasks/{id}", delete_task, methods=["DELETE"]),
        Route(q + "/tasks/{id}/{action}", task_action, methods=["POST"]),
        Route("/api/servers", servers),
        Route("/api/scheduler", scheduler),
        Route("/api/redis", redis_info),
        Route("/api/stats/history", stats_history),
    ]
