"""rq_sched.dq: go-queue's ``dq`` delayed-job API for Python, byte-compatible on beanstalkd.

- :class:`Producer` puts jobs on two or more beanstalkd nodes (``delay``, ``at``, ``revoke``);
  Go dq consumers read them, and Go dq producers' jobs are read by :class:`Consumer`.
- :class:`Consumer` reserves from every node, deduplicates replicas with dq's Redis key, and
  loses nothing (delete after success, retry with backoff, bury what cannot be handled).
- :class:`AsyncConsumer` is the same consumer for asyncio code, awaiting ``async def`` handlers;
  :class:`AsyncProducer` and :class:`AsyncRedisProducer` are the producers, awaited.
- :class:`RedisProducer` is the same producer API on rq_sched's Redis queues;
  :func:`make_producer` builds either from config. See ``docs/dq.md``.
"""

from rq_sched.dq.aio import AsyncConsumer, AsyncProducer, AsyncProducerProtocol
from rq_sched.dq.beanstalk import Beanstalk
from rq_sched.dq.config import (
    BeanstalkdConfig,
    ProducerConfig,
    RedisConfig,
    config_from_dict,
    make_producer,
)
from rq_sched.dq.consumer import Consumer
from rq_sched.dq.errors import (
    BeanstalkError,
    DqConfigError,
    DqError,
    JobNotFoundError,
    NodeUnavailableError,
    PutError,
    RevokeError,
)
from rq_sched.dq.goconf import DqConf, GoRedisConf
from rq_sched.dq.handling import Job, Outcome, Repeat, Stop, default_backoff
from rq_sched.dq.producer import Producer, ProducerProtocol
from rq_sched.dq.redis_producer import AsyncRedisProducer, RedisProducer
from rq_sched.dq.wire import JobRef

__all__ = [
    "AsyncConsumer",
    "AsyncProducer",
    "AsyncProducerProtocol",
    "AsyncRedisProducer",
    "Beanstalk",
    "BeanstalkError",
    "BeanstalkdConfig",
    "Consumer",
    "DqConf",
    "DqConfigError",
    "DqError",
    "GoRedisConf",
    "Job",
    "JobNotFoundError",
    "JobRef",
    "NodeUnavailableError",
    "Outcome",
    "Producer",
    "ProducerConfig",
    "ProducerProtocol",
    "PutError",
    "RedisConfig",
    "RedisProducer",
    "Repeat",
    "RevokeError",
    "Stop",
    "config_from_dict",
    "default_backoff",
    "make_producer",
]
