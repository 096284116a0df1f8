"""``rq-sched dq``: put, consume, revoke and stats from the command line."""

from __future__ import annotations

import pytest
import redis

from rq_sched import Inspector, TaskState
from rq_sched.cli import main
from rq_sched.dq import wire
from tests.dq.conftest import BeanstalkdServer, StartServers


def _node_args(servers: list[BeanstalkdServer], tube: str) -> list[str]:
    return [arg for s in servers for arg in ("--node", s.endpoint)] + ["--tube", tube]


def test_put_then_consume_prints_the_job(
    beanstalkds: StartServers, tube: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    servers = beanstalkds(2)
    nodes = _node_args(servers, tube)
    assert main(["dq", "put", *nodes, "--delay", "0", "héllo"]) == 0
    ids = capsys.readouterr().out.strip()
    assert len(wire.split_ids(ids)) == 2
    assert main(["dq", "stats", *nodes]) == 0
    assert capsys.readouterr().out.count("ready=1") == 2
    code = main(
        [
            "dq",
            "consume",
            *nodes,
            "--url",
            redis_url,
            "--max",
            "1",
            "--duration",
            "10",
            "--mixed-pool",
        ]
    )
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{servers[0].endpoint}/{tube}/") or line.startswith(
        f"{servers[1].endpoint}/{tube}/"
    )
    assert line.endswith("\théllo")


def test_put_and_revoke_on_the_redis_backend(
    redis_url: str,
    namespace: str,
    r: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = ["--url", redis_url, "--namespace", namespace]
    args = ["dq", "put", "--backend", "redis", "--type", "t", "--queue", "q", "--delay", "60"]
    assert main([*args, *common, "body"]) == 0
    ids = capsys.readouterr().out.strip()
    task_id = ids.removeprefix("redis/q/")
    inspector = Inspector(r, namespace=namespace)
    assert inspector.get_task("q", task_id).state is TaskState.SCHEDULED
    assert main(["dq", "revoke", *common, ids]) == 0
    assert inspector.queue_info("q").scheduled == 0


def test_bad_usage_is_a_clear_error_not_a_traceback(
    beanstalkds: StartServers, tube: str, capsys: pytest.CaptureFixture[str]
) -> None:
    servers = beanstalkds(1)
    assert main(["dq", "put", *_node_args(servers, tube), "x"]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert main(["dq", "put", "--node", "127.0.0.1:1", "--node", "127.0.0.1:2", "--at",
                 "2030-01-01T09:00:00", "x"]) == 2  # fmt: skip
    assert "naive" in capsys.readouterr().err
