"""The worker's background components driven one tick at a time with a manual clock
(forwarder, recoverer, janitor, heartbeat), the marker watcher, lease renewal, and the
server configuration's validation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio

from rq_sched import (
    Client,
    Inspector,
    ManualClock,
    Router,
    Server,
    ServerConfig,
    Task,
    TaskState,
    ValidationError,
    scripts,
)
from rq_sched import ops as script_ops
from rq_sched.clock import to_ms
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.models import ServerInfo, WorkerInfo
from rq_sched.worker import janitor
from rq_sched.worker.component import cancel_and_wait
from rq_sched.worker.config import parse_queues
from rq_sched.worker.forwarder import Forwarder
from rq_sched.worker.heartbeat import Heartbeat, LeaseKeeper
from rq_sched.worker.janitor import Janitor
from rq_sched.worker.processor import Processor
from rq_sched.worker.recoverer import Recoverer
from rq_sched.worker.runners import Runners
from rq_sched.worker.wakeup import MarkerWatcher, block_limit
from tests.script_support import redis_ms
from tests.worker_support import Recorder, running_server, texts, wait_until

T = TypeVar("T")


def run_async(redis_url: str, scenario: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
    """Run ``scenario`` with an async client on a fresh event loop, closing the client after."""

    async def main() -> T:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def _pending(r: redis.Redis, keys: QueueKeys) -> list[str]:
    return texts(reversed(r.lrange(keys.pending, 0, -1)))


def test_forwarder_moves_each_task_when_due_and_sleeps_until_the_next(
    redis_url: str, r: redis.Redis, namespace: str, clock: ManualClock, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    first = client.enqueue("t", 1, process_in=10)
    retry_like = client.enqueue("t", 2, process_in=20)
    forwarded: list[float] = []

    async def scenario(aredis: redis.asyncio.Redis) -> None:
        forwarder = Forwarder(
            aredis,
            {"default": keys},
            clock=clock,
            sweep_interval=3600,
            on_forwarded=lambda: forwarded.append(clock.now()),
        )
        assert await forwarder.tick() == pytest.approx(10)  # the start-up sweep learnt the due time
        assert _pending(r, keys) == []
        clock.advance(9.99)
        assert await forwarder.tick() == pytest.approx(0.01)
        assert _pending(r, keys) == []
        clock.advance(0.01)
        assert await forwarder.tick() == pytest.approx(10)
        assert _pending(r, keys) == [first.id]
        assert forwarded == [clock.now()]
        # A task due sooner, announced by a marker wake-up, shortens the sleep.
        sooner = client.enqueue("t", 3, process_in=3)
        forwarder.due_at("default", to_ms(clock.now() + 3))
        assert await forwarder.tick() == pytest.approx(3)
        clock.advance(10)
        assert await forwarder.tick() == pytest.approx(3600 - 20, abs=0.01)  # next: the sweep
        assert _pending(r, keys) == [first.id, sooner.id, retry_like.id]

    run_async(redis_url, scenario)


def test_forwarder_running_in_the_background_wakes_on_due_at(
    redis_url: str, r: redis.Redis, namespace: str, clock: ManualClock, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")

    async def scenario(aredis: redis.asyncio.Redis) -> None:
        moved = asyncio.Event()
        forwarder = Forwarder(
            aredis, {"default": keys}, clock=clock, sweep_interval=3600, on_forwarded=moved.set
        )
        forwarder.start()  # sweeps once, then sleeps for an hour: nothing is scheduled
        try:
            await asyncio.sleep(0.05)
            task = client.enqueue("t", 1, process_in=5)
            clock.advance(5)
            forwarder.due_at("default", to_ms(clock.now()))
            await asyncio.wait_for(moved.wait(), 5)
            assert _pending(r, keys) == [task.id]
        finally:
            await forwarder.stop()

    run_async(redis_url, scenario)


def test_marker_watcher_reports_ready_and_due_wake_ups(
    redis_url: str, namespace: str, clock: ManualClock, client: Client
) -> None:
    keys = {q: QueueKeys(namespace, q) for q in ("a", "b")}

    async def scenario(aredis: redis.asyncio.Redis) -> None:
        ready = asyncio.Event()
        due: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        watcher = MarkerWatcher(
            aredis,
            {k.marker: q for q, k in keys.items()},
            on_ready=ready.set,
            on_due=lambda q, ms: due.put_nowait((q, ms)),
            timeout=3600,
        )
        job = asyncio.create_task(watcher.run())
        try:
            scheduled = client.enqueue("t", 1, queue="b", process_in=30)
            assert await asyncio.wait_for(due.get(), 5) == ("b", to_ms(clock.now() + 30))
            assert not ready.is_set()
            client.enqueue("t", 2, queue="a")
            await asyncio.wait_for(ready.wait(), 5)
            assert scheduled.id
        finally:
            await cancel_and_wait([job])
            assert job.cancelled()

    run_async(redis_url, scenario)


def test_blocking_waits_stay_within_the_clients_socket_timeout() -> None:
    default = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0")
    unlimited = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=None)
    explicit = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0?socket_timeout=12")
    assert block_limit(default, 30) == 4.0  # redis-py's default socket timeout is 5 s
    assert block_limit(unlimited, 30) == 30
    assert block_limit(explicit, 30) == 11
    assert block_limit(explicit, 2) == 2


def _lease(r: redis.Redis, keys: QueueKeys, lease_ms: int, count: int = 10) -> list[str]:
    reply = scripts.run(r, *script_ops.dequeue(keys, lease_ms, count))
    return [leased.id for leased in script_ops.parse_dequeue(reply)]


def _expire(r: redis.Redis, keys: QueueKeys, task_id: str) -> None:
    """The lease runs out by Redis TIME (the clock leases are judged by)."""
    r.zadd(keys.lease, {task_id: redis_ms(r) - 1}, xx=True)


def test_recoverer_returns_expired_leases_and_counts_the_losses(
    redis_url: str, r: redis.Redis, namespace: str, clock: ManualClock, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    task = client.enqueue("t", 1)
    kept = client.enqueue("t", 2)
    assert _lease(r, keys, 60_000, 1) == [task.id]
    assert _lease(r, keys, 60_000, 1) == [kept.id]
    woken: list[bool] = []

    async def scenario(aredis: redis.asyncio.Redis) -> None:
        recoverer = Recoverer(
            aredis,
            {"default": keys},
            clock=clock,
            interval=4,
            lease_duration=10,
            limits=script_ops.ArchiveLimits(),
            on_recovered=lambda: woken.append(True),
        )
        assert await recoverer.tick() == 4
        assert (_pending(r, keys), woken) == ([], [])
        _expire(r, keys, task.id)
        assert await recoverer.recover("default", keys) == [task.id]
        assert woken == [True]

    run_async(redis_url, scenario)
    assert _pending(r, keys) == [task.id]
    assert r.hget(keys.lost, task.id) == b"1"
    assert r.zrange(keys.lease, 0, -1) == [kept.id.encode()]


def test_a_task_lost_more_than_max_retry_times_is_archived_without_running(
    redis_url: str, r: redis.Redis, namespace: str, clock: ManualClock, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    task = client.enqueue("crash:worker", None, max_retry=1)

    async def lose_twice(aredis: redis.asyncio.Redis) -> None:
        recoverer = Recoverer(
            aredis, {"default": keys}, clock=clock, interval=4, lease_duration=10,
            limits=script_ops.ArchiveLimits(), on_recovered=lambda: None,
        )  # fmt: skip
        for _ in range(2):
            assert _lease(r, keys, 60_000) == [task.id]
            _expire(r, keys, task.id)
            assert await recoverer.recover("default", keys) == [task.id]

    run_async(redis_url, lose_twice)
    ran = Recorder()
    router = Router()

    @router.task("crash:worker")
    async def crash(t: Task) -> None:
        ran.add(t.id)

    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        wait_until(lambda: r.zscore(keys.archived, task.id) is not None, what="archived")
    assert ran.items == []
    info = inspector.get_task("default", task.id)
    assert info.state is TaskState.ARCHIVED
    assert info.last_error == (
        "SkipRetry: lease expired 2 times: the worker running it died or hung each time"
    )
    assert r.hexists(keys.lost, task.id) == 0


def test_janitors_warn_while_servers_of_a_queue_keep_different_archive_limits(
    redis_url: str, namespace: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Servers of one queue with different archive limits overwrite each other's, and the
    smaller trims what the other means to keep: a 45-minute soak lost 3,071 archived tasks to
    an `rq-sched worker` left at the default 10,000 beside servers keeping ten million."""
    keys = QueueKeys(namespace, "default")
    big_limits = script_ops.ArchiveLimits(max_size=10_000_000, max_age_s=30 * 86400)

    async def scenario(aredis: redis.asyncio.Redis) -> None:
        big = Janitor(aredis, {"default": keys}, clock=clock, interval=60, limits=big_limits)
        await big.tick()
        small = Janitor(
            aredis, {"default": keys}, clock=clock, interval=60, limits=script_ops.ArchiveLimits()
        )
        with caplog.at_level(logging.WARNING, logger="rq_sched"):
            await small.tick()
            await small.tick()  # its own limits are stored now: nothing more to say
            await big.tick()  # the other server finds these and says so too
            await small.tick()  # the same value again: not repeated within WARN_EVERY_S
            clock.advance(janitor.WARN_EVERY_S)
            await big.tick()  # both repeat it while the mismatch lasts
            await small.tick()

    run_async(redis_url, scenario)
    warnings = [rec.getMessage() for rec in caplog.records if "archive limits" in rec.getMessage()]
    assert len(warnings) == 4, warnings
    assert "max_size=10000000" in warnings[0]
    assert "max_size=10000," in warnings[0]


