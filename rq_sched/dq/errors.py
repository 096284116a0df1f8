"""The errors of the beanstalkd bridge; defined with the rest of the tree in :mod:`rq_sched.errors`
and importable from here as before."""

from __future__ import annotations

from rq_sched.errors import (
    BeanstalkError,
    DqConfigError,
    DqError,
    JobNotFoundError,
    NodeUnavailableError,
    PutError,
    RedisDownError,
    RevokeError,
    UnwrapError,
)

__all__ = [
    "BeanstalkError",
    "DqConfigError",
    "DqError",
    "JobNotFoundError",
    "NodeUnavailableError",
    "PutError",
    "RedisDownError",
    "RevokeError",
    "UnwrapError",
]
