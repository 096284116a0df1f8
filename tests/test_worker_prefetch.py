"""A wake-up costs one round trip: the dequeue travels with the marker wait.

An idle worker writes its dequeue right behind its ``BZPOPMIN``; Redis runs it the moment the
wait ends. These tests check, on a real server, that the task a wake-up brings is leased by that
dequeue (no second request after the wake-up), that its start needs no lease renewal however
long the wait lasted (the wait is bracketed by Redis ``TIME``), that a limit's timer ends such a
wait early (``CLIENT UNBLOCK``) so its dequeue runs, and that a wait which dies or meets a
flushed script cache loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import redis

from rq_sched import Client, FlowLimits, Router, scripts
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import RedisServer
from rq_sched.ops import dequeue
from rq_sched.worker.prefetch import Prefetch, PrefetchingWait
from tests.worker_support import Recorder, monitored, queue_state, running_server, wait_until

QUIET: dict[str, Any] = {"forward_sweep_interval": 3600.0, "idle_timeout": 3600.0}
"""No periodic sweep and no idle look: only the marker wait can bring a task."""


def _warm(conn: redis.Redis, namespace: str, ran: Recorder, queue: str = "default") -> None:
    """One task through the worker: a worker whose waits time out waits without a dequeue
    behind; a wake-up makes it send the dequeue with the next wait."""
    Client(conn, namespace=namespace).enqueue("w:t", "warm-up", queue=queue)
    ran.wait_for(1)
    ran.items.remove("warm-up")
    wait_until(lambda: _waiting_with_dequeue(conn), what="a wait with dequeue")


def _waiting_with_dequeue(conn: redis.Redis) -> dict[str, Any] | None:
    """The client blocked in BZPOPMIN with a command queued behind it, if any."""
    for client in conn.client_list():
        if client.get("cmd") == "bzpopmin" and int(client.get("qbuf", 0)) > 0:
            return client
    return None


def test_a_wake_up_leases_through_the_dequeue_sent_with_the_wait(
    fresh_redis: RedisServer, namespace: str
) -> None:
    ran = Recorder()
    router = Router()
    router.add("w:t", lambda task: ran.add(task.payload))
    with (
        redis.Redis.from_url(fresh_redis.url) as conn,
        running_server(fresh_redis.url, router, namespace=namespace, **QUIET),
    ):
        client = Client(conn, namespace=namespace)
        _warm(conn, namespace, ran)
        for n in range(3):
            waiter = wait_until(lambda: _waiting_with_dequeue(conn), what="a wait with dequeue")
            with monitored(fresh_redis.url) as seen:
                client.enqueue("w:t", n)
                ran.wait_for(n + 1)
                wait_until(lambda: _waiting_with_dequeue(conn), what="the next wait")
            dequeues = [who for who, name in seen if name == "EVALSHA dequeue"]
            # Exactly one dequeue ran, and it came from the connection that was waiting: it
            # was written before the wake-up, so the wake-up cost no second round trip.
            assert dequeues == [waiter["addr"]], seen
        assert ran.items == [0, 1, 2]
        assert queue_state(conn, namespace)["pending"] == 0


def test_a_task_woken_after_a_long_wait_starts_without_renewing_its_lease(
    fresh_redis: RedisServer, namespace: str
) -> None:
    """The dequeue was sent long before it ran (more than the 1 s start window): the TIME
    bracket tells when Redis read the lease, so the handler starts at once."""
    ran = Recorder()
    router = Router()
    router.add("w:t", lambda task: ran.add(task.payload))
    with (
        redis.Redis.from_url(fresh_redis.url) as conn,
        running_server(fresh_redis.url, router, namespace=namespace, **QUIET),
    ):
        _warm(conn, namespace, ran)
        time.sleep(1.5)  # the wait itself is what is tested: it must outlast the start window
        with monitored(fresh_redis.url) as seen:
            Client(conn, namespace=namespace).enqueue("w:t", "late")
            ran.wait_for(1)
        assert ran.items == ["late"]
        assert "EVALSHA extend" not in [name for _, name in seen], seen


def test_a_refused_queue_is_tried_again_though_a_dequeue_waits(
    fresh_redis: RedisServer, namespace: str
) -> None:
    """Queue "bad" is refused (its flow key holds a string: WRONGTYPE) while its task waits;
    the worker then waits with a dequeue of "good" behind, holding its slots, and no marker
    will end that wait. When the refusal's pause ends, the wait is ended early (``CLIENT
    UNBLOCK``) so the fetch loop asks "bad" again: its task runs once the key is repaired,
    long before the hour-long idle timeout."""
    ran = Recorder()
    router = Router()
    router.add("w:t", lambda task: ran.add(task.payload))
    bad = QueueKeys(namespace, "bad")
    with redis.Redis.from_url(fresh_redis.url) as conn:
        conn.set(bad.flow, "not a hash")
        Client(conn, namespace=namespace).enqueue("w:t", "from bad", queue="bad")
        with running_server(
            fresh_redis.url,
            router,
            namespace=namespace,
            queues={"bad": 2, "good": 1},
            strict_priority=True,
            **QUIET,
        ) as server:
            wait_until(lambda: server.processor and "bad" in server.processor.fetcher._refused)
            wait_until(lambda: _waiting_with_dequeue(conn), what="a wait with dequeue")
            conn.delete(bad.flow)
            assert ran.wait_for(1, timeout=15) == ["from bad"]


def test_a_rate_limited_queue_runs_every_task_with_waits_carrying_dequeues(
    fresh_redis: RedisServer, namespace: str
) -> None:
    """At 2/s the later tasks wait for tokens: the worker's timer, not a marker, starts them
    (while a rate timer runs, the worker waits without a dequeue behind)."""
    ran = Recorder()
    router = Router()
    router.add("w:t", lambda task: ran.add(task.payload))
    with (
        redis.Redis.from_url(fresh_redis.url) as conn,
        running_server(fresh_redis.url, router, namespace=namespace, **QUIET),
    ):
        client = Client(conn, namespace=namespace)
        _warm(conn, namespace, ran)
        client.set_flow("default", FlowLimits(rate="2/s"))
        for n in range(3):
            client.enqueue("w:t", n)
        items = ran.wait_for(3, timeout=10)
    assert sorted(items) == [0, 1, 2]


class _Recording:
    """A prefetcher that records what the wait hands it."""

    def __init__(self) -> None:
        self.answers: list[tuple[Any, float]] = []
        self.failures: list[BaseException] = []

    async def settle(self) -> None:
        return None

    def plan_prefetch(self) -> Prefetch | None:
        raise AssertionError("the wait is driven directly here")

    def prefetched(self, plan: Prefetch, reply: Any, confirmed_at: float) -> None:
        self.answers.append((reply, confirmed_at))

    def prefetch_failed(self, plan: Prefetch, error: BaseException) -> None:
        self.failures.append(error)


def _plan(namespace: str) -> Prefetch:
    return Prefetch("default", 5, dequeue(QueueKeys(namespace, "default"), 10_000, 5))


def test_a_wait_whose_redis_dies_tells_the_processor_and_raises(
    fresh_redis: RedisServer, namespace: str
) -> None:
    keys = QueueKeys(namespace, "default")

    async def scenario() -> _Recording:
        recording = _Recording()
        conn = redis.asyncio.Redis.from_url(fresh_redis.url)
        await scripts.arun(conn, *_plan(namespace).call)  # load the script
        wait = PrefetchingWait(conn, [keys.marker], recording)
        waiting = asyncio.create_task(wait.wait(_plan(namespace), 30.0, 5.0))
        await asyncio.sleep(0.2)
        fresh_redis.stop(kill=True)
        try:
            await asyncio.wait_for(waiting, 10)
        except (redis.RedisError, OSError):
            pass
        else:
            raise AssertionError("a wait on a dead server must raise")
        finally:
            await conn.aclose()
        return recording

    recording = asyncio.run(scenario())
    assert recording.answers == []
    assert len(recording.failures) == 1


def test_a_wait_that_meets_a_flushed_script_cache_leases_nothing(
    fresh_redis: RedisServer, namespace: str
) -> None:
    """SCRIPT FLUSH while the dequeue waits: it fails with NOSCRIPT, the task stays pending
    (the processor then asks in the usual way, which loads the script again)."""
    keys = QueueKeys(namespace, "default")
    sync = redis.Redis.from_url(fresh_redis.url)

    async def scenario() -> _Recording:
        recording = _Recording()
        conn = redis.asyncio.Redis.from_url(fresh_redis.url)
        await scripts.arun(conn, *_plan(namespace).call)
        wait = PrefetchingWait(conn, [keys.marker], recording)
        waiting = asyncio.create_task(wait.wait(_plan(namespace), 30.0, 5.0))
        await asyncio.sleep(0.2)
        sync.script_flush()
        Client(sync, namespace=namespace).enqueue("w:t", 1)
        woken = await asyncio.wait_for(waiting, 10)
        assert woken is not None and woken[1] in (b"r", "r")
        await conn.aclose()
        return recording

    recording = asyncio.run(scenario())
    assert recording.answers == []
    assert [type(e).__name__ for e in recording.failures] == ["NoScriptError"]
    assert queue_state(sync, namespace)["pending"] == 1
    sync.close()


def test_the_bracket_counts_the_time_the_wait_took(
    fresh_redis: RedisServer, namespace: str
) -> None:
    """The read is dated by Redis's own clock between two TIME calls: a task that arrives 0.5 s
    into the wait is confirmed about 0.5 s after the batch was sent, never before the send."""
    keys = QueueKeys(namespace, "default")
    sync = redis.Redis.from_url(fresh_redis.url)

    async def scenario() -> tuple[_Recording, float]:
        recording = _Recording()
        conn = redis.asyncio.Redis.from_url(fresh_redis.url)
        await scripts.arun(conn, *_plan(namespace).call)
        wait = PrefetchingWait(conn, [keys.marker], recording)
        sent = time.monotonic()
        waiting = asyncio.create_task(wait.wait(_plan(namespace), 30.0, 5.0))
        await asyncio.sleep(0.5)
        Client(sync, namespace=namespace).enqueue("w:t", 1)
        await asyncio.wait_for(waiting, 10)
        await conn.aclose()
        return recording, sent

    recording, sent = asyncio.run(scenario())
    ((reply, confirmed_at),) = recording.answers
    assert len(reply) == 5  # one task leased: id, message, lost, token, cancelled
    assert sent + 0.4 <= confirmed_at <= time.monotonic()
    sync.close()


def test_a_kick_before_the_wait_is_known_is_not_lost(
    fresh_redis: RedisServer, namespace: str
) -> None:
    keys = QueueKeys(namespace, "default")

    async def scenario() -> _Recording:
        recording = _Recording()
        conn = redis.asyncio.Redis.from_url(fresh_redis.url)
        await scripts.arun(conn, *_plan(namespace).call)
        wait = PrefetchingWait(conn, [keys.marker], recording)
        waiting = asyncio.create_task(wait.wait(_plan(namespace), 3600.0, 5.0))
        for _ in range(100):  # until the batch is written, its connection's id still unread
            await asyncio.sleep(0)
            if wait._phase == "writing":
                break
        wait.kick()
        woken = await asyncio.wait_for(waiting, 10)
        assert woken is None  # ended by the kick, nothing popped
        await conn.aclose()
        return recording

    recording = asyncio.run(scenario())
    assert [reply for reply, _ in recording.answers] == [[]]


def test_a_user_without_client_commands_waits_plainly_and_loses_nothing(
    fresh_redis: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that denies CLIENT (or TIME) cannot carry a dequeue behind the wait: the worker
    says so once and waits plainly from then on; every task runs."""
    with redis.Redis.from_url(fresh_redis.url) as admin:
        admin.acl_setuser(
            "narrow", enabled=True, passwords=["+pw"], keys=["~*"], channels=["&*"],
            commands=["+@all", "-client"],
        )  # fmt: skip
    port = fresh_redis.url.rsplit(":", 1)[1]
    url = f"redis://narrow:pw@127.0.0.1:{port}"
    ran = Recorder()
    router = Router()
    router.add("w:t", lambda task: ran.add(task.payload))
    with (
        caplog.at_level(logging.WARNING, logger="rq_sched"),
        redis.Redis.from_url(fresh_redis.url) as conn,
        running_server(url, router, namespace=namespace, **QUIET),
    ):
        client = Client(conn, namespace=namespace)
        for n in range(5):
            client.enqueue("w:t", n)
            ran.wait_for(n + 1)
    assert ran.items == [0, 1, 2, 3, 4]
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "wake-up wait failed" in m], messages
    assert len([m for m in messages if "waits carry no dequeue" in m]) == 1, messages


