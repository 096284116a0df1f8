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
from rq_sched.flow import FlowLimits, FlowStatus, KeyLimits, TypeLimits
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


def _param(request: Request, name: str) -> str:
    """A queue name or task id: from the path, or from the query string (``?queue=&id=``).

    The UI always uses the query form: a path segment cannot carry ``.``, ``..`` or ``/``
    (browsers remove dot segments before sending, and ``%2F`` is decoded before routing).
    """
    value = request.path_params.get(name)
    if value is None:
        value = request.query_params.get(name)
    if value is None or value == "":
        raise ValidationError(f"query parameter {name} is required, e.g. ?{name}=default")
    return str(value)


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
    """GET /api/queue?queue=q (or /api/queues/{queue}): one queue with memory estimate and
    daily history (?days=14)."""
    inspector = _inspector(request)
    name = _param(request, "queue")
    days = _int(request, "days", 14)

    def read() -> dict[str, Any]:
        inspector.require_queue(name)
        return {
            "stats": inspector.queue_stats(name, memory=True),
            "history": inspector.history(name, days=days),
            "flow": inspector.flow(name),
            "keys": inspector.flow_keys(name, 10),
        }

    return _ok(await _call(read))


async def delete_queue(request: Request) -> Response:
    """DELETE /api/queue?queue=q&force=1: delete a queue (refused while tasks run)."""
    inspector = _inspector(request)
    force = request.query_params.get("force", "") in ("1", "true", "yes")
    name = _param(request, "queue")

    def delete() -> int:
        inspector.require_queue(name, leftovers=True)
        return inspector.delete_queue(name, force=force)

    return _ok({"queue": name, "deleted_keys": await _call(delete)})


async def pause(request: Request) -> Response:
    """POST /api/queue/pause?queue=q and /unpause (404 for a queue that does not exist, so
    no paused flag is left for a queue created later)."""
    inspector = _inspector(request)
    name = _param(request, "queue")
    paused = request.url.path.endswith("/pause")

    def flip() -> bool:
        inspector.require_queue(name)
        return inspector.pause(name) if paused else inspector.unpause(name)

    return _ok({"queue": name, "paused": paused, "changed": await _call(flip)})


async def flow(request: Request) -> Response:
    """GET /api/queue/flow?queue=q: the queue's flow limits, tokens now, running count,
    whether ready tasks wait for a slot, its limited task types (``types``) and the keys with
    limits of their own (``keys``: key -> limits, null for none). POST with a JSON body
    ``{"rate": "100/s", "burst": 1, "concurrency": 5, "key_rate": "10/s", "key_burst": 1,
    "key_concurrency": 1, "key_hold_on_retry": true, "keys": {"tenant:vip": {"rate": "50/s",
    "burst": 5, "concurrency": 10, "weight": 4}}}`` (or ``"types": {"sync:crm": {"rate":
    "10/s", "burst": 1, "concurrency": 2, "weight": 1}}`` instead of the per-key limits)
    replaces them all, as a whole (a missing or null field, ``types`` and ``keys`` too: no
    such limit; ``{}`` removes every limit); to change one limit, send the others as ``GET``
    shows them: a ``GET`` body posted back as it is changes nothing (its read-only fields,
    such as ``tokens`` or ``pending``, are ignored, and ``types`` may be ``GET``'s list)."""
    inspector = _inspector(request)
    name = _param(request, "queue")
    if request.method == "GET":
        return _ok(await _call(inspector.flow, name))
    body = await _json_body(request)
    unknown = set(body) - _FLOW_FIELDS - _FLOW_SHOWN
    if unknown:
        raise ValidationError(
            f"unknown flow fields {sorted(unknown)}; use {', '.join(sorted(_FLOW_FIELDS))}"
        )
    types = _lane_limits(body.get("types"), "types", "task types", TypeLimits)
    keys = _lane_limits(body.get("keys"), "keys", "fairness keys", KeyLimits)

    def replace() -> FlowStatus:
        limits = FlowLimits(
            rate=body.get("rate"),
            burst=body.get("burst", 1),
            concurrency=body.get("concurrency"),
            key_rate=body.get("key_rate"),
            key_burst=body.get("key_burst", 1),
            key_concurrency=body.get("key_concurrency"),
            key_hold_on_retry=body.get("key_hold_on_retry", False),
            types=types or None,
            keys=keys or None,
        )
        return inspector.set_flow(name, limits)

    return _ok(await _call(replace))


