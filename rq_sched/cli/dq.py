"""``rq-sched dq``: the beanstalkd bridge for operators — put a delayed job, revoke it, watch a
tube (consume and print its jobs), and count a tube's jobs on every node.

Nodes come from ``--node host:port`` (repeatable) or ``RQ_SCHED_DQ_NODES`` (comma-separated),
the tube from ``--tube`` or ``RQ_SCHED_DQ_TUBE``. ``put --backend redis`` enqueues on rq_sched's
Redis instead, the way a producer configured for that backend would.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rq_sched.cli.common import add_redis_options, fail
from rq_sched.client import Client
from rq_sched.connection import connect
from rq_sched.dq import (
    Beanstalk,
    Consumer,
    DqConfigError,
    Job,
    Producer,
    ProducerProtocol,
    RedisProducer,
)
from rq_sched.dq.beanstalk import Connection
from rq_sched.dq.redis_producer import ID_PREFIX
from rq_sched.errors import RqSchedError, ValidationError

Action = Callable[[argparse.Namespace], int]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rq-sched dq put|revoke|consume|stats``."""
    parser = sub.add_parser(
        "dq",
        help="beanstalkd bridge (go-queue dq): put, revoke, consume, stats",
        description="Operate go-queue dq tubes on beanstalkd (or the Redis backend).",
    )
    actions = parser.add_subparsers(dest="dq_command", required=True, metavar="ACTION")
    put = _action(actions, "put", "put a delayed job; prints its id", _put)
    when = put.add_mutually_exclusive_group()
    when.add_argument("--delay", type=float, default=0.0, help="seconds from now (%(default)s)")
    when.add_argument("--at", help="ISO 8601 time with an offset, e.g. 2030-01-01T09:00:00+00:00")
    put.add_argument("body", help="job body; '-' reads it from stdin")
    put.add_argument("--backend", choices=("beanstalkd", "redis"), default="beanstalkd")
    put.add_argument("--type", default="dq", help="task type with --backend redis (%(default)s)")
    put.add_argument("--queue", default="default", help="queue with --backend redis")
    revoke = _action(actions, "revoke", "delete a job by the id put printed", _revoke)
    revoke.add_argument("ids")
    consume = _action(actions, "consume", "consume a tube, printing each job", _consume)
    consume.add_argument("--max", type=int, default=0, help="stop after this many jobs")
    consume.add_argument("--duration", type=float, default=0.0, help="stop after seconds")
    consume.add_argument("--concurrency", type=int, default=1, help="workers per node")
    _action(actions, "stats", "job counts of the tube on every node", _stats)


def _action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    action: Action,
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help_text, description=help_text.capitalize())
    parser.add_argument(
        "--node",
        action="append",
        default=None,
        help="beanstalkd host:port, repeatable (env RQ_SCHED_DQ_NODES, comma-separated)",
    )
    parser.add_argument(
        "--tube",
        default=os.environ.get("RQ_SCHED_DQ_TUBE", "tube"),
        help="tube (env RQ_SCHED_DQ_TUBE; default %(default)s)",
    )
    add_redis_options(parser)
    parser.set_defaults(handler=lambda args: _run(action, args))
    return parser


def _run(action: Action, args: argparse.Namespace) -> int:
    try:
        return action(args)
    except (DqConfigError, ValidationError) as exc:
        return fail(str(exc))
    except RqSchedError as exc:
        print(f"rq-sched: {exc}", file=sys.stderr)
        return 1


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


def _put(args: argparse.Namespace) -> int:
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


def _revoke(args: argparse.Namespace) -> int:
    backend = "redis" if args.ids.startswith(f"{ID_PREFIX}/") else "beanstalkd"
    producer = _producer(args, backend)
    try:
        producer.revoke(args.ids)
    finally:
        producer.close()
    return 0


def _consume(args: argparse.Namespace) -> int:
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
    consumer = Consumer(_nodes(args), redis=redis, handler=show, concurrency=args.concurrency)
    consumer.start()
    try:
        done.wait(args.duration or None)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.stop()
        redis.close()
    return 0


def _stats(args: argparse.Namespace) -> int:
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
