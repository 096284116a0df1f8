"""go-queue's DqConf accepted as Go writes it (capitalised keys, any case), so one config file
serves the Go and the Python services."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from rq_sched.dq import (
    Beanstalk,
    BeanstalkdConfig,
    Consumer,
    DqConf,
    DqConfigError,
    Producer,
    config_from_dict,
    make_producer,
    wire,
)
from tests.dq.conftest import BeanstalkdServer, Calls, StartServers


def _go_conf(servers: list[BeanstalkdServer], tube: str, redis_url: str) -> dict[str, Any]:
    host = redis_url.removeprefix("redis://").removesuffix("/0")
    return {
        "Beanstalks": [{"Endpoint": s.endpoint, "Tube": tube} for s in servers],
        "Redis": {"Host": host, "Type": "node", "Pass": "", "NonBlock": True},
    }


def _lower(data: object) -> object:
    if isinstance(data, dict):
        return {k.lower(): _lower(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_lower(v) for v in data]
    return data


@pytest.mark.parametrize("case", ["Go", "lower"])
def test_a_go_dqconf_serves_the_producer_and_the_consumer(
    beanstalkds: StartServers, tube: str, redis_url: str, case: str
) -> None:
    servers = beanstalkds(2)
    conf = _go_conf(servers, tube, redis_url)
    data: Any = conf if case == "Go" else _lower(conf)
    with Producer.from_conf(data) as producer:
        ids = producer.delay(b"configured", 0)
    assert [r.endpoint for r in wire.split_ids(ids)] == [s.endpoint for s in servers]
    calls = Calls()
    consumer = Consumer.from_conf(data, handler=calls)
    try:
        assert sorted(o.value for o in consumer.run_once()) == ["done", "duplicate"]
    finally:
        consumer.stop()
    assert [j.body for j in calls.jobs] == [b"configured"]


def test_make_producer_takes_the_go_shape(
    beanstalkds: StartServers, tube: str, redis_url: str
) -> None:
    servers = beanstalkds(2)
    conf = _go_conf(servers, tube, redis_url)
    assert config_from_dict(conf) == BeanstalkdConfig(
        nodes=tuple(Beanstalk(s.endpoint, tube) for s in servers)
    )
    producer = make_producer(DqConf.from_dict(conf))
    try:
        assert len(wire.split_ids(producer.delay(b"x", 5))) == 2
    finally:
        producer.close()


def test_the_redis_section_becomes_a_url_with_credentials_and_tls() -> None:
    conf = DqConf.from_dict(
        {
            "beanstalks": [{"endpoint": "10.0.0.1:11300", "tube": "t"}],
            "REDIS": {
                "HOST": "r1:6379,r2:6379",
                "type": "cluster",
                "User": "u",
                "Pass": "p@ss",
                "Tls": True,
            },
        }
    )
    redis = conf.redis_conf()
    assert (redis.url, redis.cluster) == ("rediss://u:p%40ss@r1:6379/0", True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"Redis": {"Host": "h:1"}}, "Beanstalks"),
        ({"Beanstalks": [{"Endpoint": "h:1"}]}, "Endpoint and Tube"),
        ({"Beanstalks": [{"Endpoint": "h:1", "Tube": "t"}], "Extra": 1}, "unknown key 'Extra'"),
        (
            {
                "Beanstalks": [{"Endpoint": "h:1", "Tube": "t"}],
                "Redis": {"Host": "h:1", "Type": "sentinel"},
            },
            "node' or 'cluster",
        ),
        ({"Beanstalks": [{"Endpoint": "h:1", "Tube": "t", "tube": "u"}]}, "twice"),
        ({"Beanstalks": [{"Endpoint": "nohost", "Tube": "t"}]}, "host:port"),
    ],
)
def test_malformed_dqconf_is_a_clear_error(data: dict[str, Any], message: str) -> None:
    with pytest.raises(DqConfigError, match=message):
        DqConf.from_dict(data)


def test_a_consumer_needs_the_redis_section() -> None:
    with pytest.raises(DqConfigError, match="no Redis section"):
        Consumer.from_conf({"Beanstalks": [{"Endpoint": "h:1", "Tube": "t"}]})


def test_a_go_service_config_file_is_read_by_section(tmp_path: Path) -> None:
    conf = {
        "Name": "mailer",
        "DqConf": {
            "Beanstalks": [{"Endpoint": "h:1", "Tube": "t"}],
            "Redis": {"Host": "r:6379", "Type": "node"},
        },
    }
    (tmp_path / "svc.json").write_text(json.dumps(conf))
    (tmp_path / "svc.yaml").write_text(
        "Name: mailer\n"
        "DqConf:\n"
        "  Beanstalks:\n"
        "    - Endpoint: h:1\n"
        "      Tube: t\n"
        "  Redis:\n"
        "    Host: r:6379\n"
        "    Type: node\n"
    )
    expected = DqConf.from_dict(conf["DqConf"])  # type: ignore[arg-type]
    assert DqConf.load(tmp_path / "svc.json", section="dqconf") == expected
    if importlib.util.find_spec("yaml") is None:  # PyYAML comes with the dq extra
        with pytest.raises(DqConfigError, match=r"rq_sched\[dq\]"):
            DqConf.load(tmp_path / "svc.yaml", section="DqConf")
    else:
        assert DqConf.load(tmp_path / "svc.yaml", section="DqConf") == expected
    with pytest.raises(DqConfigError, match="no mapping under"):
        DqConf.load(tmp_path / "svc.json", section="Dq")
