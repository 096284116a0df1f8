"""Redis Sentinel: the ``redis+sentinel://`` URL form, accepted by every entry point, against a
real password-protected group (1 master, 1 replica, 3 sentinels) on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import pytest
import redis

from rq_sched import AsyncClient, Client, Inspector, ManualClock, Router, Task, TaskState
from rq_sched.cli import main
from rq_sched.connection import (
    AsyncSentinelRedis,
    SentinelRedis,
    SentinelURL,
    aconnect,
    connect,
    describe,
    parse_sentinel_url,
)
from rq_sched.dq import Beanstalk, Consumer, wire
from rq_sched.dq.config import make_producer
from rq_sched.dq.dedup import Claim
from rq_sched.errors import MissingBinaryError, RedisUnavailableError, ValidationError
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import SENTINEL_MASTER, RedisServer, SentinelGroup, free_port
from rq_sched.scheduler.scheduler import Scheduler
from rq_sched.web import create_app
from tests.web.serve import serving
from tests.worker_support import Recorder, running_server, wait_until

pytestmark = pytest.mark.sentinel


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A Sentinel group whose master and sentinels both ask for a password."""
    found = SentinelGroup(
        tmp_path_factory.mktemp("sentinel"), password="pw:/@x", sentinel_password="spw"
    )
    try:
        yield found.start()
    finally:
        found.stop()


@pytest.fixture
def url(group: SentinelGroup) -> str:
    # The master password holds URL delimiters; percent-encoded, as in any URL.
    return group.url.replace("pw:/@x", "pw%3A%2F%40x")


# -- the URL form ----------------------------------------------------------------------------


