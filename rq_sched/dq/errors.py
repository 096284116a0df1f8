"""The errors of the beanstalkd bridge, all under :class:`rq_sched.errors.RqSchedError`."""

from __future__ import annotations

from collections.abc import Mapping

from rq_sched.errors import RqSchedError, ValidationError


class DqError(RqSchedError):
    """Base class of every error ``rq_sched.dq`` raises."""


class DqConfigError(DqError, ValidationError):
    """A node list, endpoint, tube, id, delay or time is malformed; the message says the fix."""


class NodeUnavailableError(DqError, ConnectionError):
    """A beanstalkd node could not be reached, or dropped the connection mid-command."""


class BeanstalkError(DqError):
    """beanstalkd answered a command with an error reply (``reply`` holds its name)."""

    def __init__(self, message: str, reply: str) -> None:
        super().__init__(message)
        self.reply = reply


class JobNotFoundError(BeanstalkError):
    """beanstalkd has no such job, or another connection holds it reserved."""


class PutError(DqError):
    """Fewer than two nodes stored the job; the copies that were stored have been revoked.

    Attributes:
        errors: endpoint -> the error that node gave.
    """

    def __init__(self, message: str, errors: Mapping[str, Exception]) -> None:
        super().__init__(message)
        self.errors = dict(errors)


class RevokeError(DqError):
    """Some nodes could not delete their copy of a job.

    Attributes:
        errors: endpoint -> the error that node gave.
    """

    def __init__(self, message: str, errors: Mapping[str, Exception]) -> None:
        super().__init__(message)
        self.errors = dict(errors)
