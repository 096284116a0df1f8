"""``rq-sched dev``: everything on one machine in one command, for trying rq_sched out.

Starts a private ``redis-server`` (AOF in a local data dir, so tasks survive restarts), a worker
server, the periodic scheduler and the dashboard, seeds a demo task set, and stops it all on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path

from rq_sched.cli.common import fail, import_object
from rq_sched.client import Client
from rq_sched.errors import RqSchedError
from rq_sched.local_redis import MissingBinaryError, RedisServer
from rq_sched.router import Router
from rq_sched.worker.server import Server

DEV_QUEUES = {"critical": 6, "default": 3, "low": 1}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "dev",
        help="private Redis + worker + scheduler + dashboard, with demo tasks",
        description="Start a private redis-server, a worker, the scheduler and the dashboard.",
    )
    parser.add_argument(
        "--data-dir", default="rq-sched-data", help="where Redis keeps its AOF (%(default)s)"
    )
    parser.add_argument("--redis-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--host", default="127.0.0.1", help="dashboard address (%(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="dashboard port (%(default)s)")
    parser.add_argument("--app", default="rq_sched.demo:router", help="router to run (%(default)s)")
    parser.add_argument("--no-demo", action="store_true", help="do not seed demo tasks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    router = import_object(args.app)
    if not isinstance(router, Router):
        return fail(f"{args.app} is not a rq_sched.Router")
    data_dir = Path(args.data_dir).resolve()
    try:
        redis = RedisServer(data_dir / "redis", port=args.redis_port, appendonly=True).start()
    except MissingBinaryError as exc:
        return fail(str(exc))
    try:
        asyncio.run(_serve(redis, router, args))
    finally:
        redis.stop()
        print("rq_sched dev: stopped (redis data kept in", data_dir, ")", flush=True)
    return 0


async def _serve(redis: RedisServer, router: Router, args: argparse.Namespace) -> None:
    from rq_sched.inspector.inspector import Inspector  # noqa: PLC0415 - the web extra is only needed here
    from rq_sched.scheduler.scheduler import Scheduler  # noqa: PLC0415
    from rq_sched.web import create_app, make_server  # noqa: PLC0415
    from rq_sched.web.security import LOOPBACK_HOSTS  # noqa: PLC0415

    url = redis.url
    scheduler = Scheduler.from_url(url)
    if args.app == "rq_sched.demo:router":
        scheduler.add("demo-hello", "@every 15s", "demo:hello", "the scheduler")
        scheduler.add("demo-flaky", "* * * * *", "demo:flaky", queue="low")
    # On loopback, also refuse foreign Host headers (DNS rebinding).
    hosts = LOOPBACK_HOSTS if args.host in LOOPBACK_HOSTS else None
    app = create_app(Inspector.from_url(url), allowed_hosts=hosts)
    web = make_server(app, host=args.host, port=args.port)
    server = Server.from_url(url, queues=DEV_QUEUES, concurrency=20)
    if not args.no_demo and args.app == "rq_sched.demo:router":
        _seed_demo(url)
    scheduler.start()
    web_task = asyncio.create_task(web.serve())
    _banner(redis, args, len(router.routes))
    try:
        await server.serve(router, handle_signals=True)
    finally:
        scheduler.stop()
        web.should_exit = True
        await asyncio.wait_for(web_task, 10)


def _seed_demo(url: str) -> None:
    """A handful of tasks in every state-to-be; fixed ids keep restarts from piling them up."""
    seeds: list[tuple[str, object, dict[str, object]]] = [
        ("demo:hello", "world", {}),
        ("demo:slow", 5, {"queue": "low"}),
        ("demo:sync", "Q3", {"retention": timedelta(hours=1)}),
        ("demo:hash", "seed", {"queue": "critical", "retention": timedelta(hours=1)}),
        ("demo:invalid", {"bad": True}, {}),
        ("demo:hello", "from the future", {"process_in": timedelta(minutes=2)}),
    ]
    seeds += [("demo:flaky", n, {"max_retry": 2}) for n in range(5)]
    with Client.from_url(url) as client:
        for index, (task_type, payload, options) in enumerate(seeds):
            with contextlib.suppress(RqSchedError):  # still live from an earlier run
                client.enqueue(task_type, payload, task_id=f"demo-{index}", **options)  # type: ignore[arg-type]


def _banner(redis: RedisServer, args: argparse.Namespace, routes: int) -> None:
    queues = " ".join(f"{q}={w}" for q, w in DEV_QUEUES.items())
    print(
        "rq_sched dev is running\n"
        f"  redis      {redis.url}  (pid {redis.pid}, AOF in {redis.directory})\n"
        f"  worker     queues {queues}, concurrency 20, {routes} task types from {args.app}\n"
        "  scheduler  running (entries from the demo)\n"
        f"  dashboard  http://{args.host}:{args.port}/\n"
        f"Enqueue from another shell: rq-sched enqueue demo:hello '\"you\"' --url {redis.url}\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
