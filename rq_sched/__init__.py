"""rq_sched: a distributed task queue on Redis, with a beanstalkd (go-queue dq) bridge."""

from rq_sched.client import AsyncClient, Client, EnqueueManyError
from rq_sched.clock import Clock, ManualClock, SystemClock
from rq_sched.errors import (
    CorruptTaskError,
    DuplicateTaskError,
    LeaseLostError,
    PayloadTooLargeError,
    QueuePausedError,
    RedisUnavailableError,
    Retry,
    RqSchedError,
    ScriptError,
    SkipRetry,
    TaskCancelledError,
    TaskIdConflictError,
    TaskNotFoundError,
    TaskStateError,
    TickTakenError,
    ValidationError,
)
from rq_sched.inspector import Inspector
from rq_sched.models import NewTask, QueueInfo, TaskInfo, TaskState

__all__ = [
    "AsyncClient",
    "Client",
    "Clock",
    "CorruptTaskError",
    "DuplicateTaskError",
    "EnqueueManyError",
    "Inspector",
    "LeaseLostError",
    "ManualClock",
    "NewTask",
    "PayloadTooLargeError",
    "QueueInfo",
    "QueuePausedError",
    "RedisUnavailableError",
    "Retry",
    "RqSchedError",
    "ScriptError",
    "SkipRetry",
    "SystemClock",
    "TaskCancelledError",
    "TaskIdConflictError",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskState",
    "TaskStateError",
    "TickTakenError",
    "ValidationError",
]