def test_janitor_drops_expired_completed_tasks_and_trims_the_archive(
    redis_url: str, r: redis.Redis, namespace: str, clock: ManualClock, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    done = [client.enqueue("t", i).id for i in range(3)]
    _lease(r, keys, 30_000)
    acks = [
        script_ops.Ack(i, int(r.hget(keys.token, i) or 0), to_ms(clock.now() + 10), b"result")
        for i in done
    ]
    scripts.run(r, *script_ops.done(keys, acks, clock.now()))
    inspector = Inspector(r, namespace=namespace, clock=clock)
    archived = []
    for i in range(5):
        archived.append(client.enqueue("t", 10 + i).id)
        inspector.archive_task("default", archived[-1])
        clock.advance(1)
    limits = script_ops.ArchiveLimits(max_size=2, max_age_s=3600)

    async def scenario(aredis: redis.asyncio.Redis) -> None:
        janitor = Janitor(aredis, {"default": keys}, clock=clock, interval=60, limits=limits)
        assert await janitor.trim(keys) == (0, 3)  # the oldest archived beyond two
        clock.advance(5.001)
        assert await janitor.tick() == 60
        assert r.zcard(keys.completed) == 0

    run_async(redis_url, scenario)
    assert texts(r.zrange(keys.archived, 0, -1)) == archived[3:]
    assert sorted(texts(r.hkeys(keys.msg))) == sorted(archived[3:])
    assert r.hlen(keys.result) == 0


def _processor(aredis: redis.asyncio.Redis, config: ServerConfig, clock: ManualClock) -> Processor:
    keys = {q: QueueKeys(config.namespace, q) for q in config.queues}
    runners = Runners(threads=1, processes=1)
    runners.close()  # no handler runs in these tests
    return Processor(
        aredis, config=config, router=Router(), runners=runners, clock=clock, keys=keys
    )


def test_heartbeat_writes_server_info_with_a_ttl_and_clears_it(
    redis_url: str, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    config = ServerConfig(
        queues={"a": 2, "b": 1}, concurrency=7, heartbeat_interval=4, namespace=namespace
    )
    keys = GlobalKeys(namespace)

    async def scenario(aredis: redis.asyncio.Redis) -> None:
        beat = Heartbeat(
            aredis,
            server_id="srv-1",
            config=config,
            processor=_processor(aredis, config, clock),
            clock=clock,
            status=lambda: "running",
        )
        assert await beat.tick() == 4
        info = ServerInfo.from_json(r.get(keys.server("srv-1")) or b"")
        assert (info.id, info.host, info.pid) == ("srv-1", socket.gethostname(), os.getpid())
        assert (info.queues, info.concurrency, info.status) == ({"a": 2, "b": 1}, 7, "running")
        assert (info.active, info.processed, info.failed) == (0, 0, 0)
        assert 0 < r.ttl(keys.server("srv-1")) <= 12
        assert r.zscore(keys.servers, "srv-1") == to_ms(clock.now() + 12)
        assert r.exists(keys.workers("srv-1")) == 0
        await beat.clear()

    run_async(redis_url, scenario)
    assert r.exists(keys.server("srv-1"), keys.workers("srv-1")) == 0
    assert r.zscore(keys.servers, "srv-1") is None


def test_a_running_server_reports_its_workers_and_clears_them_on_shutdown(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    release = threading.Event()
    router = Router()

    @router.task("hb:block")
    def block(task: Task) -> None:
        release.wait(10)

    task = Client(r, namespace=namespace).enqueue("hb:block", None, queue="q1")
    keys = GlobalKeys(namespace)
    options: dict[str, Any] = {"queues": {"q1": 1}, "concurrency": 3}
    with running_server(redis_url, router, namespace=namespace, **options) as server:
        workers = wait_until(lambda: r.hgetall(keys.workers(server.id)), what="a worker record")
        assert 0 < r.ttl(keys.workers(server.id)) <= 3 * server.config.heartbeat_interval
        info = ServerInfo.from_json(r.get(keys.server(server.id)) or b"")
        release.set()
    worker = WorkerInfo.from_json(workers[task.id.encode()])
    assert (worker.task_id, worker.task_type, worker.queue) == (task.id, "hb:block", "q1")
    assert (info.active, info.concurrency, info.queues) == (1, 3, {"q1": 1})
    assert r.exists(keys.server(server.id), keys.workers(server.id)) == 0
    assert r.zscore(keys.servers, server.id) is None


def test_lease_keeper_says_when_its_renewals_ran_late(
    redis_url: str, namespace: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose loop was starved for most of a lease says so, so the re-runs that follow
    are explained (the 45-minute soak's "unexplained" concurrent runs had no such record)."""
    config = ServerConfig(queues={"default": 1}, lease_duration=3.0, namespace=namespace)

    async def scenario(aredis: redis.asyncio.Redis) -> None:
        processor = _processor(aredis, config, clock)
        processor.leased = lambda: {"default": [("held", 1)]}  # type: ignore[method-assign]
        keeper = LeaseKeeper(
            aredis, {"default": QueueKeys(namespace, "default")},
            processor=processor, clock=clock, lease_duration=3.0,
        )  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="rq_sched"):
            assert await keeper.tick() == 1.0  # on time: nothing to say
            keeper.renewed_at -= 2.5
            await keeper.tick()

    run_async(redis_url, scenario)
    late = [rec.getMessage() for rec in caplog.records if "last renewed" in rec.getMessage()]
    assert len(late) == 1, late
    assert late[0].startswith("lease-keeper: 2.5")


def test_leases_are_renewed_while_a_handler_runs_past_them(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    release = threading.Event()
    ran = Recorder()
    router = Router()

    @router.task("lease:long")
    def long(task: Task) -> None:
        ran.add(task.id)
        release.wait(10)

    task = Client(r, namespace=namespace).enqueue("lease:long", None)
    lease_key = QueueKeys(namespace, "default").lease
    fast: dict[str, Any] = {"lease_duration": 1.0, "recover_interval": 0.1}
    with (
        running_server(redis_url, router, namespace=namespace, **fast),
        running_server(redis_url, router, namespace=namespace, **fast),
    ):
        ran.wait_for(1)
        first = r.zscore(lease_key, task.id)
        assert first is not None
        # Renewed well past the first expiry, with a recoverer running every 0.1 s meanwhile.
        wait_until(
            lambda: (r.zscore(lease_key, task.id) or 0) > first + 2000, what="lease renewals"
        )
        release.set()
        wait_until(lambda: r.zcard(lease_key) == 0, what="the task acknowledged")
    assert ran.items == [task.id]
    assert r.hlen(QueueKeys(namespace, "default").lost) == 0


def test_server_config_refuses_bad_values_with_a_clear_message() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"queues": {}}, "queues must name at least one queue"),
        ({"queues": {"a": 0}}, "queue 'a': weight must be an int >= 1, got 0"),
        ({"queues": {"a": True}}, "weight must be an int >= 1"),
        ({"concurrency": 0}, "concurrency must be an int >= 1, got 0"),
        ({"batch_size": 1.5}, "batch_size must be an int >= 1"),
        ({"processes": -1}, "processes must be an int >= 0"),
        ({"lease_duration": 0}, "lease_duration must be at least 1 ms"),
        ({"idle_timeout": -1}, "idle_timeout must be at least 1 ms"),
        ({"shutdown_timeout": -1}, "shutdown_timeout must be >= 0 seconds"),
        # Found by the adversarial review: accepted, then failing or hanging deep in the server.
        ({"queues": ["a"]}, "queues must map queue names to weights"),
        ({"concurrency": 2**64}, "concurrency must be an int from 1 to"),
        ({"batch_size": 10**9}, "batch_size must be an int from 1 to"),
        ({"processes": True}, "processes must be an int >= 0"),
        ({"archive_limits": 5}, "archive_limits must be rq_sched.ArchiveLimits("),
        ({"shutdown_timeout": float("inf")}, "shutdown_timeout must be a finite number"),
        ({"shutdown_timeout": 10**400}, "shutdown_timeout must be a finite number"),
        ({"lease_duration": float("nan")}, "lease_duration must be a finite number"),
        ({"heartbeat_interval": "5"}, "heartbeat_interval must be a timedelta or a number of"),
    ]
    for options, message in cases:
        with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
            ServerConfig(**options)


def test_server_takes_either_a_config_or_options() -> None:
    aredis = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(ValidationError, match="either config= or keyword options"):
        Server(aredis, config=ServerConfig(), concurrency=3)
    assert Server(aredis, concurrency=3).config.concurrency == 3


def test_parse_queues_reads_weights_and_refuses_malformed_text() -> None:
    assert parse_queues("critical=6,default=3,low") == {"critical": 6, "default": 3, "low": 1}
    with pytest.raises(ValidationError, match="bad weight in --queues 'a=x'"):
        parse_queues("a=x")
    with pytest.raises(ValidationError, match=r"expected e\.g\. critical=6,default=3,low=1"):
        parse_queues("=3")
    with pytest.raises(ValidationError, match=r"expected e\.g\."):
        parse_queues("a=1,,b=2")


def test_stop_asked_before_serve_started_still_stops_the_server(
    redis_url: str, namespace: str
) -> None:
    server = Server.from_url(redis_url, namespace=namespace)
    server.stop()

    async def serve() -> None:
        try:
            await asyncio.wait_for(server.serve(Router()), 10)
        finally:
            await server.redis.aclose()

    asyncio.run(serve())
    assert server.started.is_set()
    assert server.stopped.is_set()
