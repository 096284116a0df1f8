"""rq_sched: a distributed task queue on Redis, with a beanstalkd (go-queue dq) bridge."""

from rq_sched.backoff import Backoff, exponential
from rq_sched.client import AsyncClient, Client, EnqueueManyError
from rq_sched.clock import Clock, ManualClock, SystemClock
from rq_sched.config import ServerConfig
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
from rq_sched.router import Middleware, Router
from rq_sched.scheduler import Scheduler
from rq_sched.server import Server
from rq_sched.task import Task

__all__ = [
    "AsyncClient",
    "Backoff",
    "Client",
    "Clock",
    "CorruptTaskError",
    "DuplicateTaskError",
    "EnqueueManyError",
    "Inspector",
    "LeaseLostError",
    "ManualClock",
    "Middleware",
    "NewTask",
    "PayloadTooLargeError",
    "QueueInfo",
    "QueuePausedError",
    "RedisUnavailableError",
    "Retry",
    "Router",
    "RqSchedError",
    "Scheduler",
    "ScriptError",
    "Server",
    "ServerConfig",
    "SkipRetry",
    "SystemClock",
    "Task",
    "TaskCancelledError",
    "TaskIdConflictError",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskState",
    "TaskStateError",
    "TickTakenError",
    "ValidationError",
    "exponential",
]
