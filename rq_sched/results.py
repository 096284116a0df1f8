"""Waiting for a task's outcome without polling: ``Client.wait_result`` and its async twin.

The waiter and the script that makes a task final meet in two places:

1. The waiter SUBSCRIBEs to the task's channel ``ns:{q}:final:<id>`` and waits for Redis to
   confirm the subscription.
2. It registers in ``ns:{q}:waiters`` (HINCRBY id 1). Every script that makes a task final
   (``done``, ``archive_active``, ``archive``, ``delete``) checks that hash in the same step
   and, if the id is there, PUBLISHes the outcome and consumes the registration.
3. Only then does it read the task's state. If the task is final, that read shows it; if it
   becomes final later, the script sees the registration and publishes to a subscription
   that already exists. There is no instant at which a completion can slip between "look"
   and "wait": the registration is written before the look, and the subscription before the
   registration.

Why pub/sub and not a per-task list the finishing script LPUSHes (BLPOP by the waiter):
``done`` settles a batch of tasks in one call, and a per-task list key would have to be passed
in KEYS for every task of every batch although almost no task has a waiter; a channel is not a
key, so ``done`` takes one fixed extra key (``waiters``) and publishes only for waited tasks.
On Redis Cluster a PUBLISH reaches subscribers on every node.

A waiter that times out (or finds the task final at once) withdraws its registration
(``unwait.lua``, counted, so other waiters of the same task stay registered). A waiter that
dies leaves one count behind: the task then publishes once to nobody when it ends, and that
consumes the count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import msgpack

from rq_sched import ops, scripts
from rq_sched.connection import translate_errors
from rq_sched.durations import duration_seconds
from rq_sched.errors import TaskFailedError, TaskNotFoundError, WaitTimeoutError
from rq_sched.keys import QueueKeys
from rq_sched.message import decode
from rq_sched.options import check_stored_id
from rq_sched.scripts import AnyAsyncRedis, SyncRedis

Decode = Callable[[bytes], Any]

CANCELLED_PREFIX = "TaskCancelledError"
"""How the error text of a cancelled task starts (the worker writes the exception type first)."""


def unpack_result(data: bytes) -> Any:
    """Read back a result the handler returned as a value other than bytes or str (stored as
    msgpack, see :func:`rq_sched.message.encode_result`); pass as ``decode=`` to
    ``wait_result``."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


@dataclass(frozen=True, slots=True)
class _Final:
    """What the look at a task found: final (with its result or failure) or not yet."""

    final: bool
    result: bytes | None = None
    failure: TaskFailedError | None = None
    missing: bool = False


def _check(task_id: str, timeout: timedelta | float) -> float:
    check_stored_id(task_id)
    return duration_seconds(timeout, "wait_result timeout", allow_text=False)


def _read_calls(keys: QueueKeys, task_id: str) -> list[tuple[str, str]]:
    return [
        ("hget", keys.msg),
        ("zscore", keys.archived),
        ("zscore", keys.completed),
        ("hget", keys.result),
        ("hexists", keys.held),
    ]


def _judge(keys: QueueKeys, task_id: str, replies: list[Any]) -> _Final:
    data, archived, completed, result, held = replies
    if held:
        return _Final(final=False)  # waiting for its parents (docs/workflows.md)
    if data is None:
        return _Final(final=True, missing=True)
    if completed is not None:
        return _Final(final=True, result=result)
    if archived is not None:
        message = decode(data, task_id=task_id)
        error = message.last_error or "archived by an operator"
        cancelled = error.startswith(CANCELLED_PREFIX)
        what = "was cancelled" if cancelled else "failed"
        failure = TaskFailedError(
            f"task {task_id!r} in queue {keys.queue!r} {what}: {error.partition(chr(10))[0]}",
            queue=keys.queue,
            task_id=task_id,
            error=error,
            cancelled=cancelled,
        )
        return _Final(final=True, failure=failure)
    return _Final(final=False)


def _outcome(
    keys: QueueKeys, task_id: str, found: _Final, told: bytes | None, decode: Decode | None
) -> Any:
    """The return value (or the raised failure) once ``found`` is final."""
    if found.failure is not None:
        raise found.failure
    if found.missing:
        if told == b"completed":
            return None  # completed without retention: no record, no result
        if told == b"deleted":
            raise TaskNotFoundError(
                f"task {task_id!r} in queue {keys.queue!r} was deleted while it was waited for"
            )
        raise TaskNotFoundError(
            f"no task {task_id!r} in queue {keys.queue!r}: it never existed, or it finished "
            "and was not kept; enqueue it with retention= to wait for its result"
        )
    if found.result is None or decode is None:
        return found.result
    return decode(found.result)


