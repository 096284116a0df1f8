"""What ``rq-sched dq`` does (put, revoke, consume, stats); the argument parsing lives in
``rq_sched.cli.dq``, which imports this module only when a dq command runs, so the rest of the
CLI works without the ``dq`` extra installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from datetime import datetime
from typing import Any

from rq_sched.client import Client
from rq_sched.connection import connect
from rq_sched.dq.beanstalk import Beanstalk, Connection
from rq_sched.dq.consumer import Consumer
from rq_sched.dq.errors import DqConfigError
from rq_sched.dq.handling import Job
from rq_sched.dq.producer import Producer, ProducerProtocol
from rq_sched.dq.redis_producer import ID_PREFIX, RedisProducer
from rq_sched.errors import RqSchedError


def _nodes(args: argparse.Namespace) -> list[Beanstalk]:
    endpoints = args.node or [
        e.strip() for e in os.environ.get("RQ_SCHED_DQ_NODES", "").split(",") if e.strip()
    ]
    if not endpoints:
        raise DqConfigError("name the beanstalkd nodes: --node host:port (or RQ_SCHED_DQ_NODES)")
    return [Beanstalk(endpoint, args.tube) for endpoint in endpoints]


def _producer(args: argparse.Namespace, backend: str) -> ProducerProtocol:
    if backend == "redis":
        client = Client.from_url(args.url, cluster=args.cluster, namespace=args.namespace)
        return RedisProducer(
            client,
            type=getattr(args, "type", "dq"),
            queue=getattr(args, "queue", "default"),
            close_client=True,
        )
    return Producer(_nodes(args))


def put(args: argparse.Namespace) -> int:
    """Put a job (``rq-sched dq put``); prints its id."""
    body = sys.stdin.buffer.read() if args.body == "-" else args.body.encode()
    producer = _producer(args, args.backend)
    try:
        if args.at:
            print(producer.at(body, _parse_time(args.at)))
        else:
            print(producer.delay(body, args.delay))
    finally:
        producer.close()
    return 0


def revoke(args: argparse.Namespace) -> int:
    """Revoke a job by id (``rq-sched dq revoke``); the id says which backend."""
    backend = "redis" if args.ids.startswith(f"{ID_PREFIX}/") else "beanstalkd"
    producer = _producer(args, backend)
    try:
        producer.revoke(args.ids)
    finally:
        producer.close()
    return 0


def consume(args: argparse.Namespace) -> int:
    """Consume the tube, printing each job, until ``--max`` jobs, ``--duration`` or Ctrl-C."""
    done = threading.Event()
    seen = 0
    lock = threading.Lock()

    def show(job: Job) -> None:
        nonlocal seen
        text = job.body.decode("utf-8", "backslashreplace")
        with lock:
            print(f"{job.ref}\t{job.at.isoformat()}\t{text}", flush=True)
            seen += 1
            if args.max and seen >= args.max:
                done.set()

    redis = connect(args.url, cluster=args.cluster, socket_timeout=5, socket_connect_timeout=2)
    consumer = Consumer(
        _nodes(args),
        redis=redis,
        handler=show,
        concurrency=args.concurrency,
        mixed_pool=args.mixed_pool,
    )
    consumer.start()
    try:
        done.wait(args.duration or None)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.stop()
        redis.close()
    return 0


def stats(args: argparse.Namespace) -> int:
    """Print ready / delayed / reserved / buried counts of the tube on every node."""
    for node in _nodes(args):
        conn = Connection(node)
        try:
            stats: dict[str, Any] = conn.stats_tube()
        except RqSchedError as exc:
            print(f"{node.endpoint}\t{node.tube}\tunreachable: {exc}")
            continue
        finally:
            conn.close()
        counts = " ".join(
            f"{state}={stats.get(f'current-jobs-{state}', 0)}"
            for state in ("ready", "delayed", "reserved", "buried")
        )
        print(f"{node.endpoint}\t{node.tube}\t{counts}")
    return 0


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise DqConfigError(
            f"--at {text!r} is not ISO 8601 (e.g. 2030-01-01T09:00:00+00:00)"
        ) from exc
