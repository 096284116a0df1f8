"""``rq-sched worker`` from the command line: it runs tasks from weighted queues, stops cleanly
on SIGINT, and refuses bad arguments with a clear message and exit code 2.
"""

from __future__ import annotations

import signal

import pytest
import redis

from rq_sched import Client
from rq_sched.cli import build_parser
from rq_sched.keys import QueueKeys
from tests.worker_support import (
    cli_worker,
    stop_process,
    texts,
    wait_server_registered,
    wait_until,
)


def test_worker_command_runs_tasks_from_weighted_queues_and_stops_on_sigint(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    log = f"{namespace}:log"
    client = Client(r, namespace=namespace)
    ids = {
        client.enqueue("rec:push", {"url": redis_url, "log": log}, queue=q).id
        for q in ("a", "b", "a", "b")
    }
    proc = cli_worker(redis_url, namespace, "--queues", "a=2,b=1", "--concurrency", "2")
    wait_server_registered(r, namespace, proc)
    wait_until(lambda: r.llen(log) >= 4, timeout=20, what="4 tasks run")
    code, err = stop_process(proc, signal.SIGINT)
    assert code == 0, err
    assert set(texts(r.lrange(log, 0, -1))) == ids


def test_worker_command_keeps_the_archive_limits_it_is_given(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    """Without these options an `rq-sched worker` beside servers with a bigger archive
    trimmed theirs to its default 10,000 (the 45-minute soak's 3,071 lost tasks)."""
    proc = cli_worker(
        redis_url, namespace, "--archive-max-size", "123456", "--archive-max-age", "7200"
    )
    wait_server_registered(r, namespace, proc)
    limits = QueueKeys(namespace, "default").limits
    wait_until(lambda: r.hget(limits, "max_size") is not None, timeout=20, what="janitor ran")
    code, err = stop_process(proc, signal.SIGINT)
    assert code == 0, err
    assert r.hgetall(limits) == {b"max_size": b"123456", b"max_age_ms": b"7200000"}


def run_cli(argv: list[str]) -> int:
    """Run a subcommand in this process (without reconfiguring logging); its exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tests.handlers:router", "--queues", "a=x"], "bad weight in --queues 'a=x'"),
        (["tests.handlers:router", "--queues", "=2"], "expected e.g. critical=6,default=3,low=1"),
        (["tests.handlers:router", "--queues", "a=0"], "weight must be an int >= 1"),
        (["tests.handlers:router", "--concurrency", "0"], "concurrency must be an int >= 1"),
        (["tests.handlers:router", "--workers", "0"], "--workers must be an int >= 1"),
        (
            ["tests.handlers:router", "--archive-max-size", "-1"],
            "archive max_size must be an int >= 0",
        ),
        (
            ["tests.handlers:router", "--archive-max-age", "nan"],
            "archive max_age_s must be a finite number of seconds",
        ),
        (
            ["tests.handlers:NOT_A_ROUTER"],
            "tests.handlers:NOT_A_ROUTER is a str, not a rq_sched.Router",
        ),
        (["tests.handlers:missing"], "'tests.handlers' has no attribute 'missing'"),
        (["tests.no_such_module:router"], "cannot import 'tests.no_such_module'"),
        (["tests.handlers"], "expected module:attribute (e.g. myapp.tasks:router)"),
    ],
)
def test_worker_command_refuses_bad_arguments_with_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["worker", *argv, "--url", "redis://127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rq-sched: error: ")
    assert message in err