def _acl_url(server: RedisServer, conn: redis.Redis, user: str, *rules: str) -> str:
    """A URL for a new ACL user with every permission but ``rules``' exceptions."""
    conn.acl_setuser(
        user,
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", *rules],
    )
    host_port = server.url.split("://", 1)[1]
    return f"redis://{user}:pw@{host_port}"


def test_a_user_denied_client_id_loses_no_task_and_waits_plainly(
    fresh_redis: RedisServer, namespace: str
) -> None:
    """An ACL user may lack CLIENT. Redis runs the rest of the batch after refusing CLIENT ID:
    with a marker present the dequeue leases at once. Its answer must reach the processor (not
    be dropped with the connection, leasing the task to nobody), and later waits must carry no
    dequeue, since such a wait could not be ended early."""
    keys = QueueKeys(namespace, "default")
    sync = redis.Redis.from_url(fresh_redis.url)
    url = _acl_url(fresh_redis, sync, "noclient", "-client")

    async def scenario() -> tuple[_Recording, PrefetchingWait]:
        recording = _Recording()
        conn = redis.asyncio.Redis.from_url(url)
        await scripts.arun(conn, *_plan(namespace).call)
        Client(sync, namespace=namespace).enqueue("w:t", 1)  # the task and its "r" marker
        wait = PrefetchingWait(conn, [keys.marker], recording)
        woken = await asyncio.wait_for(wait.wait(_plan(namespace), 30.0, 5.0), 10)
        assert woken is not None and woken[1] in (b"r", "r")
        await conn.aclose()
        return recording, wait

    recording, wait = asyncio.run(scenario())
    assert [len(reply) for reply, _ in recording.answers] == [5], recording.failures
    assert wait.usable is False
    assert queue_state(sync, namespace)["lease"] == 1  # leased to the processor, told so
    sync.close()


