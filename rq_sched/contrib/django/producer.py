"""Producing from Django: the process's client, and enqueue on commit.

:func:`enqueue_on_commit` (and :func:`on_commit` for a ready :class:`~rq_sched.NewTask`, e.g.
from a typed handle) checks the task at once, then hands the enqueue to Django's
``transaction.on_commit``: inside ``transaction.atomic()`` the task is sent right after the
outermost block commits, and never if it rolls back; outside a transaction (autocommit) it is
sent at once. The task id is chosen at call time and returned, so it can be stored with the
rows the transaction writes.

What this cannot do: make the commit and the enqueue one atomic step. If Redis cannot be
reached at commit time, the database has committed and the enqueue raises
:class:`~rq_sched.RedisUnavailableError` from the point where the transaction committed (the
end of the ``atomic`` block), and Django skips the remaining on-commit callbacks; with
``robust=True`` Django logs the error and runs the others. Either way the task is not in
Redis: a caller that must not lose it records the intent in the transaction (an "outbox" row)
and enqueues from that row with its id as ``task_id``, which makes a repeated enqueue of the
same live task a refused duplicate (docs/integrations.md).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Unpack

from django.db import transaction

from rq_sched.client import Client
from rq_sched.clock import SystemClock, to_ms
from rq_sched.contrib.django.conf import settings
from rq_sched.contrib.typed import Producer, TaskOptions
from rq_sched.errors import ValidationError
from rq_sched.models import NewTask, TaskInfo
from rq_sched.options import new_task_id, prepare

__all__ = ["enqueue_on_commit", "get_client", "on_commit"]

_clients: dict[tuple[str, str, bool, int], Client] = {}
_clients_lock = threading.Lock()


def get_client() -> Client:
    """The process's :class:`~rq_sched.Client` for the ``RQ_SCHED`` settings (thread-safe;
    one connection pool per distinct URL, namespace and options)."""
    conf = settings()
    key = (conf.url, conf.namespace, conf.cluster, conf.max_payload_bytes)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = Client.from_url(
                conf.url,
                cluster=conf.cluster,
                namespace=conf.namespace,
                max_payload_bytes=conf.max_payload_bytes,
            )
    return client


def enqueue_on_commit(
    type: str,
    payload: Any = None,
    *,
    using: str | None = None,
    robust: bool = False,
    client: Producer | None = None,
    **options: Unpack[TaskOptions],
) -> str:
    """Enqueue a task once the current transaction of database ``using`` commits.

    Options are those of :meth:`rq_sched.Client.enqueue`; ``process_in`` counts from the
    commit. See the module docstring for what happens when Redis is down at commit time.

    Args:
        using: the database alias (default: ``"default"``).
        robust: let Django log an enqueue failure at commit instead of raising it.
        client: the producer to use (default: :func:`get_client`).

    Returns:
        The task's id (``task_id`` when given, else a new one).

    Raises:
        ValidationError: an argument is bad (raised now, not at commit).
        PayloadTooLargeError: the task is larger than ``MAX_PAYLOAD_BYTES``.
    """
    return on_commit(
        NewTask(type=type, payload=payload, **options), using=using, robust=robust, client=client
    )


def on_commit(
    task: NewTask,
    *,
    using: str | None = None,
    robust: bool = False,
    client: Producer | None = None,
) -> str:
    """:func:`enqueue_on_commit` for a ready :class:`~rq_sched.NewTask`
    (``on_commit(handle.new_task(payload))`` for a typed task).

    Raises:
        ValidationError: an argument is bad, or the task asks for debounce, throttle or a
            shard_key (raised now, not at commit).
    """
    if task.debounce is not None or task.throttle is not None or task.window is not None:
        raise ValidationError(
            "on_commit enqueues with client.enqueue, which takes no debounce=, throttle= or "
            "window=; call client.debounce() / client.throttle() from transaction.on_commit"
        )
    if task.shard_key is not None:
        raise ValidationError(
            "on_commit returns the task id at the call, and on a sharded queue an id names its "
            "shard, so shard_key= cannot choose one; drop shard_key (ids spread over the "
            "shards), or call client.enqueue(..., shard_key=...) from transaction.on_commit"
        )
    task_id = task.task_id or new_task_id()
    task = dataclasses.replace(task, task_id=task_id)
    # Checked now, so a bad argument fails the view that made it, not the commit.
    prepare(
        task,
        now_ms=to_ms(SystemClock().now()),
        max_payload_bytes=settings().max_payload_bytes,
    )

    def send() -> TaskInfo:
        return _enqueue(client or get_client(), task)

    transaction.on_commit(send, using=using, robust=robust)
    return task_id


def _enqueue(client: Producer, task: NewTask) -> TaskInfo:
    return client.enqueue(
        task.type,
        task.payload,
        queue=task.queue,
        process_in=task.process_in,
        process_at=task.process_at,
        max_retry=task.max_retry,
        timeout=task.timeout,
        deadline=task.deadline,
        unique=task.unique,
        task_id=task.task_id,
        retention=task.retention,
        headers=task.headers,
        key=task.key,
    )