def _timeout(keys: QueueKeys, task_id: str, seconds: float) -> WaitTimeoutError:
    return WaitTimeoutError(
        f"task {task_id!r} in queue {keys.queue!r} did not finish within {seconds:g}s; it goes "
        "on: wait again or look it up with the inspector"
    )


def wait_result(
    redis: SyncRedis,
    keys: QueueKeys,
    task_id: str,
    timeout: timedelta | float,
    decode: Decode | None = None,
) -> Any:
    """Block until the task is final; see :meth:`rq_sched.Client.wait_result`."""
    seconds = _check(task_id, timeout)
    deadline = time.monotonic() + seconds
    with translate_errors(redis):
        pubsub = cast(Any, redis).pubsub()
        registered = False
        try:
            pubsub.subscribe(keys.final_channel(task_id))
            _confirm(pubsub, deadline, keys, task_id, seconds)
            told: bytes | None = None
            while True:
                redis.hincrby(keys.waiters, task_id, 1)
                registered = True
                found = _read(redis, keys, task_id)
                if found.final:
                    return _outcome(keys, task_id, found, told, decode)
                told = _next_message(pubsub, deadline, keys, task_id, seconds)
                registered = False  # the script that published consumed it
        finally:
            try:
                if registered:
                    scripts.run(redis, *ops.unwait(keys, task_id))
            finally:
                pubsub.close()


def _read(redis: SyncRedis, keys: QueueKeys, task_id: str) -> _Final:
    pipe = redis.pipeline(transaction=True)
    for command, key in _read_calls(keys, task_id):
        getattr(pipe, command)(key, task_id)
    return _judge(keys, task_id, list(pipe.execute()))


def _confirm(pubsub: Any, deadline: float, keys: QueueKeys, task_id: str, seconds: float) -> None:
    """Wait for Redis to confirm the subscription: only then can no publish be missed."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timeout(keys, task_id, seconds)
        message = pubsub.get_message(timeout=left)
        if message is not None and message.get("type") == "subscribe":
            return


def _next_message(
    pubsub: Any, deadline: float, keys: QueueKeys, task_id: str, seconds: float
) -> bytes:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timeout(keys, task_id, seconds)
        message = pubsub.get_message(timeout=left)
        if message is not None and message.get("type") == "message":
            data = message.get("data")
            return data if isinstance(data, bytes) else str(data).encode()


async def await_result(
    redis: AnyAsyncRedis,
    keys: QueueKeys,
    task_id: str,
    timeout: timedelta | float,
    decode: Decode | None = None,
) -> Any:
    """Async :func:`wait_result`; see :meth:`rq_sched.AsyncClient.wait_result`."""
    seconds = _check(task_id, timeout)
    deadline = time.monotonic() + seconds
    with translate_errors(redis):
        # A cluster client learns its nodes on its first command; pub/sub is not one.
        await redis.initialize()
        pubsub = cast(Any, redis).pubsub()
        registered = False
        try:
            await pubsub.subscribe(keys.final_channel(task_id))
            await _aconfirm(pubsub, deadline, keys, task_id, seconds)
            told: bytes | None = None
            while True:
                await redis.hincrby(keys.waiters, task_id, 1)
                registered = True
                found = await _aread(redis, keys, task_id)
                if found.final:
                    return _outcome(keys, task_id, found, told, decode)
                told = await _anext_message(pubsub, deadline, keys, task_id, seconds)
                registered = False
        finally:
            try:
                if registered:
                    await scripts.arun(redis, *ops.unwait(keys, task_id))
            finally:
                await pubsub.aclose()


async def _aread(redis: AnyAsyncRedis, keys: QueueKeys, task_id: str) -> _Final:
    pipe = redis.pipeline(transaction=True)
    for command, key in _read_calls(keys, task_id):
        getattr(pipe, command)(key, task_id)
    return _judge(keys, task_id, list(await pipe.execute()))


async def _aconfirm(
    pubsub: Any, deadline: float, keys: QueueKeys, task_id: str, seconds: float
) -> None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timeout(keys, task_id, seconds)
        message = await pubsub.get_message(timeout=left)
        if message is not None and message.get("type") == "subscribe":
            return


async def _anext_message(
    pubsub: Any, deadline: float, keys: QueueKeys, task_id: str, seconds: float
) -> bytes:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timeout(keys, task_id, seconds)
        message = await pubsub.get_message(timeout=left)
        if message is not None and message.get("type") == "message":
            data = message.get("data")
            return data if isinstance(data, bytes) else str(data).encode()