def test_a_user_denied_client_unblock_waits_without_a_dequeue(
    fresh_redis: RedisServer, namespace: str
) -> None:
    """A wait this user could not end early (no CLIENT UNBLOCK) would hold its reserved slots
    through every kick until it timed out: the worker waits plainly and still runs tasks."""
    ran = Recorder()
    router = Router()
    router.add("w:t", lambda task: ran.add(task.payload))
    with redis.Redis.from_url(fresh_redis.url) as conn:
        url = _acl_url(fresh_redis, conn, "nounblock", "-client|unblock")
        with running_server(url, router, namespace=namespace, **QUIET):
            client = Client(conn, namespace=namespace)
            for n in range(3):
                client.enqueue("w:t", n)
                ran.wait_for(n + 1)
                wait_until(
                    lambda: any(c.get("cmd") == "bzpopmin" for c in conn.client_list()),
                    what="the next wait",
                )
                assert _waiting_with_dequeue(conn) is None
    assert ran.items == [0, 1, 2]


def test_a_wait_on_a_wrong_typed_marker_hands_over_what_its_dequeue_leased(
    fresh_redis: RedisServer, namespace: str
) -> None:
    """Redis refuses the BZPOPMIN (the marker key holds a string) and runs the dequeue behind
    it at once: the wait raises the refusal, but only after handing the leased task over."""
    keys = QueueKeys(namespace, "default")
    sync = redis.Redis.from_url(fresh_redis.url)

    async def scenario() -> tuple[_Recording, BaseException | None]:
        recording = _Recording()
        conn = redis.asyncio.Redis.from_url(fresh_redis.url)
        await scripts.arun(conn, *_plan(namespace).call)
        Client(sync, namespace=namespace).enqueue("w:t", 1)
        sync.set(keys.marker, "not a sorted set")
        wait = PrefetchingWait(conn, [keys.marker], recording)
        raised: BaseException | None = None
        try:
            await asyncio.wait_for(wait.wait(_plan(namespace), 30.0, 5.0), 10)
        except redis.ResponseError as exc:
            raised = exc
        await conn.aclose()
        return recording, raised

    recording, raised = asyncio.run(scenario())
    assert raised is not None and "WRONGTYPE" in str(raised)
    assert [len(reply) for reply, _ in recording.answers] == [5], recording.failures
    assert queue_state(sync, namespace)["lease"] == 1
    sync.close()


