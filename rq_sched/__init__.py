"""rq_sched: a distributed task queue on Redis, with a beanstalkd (go-queue dq) bridge.

The public API, grouped by area. The store and the producer live at the top of the package;
the worker, the scheduler and the inspector each have a subpackage of their own.
"""

# Producing tasks
# Running handlers
from rq_sched.backoff import Backoff, exponential
from rq_sched.batch import Enqueued
from rq_sched.client import AsyncClient, Client, EnqueueManyError
from rq_sched.clock import Clock, ManualClock, SystemClock
from rq_sched.dedup import Debounced, Throttled

# Errors and handler control flow
from rq_sched.errors import (
    CorruptTaskError,
    DuplicateTaskError,
    LeaseLostError,
    PayloadTooLargeError,
    QueuePausedError,
    RedisUnavailableError,
    ReplicationError,
    Retry,
    RqSchedError,
    ScriptError,
    SkipRetry,
    TaskCancelledError,
    TaskFailedError,
    TaskIdConflictError,
    TaskNotFoundError,
    TaskStateError,
    TickTakenError,
    ValidationError,
    WaitTimeoutError,
    WriteRefusedError,
    WrongKeyTypeError,
)
from rq_sched.flow import FlowLimits, FlowStatus, KeyLimits, TypeLimits, TypeStatus

# Inspecting and operating queues
from rq_sched.inspector import (
    BulkResult,
    DailyStats,
    Inspector,
    QueueStats,
    RedisNode,
    SchedulerStatus,
    ServerStatus,
    TaskPage,
)
from rq_sched.keyed import FlowKeys, KeyStatus
from rq_sched.models import NewTask, QueueInfo, TaskInfo, TaskState
from rq_sched.ops import ArchiveLimits
from rq_sched.router import Middleware, Router

# Periodic tasks
from rq_sched.scheduler import Scheduler
from rq_sched.task import Task
from rq_sched.worker import Server, ServerConfig

__all__ = [  # noqa: RUF022 -- grouped by area, sorted within each group
    # producing tasks
    "AsyncClient",
    "Client",
    "Clock",
    "Debounced",
    "EnqueueManyError",
    "Enqueued",
    "ManualClock",
    "NewTask",
    "SystemClock",
    "Throttled",
    # task and queue records
    "QueueInfo",
    "TaskInfo",
    "TaskState",
    # running handlers
    "ArchiveLimits",
    "Backoff",
    "FlowLimits",
    "Middleware",
    "Router",
    "Server",
    "ServerConfig",
    "Task",
    "exponential",
    # periodic tasks
    "Scheduler",
    # inspecting and operating queues
    "BulkResult",
    "DailyStats",
    "FlowKeys",
    "FlowStatus",
    "KeyLimits",
    "TypeLimits",
    "TypeStatus",
    "Inspector",
    "KeyStatus",
    "QueueStats",
    "RedisNode",
    "SchedulerStatus",
    "ServerStatus",
    "TaskPage",
    # errors and handler control flow
    "CorruptTaskError",
    "DuplicateTaskError",
    "LeaseLostError",
    "PayloadTooLargeError",
    "QueuePausedError",
    "RedisUnavailableError",
    "ReplicationError",
    "Retry",
    "RqSchedError",
    "ScriptError",
    "SkipRetry",
    "TaskCancelledError",
    "TaskFailedError",
    "TaskIdConflictError",
    "TaskNotFoundError",
    "TaskStateError",
    "TickTakenError",
    "ValidationError",
    "WaitTimeoutError",
    "WriteRefusedError",
    "WrongKeyTypeError",
]