_FLOW_FIELDS = frozenset(
    {
        "rate",
        "burst",
        "concurrency",
        "key_rate",
        "key_burst",
        "key_concurrency",
        "key_hold_on_retry",
        "types",
        "keys",
    }
)
_FLOW_SHOWN = frozenset(
    {
        "queue",
        "interval_ms",
        "tokens",
        "next_token_at",
        "active",
        "pending",
        "held",
        "key_interval_ms",
        "keyed_pending",
        "keys_ready",
        "keys_waiting",
        "limited",
        "key_limited",
    }
)
"""Fields ``GET`` shows that say where the limits stand, not what they are: ignored in a POST."""
_LANE_FIELDS = frozenset({"rate", "burst", "concurrency", "weight"})
_LANE_SHOWN = frozenset(
    {"type", "interval_ms", "pending", "running", "state", "tokens", "next_token_at", "limits"}
)
_LANE_EXAMPLE = '{"rate": "10/s", "burst": 1, "concurrency": 2, "weight": 1}'
_LANE_NAMED = {"types": "sync:crm", "keys": "tenant:vip"}
Lane = TypeVar("Lane", TypeLimits, KeyLimits)


def _lane_limits(raw: object, field: str, what: str, make: type[Lane]) -> dict[str, Lane]:
    """The ``types`` or ``keys`` field of a flow POST as ``make`` (:class:`TypeLimits` or
    :class:`KeyLimits`) by task type or key (null: none).

    Raises:
        ValidationError: not an object of objects with only rate, burst, concurrency and
            weight, or limits that ``make`` refuses.
    """
    if raw is None:
        return {}
    if field == "types" and isinstance(raw, list):  # as GET shows them: [{"type": ...}, ...]
        if not all(isinstance(row, dict) and isinstance(row.get("type"), str) for row in raw):
            raise ValidationError(
                f'types as a list must hold objects with a "type", e.g. [{{"type": '
                f'"sync:crm", "rate": "10/s"}}], got {raw!r}'
            )
        raw = {row["type"]: row for row in raw}
    if not isinstance(raw, dict):
        raise ValidationError(
            f"{field} must map {what} to their limits, e.g. "
            f'{{"{_LANE_NAMED[field]}": {_LANE_EXAMPLE}}}, got {raw!r}'
        )
    limits: dict[str, Lane] = {}
    for name, fields in raw.items():
        if not isinstance(fields, dict):
            raise ValidationError(
                f"{field}[{name!r}] must be an object such as {_LANE_EXAMPLE}, got {fields!r}"
            )
        unknown = set(fields) - _LANE_FIELDS - _LANE_SHOWN
        if unknown:
            raise ValidationError(
                f"{field}[{name!r}]: unknown fields {sorted(unknown)}; use "
                f"{', '.join(sorted(_LANE_FIELDS))}"
            )
        try:
            limits[name] = make(
                rate=fields.get("rate"),
                burst=fields.get("burst", 1),
                concurrency=fields.get("concurrency"),
                weight=fields.get("weight", 1),
            )
        except ValidationError as exc:
            raise ValidationError(f"{field}[{name!r}]: {exc}") from None
    return limits


async def flow_keys(request: Request) -> Response:
    """GET /api/queue/keys?queue=q&limit=20: the queue's fairness keys with ready or running
    tasks: how many, and the busiest with their ready and running counts and state."""
    inspector = _inspector(request)
    name = _param(request, "queue")
    return _ok(await _call(inspector.flow_keys, name, _int(request, "limit", 20)))


async def tasks(request: Request) -> Response:
    """GET /api/queue/tasks?queue=q&state=pending&page=1&size=20[&type=t]."""
    inspector = _inspector(request)
    name = _param(request, "queue")
    state = request.query_params.get("state", "pending")
    page, size = _int(request, "page", 1), _int(request, "size", 20)
    task_type = request.query_params.get("type") or None

    def read() -> Any:
        inspector.require_queue(name)
        return inspector.list_tasks(name, state, page=page, size=size, task_type=task_type)

    return _ok(await _call(read))


async def bulk(request: Request) -> Response:
    """POST /api/queue/bulk?queue=q with {"state": ..., "action": run|delete|archive}."""
    inspector = _inspector(request)
    name = _param(request, "queue")
    body = await _json_body(request)

    limit = body.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise ValidationError(f"limit must be an integer, got {limit!r}")

    def apply() -> Any:
        inspector.require_queue(name)
        state, action = str(body.get("state", "")), str(body.get("action", ""))
        return inspector.bulk(name, state, action, limit=limit)

    return _ok(await _call(apply))