def test_a_kick_that_reaches_redis_before_the_wait_blocks_is_sent_again(
    fresh_redis: RedisServer, namespace: str
) -> None:
    """A proxy may deliver the batch in pieces: the connection's id is answered, the kick's
    ``CLIENT UNBLOCK`` arrives, and only then the ``BZPOPMIN``. The first unblock answers 0;
    the kick tries again while its wait is the one blocked, and ends it once it blocks."""
    keys = QueueKeys(namespace, "default")

    async def scenario() -> float:
        conn = redis.asyncio.Redis.from_url(fresh_redis.url)
        wait = PrefetchingWait(conn, [keys.marker], _Recording())
        raw = await conn.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await raw.send_command("CLIENT", "ID")
            # The state of a wait whose id was read but whose BZPOPMIN has not arrived yet.
            wait._waits, wait._phase, wait._client_id = 1, "blocked", int(await raw.read_response())
            wait.kick()
            await asyncio.sleep(0.05)  # the first unblock has found nothing blocked
            started = time.monotonic()
            await raw.send_command("BZPOPMIN", keys.marker, 30)
            assert await raw.read_response(timeout=5) is None  # ended by the kick, not at 30 s
            return time.monotonic() - started
        finally:
            wait._phase = "idle"
            await conn.connection_pool.release(raw)
            await conn.aclose()

    assert asyncio.run(scenario()) < 5
