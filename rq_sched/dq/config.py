"""Building a dq producer from configuration, so switching backends is a config change.

Two shapes, as dataclasses or plain dicts (e.g. loaded from TOML, YAML or JSON)::

    {"backend": "beanstalkd", "nodes": ["10.0.0.1:11300", "10.0.0.2:11300"], "tube": "jobs"}
    {"backend": "redis", "url": "redis://10.0.0.5:6379/0", "type": "job", "queue": "jobs"}

``nodes`` items may also be ``{"endpoint": ..., "tube": ...}`` for a tube per node. go-queue's
own ``DqConf`` shape (``{"Beanstalks": [{"Endpoint": ..., "Tube": ...}], "Redis": {...}}``, see
:mod:`rq_sched.dq.goconf`) is accepted too and means beanstalkd. :func:`make_producer` returns
either producer behind the same protocol.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rq_sched.client import Client
from rq_sched.dq.beanstalk import Beanstalk
from rq_sched.dq.errors import DqConfigError
from rq_sched.dq.goconf import DqConf, is_dq_conf
from rq_sched.dq.producer import Producer, ProducerProtocol, check_nodes
from rq_sched.dq.redis_producer import RedisProducer
from rq_sched.keys import DEFAULT_NAMESPACE


@dataclass(frozen=True, kw_only=True)
class BeanstalkdConfig:
    """A beanstalkd producer: two or more nodes with distinct endpoints.

    Raises:
        DqConfigError: fewer than two nodes, duplicate endpoints, bad endpoint or tube.
    """

    nodes: tuple[Beanstalk, ...]
    connect_timeout: float = 2.0
    io_timeout: float = 5.0

    def __post_init__(self) -> None:
        check_nodes(self.nodes)


@dataclass(frozen=True, kw_only=True)
class RedisConfig:
    """An rq_sched producer: tasks of ``type`` in ``queue`` on the Redis at ``url``."""

    url: str
    type: str
    queue: str = "default"
    namespace: str = DEFAULT_NAMESPACE
    cluster: bool = False


ProducerConfig = BeanstalkdConfig | RedisConfig


def config_from_dict(data: Mapping[str, Any]) -> ProducerConfig:
    """Parse a producer config from a mapping with a ``backend`` key.

    Raises:
        DqConfigError: unknown backend, missing or unknown keys, malformed nodes.
    """
    if not isinstance(data, Mapping):
        raise DqConfigError(f"producer config must be a mapping, got {type(data).__name__}")
    if is_dq_conf(data):
        return BeanstalkdConfig(nodes=DqConf.from_dict(data).beanstalks)
    fields = dict(data)
    backend = fields.pop("backend", None)
    if backend == "beanstalkd":
        _check_keys(fields, {"nodes", "tube", "connect_timeout", "io_timeout"}, backend)
        nodes = _nodes(fields.pop("nodes", None), fields.pop("tube", None))
        return BeanstalkdConfig(nodes=nodes, **fields)
    if backend == "redis":
        _check_keys(fields, {f.name for f in dataclasses.fields(RedisConfig)}, backend)
        try:
            return RedisConfig(**fields)
        except TypeError as exc:
            raise DqConfigError(f"redis producer config: {exc} (needs url and type)") from exc
    raise DqConfigError(
        f"producer config 'backend' must be 'beanstalkd' or 'redis', got {backend!r}"
    )


def make_producer(config: ProducerConfig | DqConf | Mapping[str, Any]) -> ProducerProtocol:
    """Build the producer a config describes; ``close()`` it when done.

    Raises:
        DqConfigError: the config is malformed.
    """
    if isinstance(config, DqConf):
        config = BeanstalkdConfig(nodes=config.beanstalks)
    if not isinstance(config, BeanstalkdConfig | RedisConfig):
        config = config_from_dict(config)
    if isinstance(config, BeanstalkdConfig):
        return Producer(
            config.nodes, connect_timeout=config.connect_timeout, io_timeout=config.io_timeout
        )
    client = Client.from_url(config.url, cluster=config.cluster, namespace=config.namespace)
    return RedisProducer(client, type=config.type, queue=config.queue, close_client=True)


def _check_keys(fields: Mapping[str, Any], allowed: set[str], backend: str) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise DqConfigError(
            f"unknown key(s) for the {backend} producer: {', '.join(unknown)}; "
            f"allowed: backend, {', '.join(sorted(allowed))}"
        )


def _nodes(items: object, tube: object) -> tuple[Beanstalk, ...]:
    if not isinstance(items, Sequence) or isinstance(items, str | bytes) or not items:
        raise DqConfigError("beanstalkd producer config needs 'nodes': a list of 'host:port'")
    nodes = []
    endpoint: Any
    node_tube: Any
    for item in items:
        if isinstance(item, str):
            endpoint, node_tube = item, tube
        elif isinstance(item, Mapping) and set(item) <= {"endpoint", "tube"}:
            endpoint, node_tube = item.get("endpoint"), item.get("tube", tube)
        else:
            raise DqConfigError(f"node {item!r} must be 'host:port' or {{endpoint, tube}}")
        if node_tube is None:
            raise DqConfigError(f"node {endpoint!r} has no tube: set 'tube' in the config")
        nodes.append(Beanstalk(endpoint, node_tube))
    return tuple(nodes)