def test_a_sentinel_url_names_sentinels_master_db_and_credentials() -> None:
    found = parse_sentinel_url(
        "redis+sentinel://app:s%40cret@h1:26380,h2,[::1]:26381/main/3?sentinel_password=sp"
    )
    assert found == SentinelURL(
        sentinels=(("h1", 26380), ("h2", 26379), ("::1", 26381)),
        master="main",
        db=3,
        username="app",
        password="s@cret",
        sentinel_password="sp",
    )
    assert parse_sentinel_url("redis+sentinel://h1/main").db == 0
    assert parse_sentinel_url("redis+sentinel://:pw@h1/main/").password == "pw"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h1:26379", "no master name"),
        ("redis+sentinel://h1:26379/", "no master name"),
        ("redis+sentinel://h1:99999/m", "bad port"),
        ("redis+sentinel://h1:x/m", "bad port"),
        ("redis+sentinel://h1,,h2/m", "empty"),
        ("redis+sentinel://:26379/m", "no host"),
        ("redis+sentinel://h1/m/zero", "database must be a number"),
        ("redis+sentinel://h1/m/0/extra", "too many path parts"),
        ("redis+sentinel://h1/m?service=x", "unknown option(s) service"),
        ("redis+sentinel://[::1/m", "IPv6"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_naming_the_part(url: str, says: str) -> None:
    with pytest.raises(ValidationError, match="redis\\+sentinel://") as caught:
        connect(url)
    assert says in str(caught.value)


def test_error_messages_hide_the_passwords() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_sentinel_url("redis+sentinel://u:topsecret@h1/m/x?sentinel_password=alsosecret")
    assert "topsecret" not in str(caught.value)
    assert "alsosecret" not in str(caught.value)
    assert "u:***@h1" in str(caught.value)


def test_a_sentinel_url_with_cluster_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a Redis Cluster"):
        connect("redis+sentinel://h1/m", cluster=True)
    with pytest.raises(ValidationError, match="not a Redis Cluster"):
        aconnect("redis+sentinel://h1/m", cluster=True)


def test_an_unknown_scheme_is_a_validation_error_listing_the_forms() -> None:
    with pytest.raises(ValidationError, match="redis\\+sentinel://") as caught:
        connect("http://u:hidden@localhost:6379/0")
    assert "hidden" not in str(caught.value)


def test_no_reachable_sentinel_is_redis_unavailable_naming_the_master() -> None:
    dead = f"redis+sentinel://127.0.0.1:{free_port()}/{SENTINEL_MASTER}/0"
    with (
        Client.from_url(dead, namespace="nobody") as client,
        pytest.raises(RedisUnavailableError, match="Sentinel failover is under way"),
    ):
        client.enqueue("t", 1)


# -- every entry point -----------------------------------------------------------------------


def test_client_and_inspector_from_a_sentinel_url(url: str, namespace: str) -> None:
    with Client.from_url(url, namespace=namespace) as client:
        assert isinstance(client.redis, SentinelRedis)
        info = client.enqueue("s:t", {"n": 1})
        assert describe(client.redis).endswith(" (Sentinel master 'mymaster')")
    inspector = Inspector.from_url(url, namespace=namespace)
    try:
        assert inspector.get_task("default", info.id).state is TaskState.PENDING
    finally:
        inspector.close()


def test_async_client_from_a_sentinel_url(url: str, namespace: str) -> None:
    async def scenario() -> str:
        client = AsyncClient.from_url(url, namespace=namespace)
        try:
            assert isinstance(client.redis, AsyncSentinelRedis)
            return (await client.enqueue("s:t", 2)).id
        finally:
            await client.close()

    task_id = asyncio.run(scenario())
    with closing(Inspector.from_url(url, namespace=namespace)) as inspector:
        assert inspector.get_task("default", task_id).payload == 2


def test_a_worker_server_from_a_sentinel_url_runs_tasks(url: str, namespace: str) -> None:
    seen = Recorder()
    router = Router()

    @router.task("s:t")
    async def note(task: Task) -> None:
        seen.add(task.payload)

    with running_server(url, router, namespace=namespace):
        with Client.from_url(url, namespace=namespace) as client:
            for i in range(3):
                client.enqueue("s:t", i)
        assert sorted(seen.wait_for(3)) == [0, 1, 2]


def test_a_scheduler_from_a_sentinel_url_enqueues_ticks(url: str, namespace: str) -> None:
    clock = ManualClock()
    scheduler = Scheduler.from_url(url, namespace=namespace, clock=clock)
    try:
        scheduler.add("beat", "@every 10s", "beat")
        scheduler.tick(clock.now() + 10)
    finally:
        scheduler.close()
    with closing(Inspector.from_url(url, namespace=namespace)) as inspector:
        assert inspector.queues() == ["default"]
        assert inspector.queue_info("default").size == 1


def test_the_cli_takes_a_sentinel_url(
    url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enqueue", "s:cli", '{"a": 1}', "--url", url, "--namespace", namespace]) == 0
    assert main(["queues", "--url", url, "--namespace", namespace, "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("[") :])[0]["info"]["pending"] == 1


def test_the_dashboard_serves_a_sentinel_master(url: str, namespace: str) -> None:
    with Client.from_url(url, namespace=namespace) as client:
        client.enqueue("s:web", 1)
    with (
        closing(Inspector.from_url(url, namespace=namespace)) as inspector,
        serving(create_app(inspector)) as http,
    ):
        queues = http.get("/api/queues").json()
        nodes = http.get("/api/redis").json()
    assert [q["info"]["queue"] for q in queues] == ["default"]
    assert "(Sentinel master 'mymaster')" in json.dumps(nodes)


def test_dq_redis_producer_and_consumer_dedup_from_a_sentinel_url(url: str, namespace: str) -> None:
    producer = make_producer(
        {"backend": "redis", "url": url, "type": "job", "queue": "jobs", "namespace": namespace}
    )
    try:
        producer.delay(b"hello", 0)
    finally:
        producer.close()
    with closing(Inspector.from_url(url, namespace=namespace)) as inspector:
        assert inspector.queue_info("jobs").size == 1
    consumer = Consumer([Beanstalk(f"127.0.0.1:{free_port()}", "t")], redis=url)
    try:
        assert isinstance(consumer.redis, SentinelRedis)
        key = f"{namespace}-dedup"
        hold = consumer._dedup.claim(key, wire.JobRef("127.0.0.1:1", "t", 1))
        assert hold.claim is Claim.NEW
        assert consumer.redis.exists(key) == 1
    finally:
        consumer.redis.close()


def test_closing_a_sentinel_client_closes_the_sentinel_connections(url: str) -> None:
    client = connect(url)
    assert isinstance(client, SentinelRedis)
    client.ping()
    manager = client.sentinel_manager
    assert manager is not None

    def open_sockets() -> int:
        pools = [s.connection_pool for s in manager.sentinels]
        conns = [c for p in pools for c in [*p._available_connections, *p._in_use_connections]]
        return sum(c._sock is not None for c in conns)

    assert open_sockets() >= 1, "the master was found through a sentinel"
    client.close()
    assert open_sockets() == 0


# -- following a failover --------------------------------------------------------------------


def test_scheduler_and_inspector_follow_a_manual_failover(tmp_path: Path, namespace: str) -> None:
    with ExitStack() as stack:
        group = SentinelGroup(tmp_path / "group")
        stack.callback(group.stop)  # registered first, so it runs last, whatever fails before
        group.start()
        clock = ManualClock()
        scheduler = Scheduler.from_url(group.url, namespace=namespace, clock=clock)
        stack.callback(scheduler.close)
        inspector = Inspector.from_url(group.url, namespace=namespace)
        stack.callback(inspector.close)
        _follow(group, scheduler, inspector, clock, namespace)


def _follow(
    group: SentinelGroup,
    scheduler: Scheduler,
    inspector: Inspector,
    clock: ManualClock,
    namespace: str,
) -> None:
    scheduler.add("beat", "@every 10s", "beat")
    start = clock.now()
    scheduler.tick(start + 10)
    assert inspector.queue_info("default").size == 1
    old = group.master()
    with redis.Redis(port=next(s for s in group.servers if s is not old).port) as replica:
        wait_until(lambda: replica.dbsize() == old_dbsize(old), what="the replica in sync")
    group.sentinel_command(0, "sentinel", "failover", SENTINEL_MASTER)
    new_port = group.wait_for_new_master(old.port)
    # Ticks are exactly-once per fire time, so ticking again until it lands is safe; the
    # clients' pools move to the new master within MASTER_CHECK_INTERVAL.
    with redis.Redis(port=new_port) as new_master:
        keys = QueueKeys(namespace, "default")
        wait_until(
            lambda: scheduler.tick(start + 20) > 0 and new_master.hlen(keys.msg) == 2,
            timeout=5.0,  # Redis demotes the old master only after about 10 s
            what="the scheduler's tick on the new master",
        )
    wait_until(
        lambda: inspector.queue_info("default").size == 2,
        timeout=5.0,
        what="the inspector on it too",
    )
    assert describe(inspector.redis).startswith(f"127.0.0.1:{new_port} ")


def old_dbsize(server: RedisServer) -> int:
    with redis.Redis(port=server.port) as conn:
        return int(conn.dbsize())


def test_a_missing_redis_sentinel_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(MissingBinaryError, match="apt-get install -y redis-sentinel"):
        SentinelGroup(tmp_path).start()
    assert not any(tmp_path.iterdir()), "nothing was started"
