"""The dq producer API on rq_sched's Redis backend, and the factory that switches backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from rq_sched import Client, Inspector, TaskNotFoundError, TaskState
from rq_sched.dq import (
    BeanstalkdConfig,
    DqConfigError,
    Producer,
    ProducerProtocol,
    RedisConfig,
    RedisProducer,
    config_from_dict,
    make_producer,
    wire,
)
from tests.dq.conftest import StartServers, nodes_of


@pytest.fixture
def real_client(r: redis.Redis, namespace: str) -> Client:
    return Client(r, namespace=namespace)


def _task_id(ids: str, queue: str) -> str:
    prefix = f"redis/{queue}/"
    assert ids.startswith(prefix), ids
    return ids.removeprefix(prefix)


def test_delay_schedules_a_task_with_the_body_as_payload(
    real_client: Client, r: redis.Redis, namespace: str
) -> None:
    producer = RedisProducer(real_client, type="dq:job", queue="jobs")
    before = datetime.now(UTC)
    ids = producer.delay(b"\x00hello", timedelta(seconds=30))
    info = Inspector(r, namespace=namespace).get_task("jobs", _task_id(ids, "jobs"))
    assert (info.type, info.state, info.payload) == ("dq:job", TaskState.SCHEDULED, b"\x00hello")
    assert info.process_at is not None
    assert timedelta(seconds=29) < info.process_at - before < timedelta(seconds=31)


def test_at_schedules_at_the_time_and_refuses_the_past(
    real_client: Client, r: redis.Redis, namespace: str
) -> None:
    producer = RedisProducer(real_client, type="dq:job", queue="jobs")
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    ids = producer.at(b"later", when)
    info = Inspector(r, namespace=namespace).get_task("jobs", _task_id(ids, "jobs"))
    assert (info.state, info.process_at) == (TaskState.SCHEDULED, when)
    with pytest.raises(DqConfigError, match="in the past"):
        producer.at(b"x", datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(DqConfigError, match="naive"):
        producer.at(b"x", datetime.now() + timedelta(minutes=1))


def test_revoke_deletes_the_scheduled_tasks_and_skips_gone_ones(
    real_client: Client, r: redis.Redis, namespace: str
) -> None:
    producer = RedisProducer(real_client, type="dq:job", queue="jobs")
    keep = producer.delay(b"keep", 60)
    first, second = producer.delay(b"a", 60), producer.delay(b"b", 60)
    producer.revoke(f"{first},{second}")
    producer.revoke(first)  # already gone
    inspector = Inspector(r, namespace=namespace)
    for ids in (first, second):
        with pytest.raises(TaskNotFoundError):
            inspector.get_task("jobs", _task_id(ids, "jobs"))
    assert inspector.get_task("jobs", _task_id(keep, "jobs")).payload == b"keep"
    assert inspector.queue_info("jobs").scheduled == 1


def test_revoke_refuses_beanstalkd_ids(real_client: Client) -> None:
    producer = RedisProducer(real_client, type="dq:job")
    with pytest.raises(DqConfigError, match="redis/<queue>/<task id>"):
        producer.revoke("127.0.0.1:11300/tube/5")


def test_both_producers_satisfy_one_protocol(
    real_client: Client, beanstalkds: StartServers, tube: str
) -> None:
    servers = beanstalkds(2)
    with Producer(nodes_of(servers, tube)) as beanstalk_producer:
        producers: list[ProducerProtocol] = [
            beanstalk_producer,
            RedisProducer(real_client, type="t"),
        ]
        assert all(isinstance(p, ProducerProtocol) for p in producers)


def test_the_factory_switches_backends_by_config(
    beanstalkds: StartServers, tube: str, redis_url: str, namespace: str, r: redis.Redis
) -> None:
    servers = beanstalkds(2)
    configs: list[dict[str, Any]] = [
        {"backend": "beanstalkd", "nodes": [s.endpoint for s in servers], "tube": tube},
        {"backend": "redis", "url": redis_url, "type": "dq:job", "queue": tube,
         "namespace": namespace},
    ]  # fmt: skip

    def send_and_revoke(producer: ProducerProtocol) -> str:
        ids = producer.delay(b"switch", 60)
        producer.revoke(ids)
        return producer.delay(b"switch", 60)

    beanstalk_producer, redis_producer = (make_producer(c) for c in configs)
    try:
        beanstalk_ids = send_and_revoke(beanstalk_producer)
        redis_ids = send_and_revoke(redis_producer)
    finally:
        beanstalk_producer.close()
        redis_producer.close()
    assert [r.endpoint for r in wire.split_ids(beanstalk_ids)] == [s.endpoint for s in servers]
    assert [s.jobs_in(tube) for s in servers] == [1, 1]
    info = Inspector(r, namespace=namespace).get_task(tube, _task_id(redis_ids, tube))
    assert info.payload == b"switch"
    assert Inspector(r, namespace=namespace).queue_info(tube).scheduled == 1


def test_config_dicts_parse_both_shapes_and_refuse_mistakes() -> None:
    beanstalk = config_from_dict(
        {"backend": "beanstalkd", "tube": "t",
         "nodes": ["127.0.0.1:11300", {"endpoint": "127.0.0.1:11301", "tube": "other"}]}
    )  # fmt: skip
    assert isinstance(beanstalk, BeanstalkdConfig)
    assert [(n.endpoint, n.tube) for n in beanstalk.nodes] == [
        ("127.0.0.1:11300", "t"),
        ("127.0.0.1:11301", "other"),
    ]
    assert config_from_dict({"backend": "redis", "url": "redis://h:1/0", "type": "x"}) == (
        RedisConfig(url="redis://h:1/0", type="x")
    )
    mistakes: list[tuple[dict[str, Any], str]] = [
        ({"backend": "kafka"}, "backend"),
        ({"backend": "beanstalkd", "nodes": ["127.0.0.1:11300"], "tube": "t"}, "at least 2"),
        ({"backend": "beanstalkd", "nodes": ["a:1", "b:2"]}, "no tube"),
        ({"backend": "beanstalkd", "nodes": ["a:1", "b:2"], "tube": "t", "x": 1}, "unknown"),
        ({"backend": "redis", "url": "redis://h:1/0"}, "needs url and type"),
    ]
    for config, message in mistakes:
        with pytest.raises(DqConfigError, match=message):
            config_from_dict(config)