async def selection(request: Request) -> Response:
    """POST /api/queue/selection?queue=q with {"action": run|archive|delete|cancel, "ids": [..]}:
    one action on the tasks selected in the UI."""
    inspector = _inspector(request)
    name = _param(request, "queue")
    body = await _json_body(request)
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValidationError('ids must be a list of task id strings, e.g. {"ids": ["a1"]}')

    def apply() -> Any:
        inspector.require_queue(name)
        return inspector.act_on(name, ids, str(body.get("action", "")))

    return _ok(await _call(apply))


async def types(request: Request) -> Response:
    """GET /api/queue/types?queue=q: tasks per type and state (a bounded sample per state)."""
    inspector = _inspector(request)
    name = _param(request, "queue")

    def read() -> Any:
        inspector.require_queue(name)
        return inspector.type_breakdown(name)

    return _ok(await _call(read))


async def search(request: Request) -> Response:
    """GET /api/search?id=x: the tasks with that id, in every queue."""
    task_id = request.query_params.get("id", "")
    found = await _call(_inspector(request).find_task, task_id)
    return JSONResponse([task_json(info) for info in found])


async def stats_minutes(request: Request) -> Response:
    """GET /api/stats/minutes?window=hour|day[&queue=q]: per-minute processed, failed, size,
    latency (oldest first; null where no sample was taken)."""
    name = request.query_params.get("queue") or None
    window = request.query_params.get("window", "hour")
    return _ok(await _call(_inspector(request).minutes, name, window=window))


async def task(request: Request) -> Response:
    """GET /api/task?queue=q&id=i: everything about one task."""
    info = await _call(
        _inspector(request).get_task, _param(request, "queue"), _param(request, "id")
    )
    return JSONResponse(task_json(info))


async def delete_task(request: Request) -> Response:
    """DELETE /api/task?queue=q&id=i."""
    queue_name, task_id = _param(request, "queue"), _param(request, "id")
    await _call(_inspector(request).delete_task, queue_name, task_id)
    return _ok({"deleted": task_id})


async def task_action(request: Request) -> Response:
    """POST /api/task/{run|archive|cancel}?queue=q&id=i."""
    inspector = _inspector(request)
    queue_name, task_id = _param(request, "queue"), _param(request, "id")
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


async def run_entry(request: Request) -> Response:
    """POST /api/scheduler/run?entry=id: run a periodic entry once now."""
    entry_id = _param(request, "entry")
    info = await _call(_inspector(request).run_entry_now, entry_id)
    return JSONResponse({"entry": entry_id, "task": task_json(info)})


async def pause_entry(request: Request) -> Response:
    """POST /api/scheduler/pause?entry=id and /resume: every scheduler skips (or again fires)
    the entry's ticks; 404 for an entry no scheduler publishes."""
    inspector = _inspector(request)
    entry = _param(request, "entry")
    paused = request.url.path.endswith("/pause")
    flip = inspector.pause_entry if paused else inspector.resume_entry
    return _ok({"entry": entry, "paused": paused, "changed": await _call(flip, entry)})


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
    """Every API route.

    Queue names and task ids travel in the query string (``/api/queue?queue=q``,
    ``/api/task?queue=q&id=i``): any stored name opens, including ``.``, ``..`` and ``a/b``.
    The older path forms (``/api/queues/{queue}/tasks/{id}``) stay for scripts and ordinary
    names.
    """
    q = "/api/queues/{queue}"
    return [
        Route("/api/config", config),
        Route("/api/queues", queues),
        Route("/api/queue", queue),
        Route("/api/queue", delete_queue, methods=["DELETE"]),
        Route("/api/queue/pause", pause, methods=["POST"]),
        Route("/api/queue/unpause", pause, methods=["POST"]),
        Route("/api/queue/flow", flow, methods=["GET", "POST"]),
        Route("/api/queue/keys", flow_keys),
        Route("/api/queue/tasks", tasks),
        Route("/api/queue/bulk", bulk, methods=["POST"]),
        Route("/api/queue/selection", selection, methods=["POST"]),
        Route("/api/queue/types", types),
        Route("/api/search", search),
        Route("/api/stats/minutes", stats_minutes),
        Route("/api/task", task),
        Route("/api/task", delete_task, methods=["DELETE"]),
        Route("/api/task/{action}", task_action, methods=["POST"]),
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
        Route("/api/scheduler/run", run_entry, methods=["POST"]),
        Route("/api/scheduler/pause", pause_entry, methods=["POST"]),
        Route("/api/scheduler/resume", pause_entry, methods=["POST"]),
        Route("/api/redis", redis_info),
        Route("/api/stats/history", stats_history),
    ]
