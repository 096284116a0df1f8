"""go-queue's ``DqConf``, read from the same mapping or file a Go service reads, so one config
serves the Go and the Python services on a tube.

Go's shape (``dq/config.go``, with go-zero's ``redis.RedisConf``)::

    DqConf:
      Beanstalks:
        - Endpoint: 10.0.0.1:11300
          Tube: emails
        - Endpoint: 10.0.0.2:11300
          Tube: emails
      Redis:
        Host: 10.0.0.5:6379      # cluster: "h1:p1,h2:p2"
        Type: node               # or cluster
        Pass: secret             # optional; User and Tls too

Keys match case-insensitively, as go-zero's config loader matches them (``Beanstalks``,
``beanstalks`` and ``BEANSTALKS`` are one key). go-zero's Redis options that only tune its own
client (``NonBlock``, ``PingTimeout``, ``Protocol``, ...) are accepted and ignored; any other key
is an error. Files: ``.json``, ``.toml`` and ``.yaml``/``.yml`` (PyYAML, in the ``dq`` extra).
"""

from __future__ import annotations

import importlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rq_sched.connection import connect
from rq_sched.dq.beanstalk import Beanstalk
from rq_sched.dq.errors import DqConfigError
from rq_sched.scripts import SyncRedis

_GO_ONLY_REDIS_KEYS = frozenset(
    {"nonblock", "pingtimeout", "protocol", "disableidentity", "maintnotifications"}
)
_REDIS_TYPES = ("node", "cluster")


@dataclass(frozen=True, kw_only=True)
class GoRedisConf:
    """go-zero's ``RedisConf``: where the consumers' dedup keys live.

    Raises:
        DqConfigError: empty host, or a type other than node or cluster.
    """

    host: str
    type: str = "node"
    user: str = ""
    password: str = ""
    tls: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise DqConfigError("Redis.Host must be 'host:port' (a cluster: 'h1:p1,h2:p2')")
        if self.type not in _REDIS_TYPES:
            raise DqConfigError(f"Redis.Type must be 'node' or 'cluster', got {self.type!r}")

    @property
    def cluster(self) -> bool:
        return self.type == "cluster"

    @property
    def url(self) -> str:
        """A redis URL for the (first) host; a cluster client finds the other nodes."""
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.user or self.password:
            auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
        return f"{scheme}://{auth}{self.host.split(',')[0].strip()}/0"

    def connect(self) -> SyncRedis:
        """A sync client for this Redis (the caller closes it)."""
        return connect(self.url, cluster=self.cluster, socket_timeout=5, socket_connect_timeout=2)


@dataclass(frozen=True, kw_only=True)
class DqConf:
    """go-queue's ``DqConf``: the beanstalkd nodes (with their tubes) and the dedup Redis.

    Producers need two or more nodes and ignore ``redis``; consumers need ``redis``.
    """

    beanstalks: tuple[Beanstalk, ...]
    redis: GoRedisConf | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DqConf:
        """Read Go's mapping (any key case).

        Raises:
            DqConfigError: missing or unknown keys, or malformed values.
        """
        fields = _lower_keys(data, "DqConf", {"beanstalks", "redis"})
        items = fields.get("beanstalks")
        if not isinstance(items, list) or not items:
            raise DqConfigError("DqConf needs Beanstalks: a list of {Endpoint, Tube}")
        nodes = []
        for item in items:
            node = _lower_keys(item, "a Beanstalks item", {"endpoint", "tube"})
            if "endpoint" not in node or "tube" not in node:
                raise DqConfigError(f"Beanstalks item {item!r} needs Endpoint and Tube")
            nodes.append(Beanstalk(node["endpoint"], node["tube"]))
        redis = fields.get("redis")
        return cls(beanstalks=tuple(nodes), redis=None if redis is None else _redis(redis))

    @classmethod
    def load(cls, path: str | Path, *, section: str | None = None) -> DqConf:
        """Read a ``.yaml``/``.yml``, ``.json`` or ``.toml`` file, optionally one top-level
        ``section`` of it (e.g. ``"DqConf"`` in a Go service's config; any case).

        Raises:
            DqConfigError: unreadable file, unknown extension, missing section, bad content.
        """
        data = _read(Path(path))
        if section is not None:
            found = {str(k).lower(): v for k, v in data.items()}.get(section.lower())
            if not isinstance(found, Mapping):
                raise DqConfigError(f"{path}: no mapping under the key {section!r}")
            data = found
        return cls.from_dict(data)

    def redis_conf(self) -> GoRedisConf:
        """The Redis section.

        Raises:
            DqConfigError: there is none (consumers need it).
        """
        if self.redis is None:
            raise DqConfigError("this DqConf has no Redis section; consumers need one")
        return self.redis


def is_dq_conf(data: Mapping[str, Any]) -> bool:
    """Whether a mapping is in Go's DqConf shape (has a Beanstalks key, any case)."""
    return any(isinstance(k, str) and k.lower() == "beanstalks" for k in data)


def _redis(data: object) -> GoRedisConf:
    fields = _lower_keys(
        data, "Redis", {"host", "type", "user", "pass", "tls", *_GO_ONLY_REDIS_KEYS}
    )
    tls = fields.get("tls", False)
    if not isinstance(tls, bool):
        raise DqConfigError(f"Redis.Tls must be true or false, got {tls!r}")
    return GoRedisConf(
        host=fields.get("host", ""),
        type=fields.get("type", "node"),
        user=str(fields.get("user", "")),
        password=str(fields.get("pass", "")),
        tls=tls,
    )


def _lower_keys(data: object, what: str, allowed: set[str] | frozenset[str]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise DqConfigError(f"{what} must be a mapping, got {type(data).__name__}")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).lower()
        if name not in allowed:
            raise DqConfigError(
                f"unknown key {key!r} in {what}; go-queue's keys are "
                + ", ".join(sorted(k for k in allowed if k not in _GO_ONLY_REDIS_KEYS))
            )
        if name in fields:
            raise DqConfigError(f"key {key!r} appears twice in {what} (keys ignore case)")
        fields[name] = value
    return fields


def _read(path: Path) -> Mapping[str, Any]:
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DqConfigError(f"cannot read the dq config {path}: {exc}") from exc
    try:
        if suffix == ".json":
            data: object = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = _yaml(text)
        else:
            raise DqConfigError(f"{path}: use a .yaml, .yml, .json or .toml file")
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise DqConfigError(f"{path} does not parse: {exc}") from exc
    if not isinstance(data, Mapping):
        raise DqConfigError(f"{path} must hold a mapping at the top")
    return data


def _yaml(text: str) -> object:
    try:
        yaml: Any = importlib.import_module("yaml")  # optional: only YAML files need it
    except ImportError as exc:
        raise DqConfigError(
            "reading YAML needs PyYAML: pip install 'rq_sched[dq]' (or use JSON or TOML)"
        ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from exc
