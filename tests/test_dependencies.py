"""Dependencies (``depends_on``): a held task becomes pending exactly once, when every parent is
final, in any graph (diamonds, parents in other queues or cluster slots), with the parents'
outcomes in order; a failed parent cancels or not by policy; a crash between a parent's settle
and the delivery loses nothing (the sweep delivers), and repeated deliveries change nothing.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import msgpack
import pytest
import redis
import redis.asyncio

from rq_sched import (
    AsyncClient,
    Client,
    EnqueueManyError,
    Inspector,
    NewTask,
    Router,
    Task,
    TaskFailedError,
    TaskIdConflictError,
    TaskNotFoundError,
    ValidationError,
    ops,
    scripts,
    workflows,
)
from rq_sched.cli import main
from rq_sched.cli.admin import _describe
from rq_sched.connection import connect
from rq_sched.inspector.models import task_json
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage, decode
from rq_sched.models import ParentInfo
from rq_sched.worker.deliverer import Deliverer
from tests.script_support import NOW_MS, TOKEN
from tests.worker_support import Recorder, running_server


def _lease(r: Any, keys: QueueKeys, task_id: str) -> None:
    """Take a pending task as a worker would (so a test can settle it by script)."""
    r.lrem(keys.pending, 0, task_id)
    r.zadd(keys.lease, {task_id: NOW_MS * 2})
    r.hset(keys.token, task_id, TOKEN)


def _settle(r: Any, keys: QueueKeys, task_id: str, result: bytes = b"") -> list[Any]:
    """Complete a task by script as a worker would, without delivering (a crash right after)."""
    _lease(r, keys, task_id)
    ack = ops.Ack(task_id, TOKEN, result=result)
    reply: list[Any] = _run(r, ops.done(keys, [ack], NOW_MS / 1000))
    return reply


def _run(r: Any, call: Any) -> Any:
    return scripts.run(r, *call)


def _fail(r: Any, keys: QueueKeys, task_id: str, error: str) -> Any:
    _lease(r, keys, task_id)
    message = decode(r.hget(keys.msg, task_id), task_id=task_id).failed(error, NOW_MS)
    call = ops.archive_active(
        keys, task_id, TOKEN, encoded=message.encode(), unique=None, now_s=NOW_MS / 1000,
        limits=ops.ArchiveLimits(), count_failure=True, error=error,
    )  # fmt: skip
    return _run(r, call)


def _message(r: Any, keys: QueueKeys, task_id: str) -> TaskMessage:
    data: bytes = r.hget(keys.msg, task_id)
    return decode(data, task_id=task_id)


def _state(r: Any, keys: QueueKeys, task_id: str) -> str:
    if r.hexists(keys.held, task_id):
        return "held"
    if r.zscore(keys.archived, task_id) is not None:
        return "archived"
    if task_id.encode() in r.lrange(keys.pending, 0, -1):
        return "pending"
    return "gone" if not r.hexists(keys.msg, task_id) else "other"


# -- the store, driven step by step ----------------------------------------------------------


def test_a_diamond_releases_its_join_once_after_both_branches(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    a = client.enqueue("t", "a", task_id="A")
    client.enqueue("t", "b", task_id="B", depends_on=[a.id])
    client.enqueue("t", "c", task_id="C", depends_on=[a.id])
    client.enqueue("t", "d", task_id="D", depends_on=["B", "C"])
    assert [_state(r, keys, i) for i in "ABCD"] == ["pending", "held", "held", "held"]
    reply = _settle(r, keys, "A", b"ra")
    assert reply == [1, [b"A"]]  # recorded for delivery
    assert workflows.deliver(r, namespace, "default", "A") == 1
    assert [_state(r, keys, i) for i in "BCD"] == ["pending", "pending", "held"]
    _settle(r, keys, "B", b"rb")
    workflows.deliver(r, namespace, "default", "B")
    assert _state(r, keys, "D") == "held"
    _settle(r, keys, "C")
    workflows.deliver(r, namespace, "default", "C")
    assert _state(r, keys, "D") == "pending"
    parents = _message(r, keys, "D").parents
    assert parents == (
        ("completed", b"rb", "default", "B"),
        ("completed", None, "default", "C"),
    )
    # Every record delivered and dropped: nothing left behind.
    for key in (keys.held, keys.deps, keys.reports, keys.children, keys.outbox, keys.outbox_at):
        assert r.exists(key) == 0, key


def test_repeated_and_racing_deliveries_release_once(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="P")
    client.enqueue("t", task_id="K", depends_on=["P"])
    _settle(r, keys, "P")
    entry = msgpack.packb(["completed", None, "default", "P"])
    assert _run(r, ops.dep_report(keys, "K", 0, entry, "completed", parent="default/P")) == 2
    assert _run(r, ops.dep_report(keys, "K", 0, entry, "completed", parent="default/P")) == 0
    assert workflows.deliver(r, namespace, "default", "P") == 1  # the late deliverer: no-op
    assert workflows.deliver(r, namespace, "default", "P") == 0
    assert r.lrange(keys.pending, 0, -1) == [b"K"]


def test_a_crash_between_settle_and_delivery_is_delivered_by_the_sweep(
    r: redis.Redis, namespace: str, client: Client, redis_url: str
) -> None:
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="P")
    client.enqueue("t", task_id="K", depends_on=["P"])
    _settle(r, keys, "P", b"x")  # the worker dies here, before delivering

    async def sweep() -> int:
        conn = redis.asyncio.Redis.from_url(redis_url)
        try:
            deliverer = Deliverer(
                conn, {"default": keys}, namespace=namespace, sweep_interval=1, grace=0
            )
            return await deliverer.sweep()
        finally:
            await conn.aclose()

    assert asyncio.run(sweep()) == 1
    assert _state(r, keys, "K") == "pending"
    assert r.exists(keys.outbox_at) == 0


def test_a_failed_parent_cancels_the_chain_below_it(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="P")
    client.enqueue("t", task_id="K1", depends_on=["P"])
    client.enqueue("t", task_id="K2", depends_on=["K1"])
    assert _fail(r, keys, "P", "ValueError: broken") == 2
    assert workflows.deliver(r, namespace, "default", "P") == 2  # P, then K1's own cancel
    assert _state(r, keys, "K1") == "archived"
    assert _state(r, keys, "K2") == "archived"
    k1 = _message(r, keys, "K1")
    assert k1.last_error is not None
    assert k1.last_error.startswith("DependencyFailedError: parent default/P ended archived")
    assert k1.parents == (("archived", "ValueError: broken", "default", "P"),)
    with pytest.raises(TaskFailedError, match="parent default/K1 ended archived"):
        client.wait_result("default", "K2", 1)


def test_policy_run_releases_the_dependant_with_the_failure_listed(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="P")
    client.enqueue("t", task_id="K", depends_on=["P"], on_parent_failure="run")
    _fail(r, keys, "P", "ValueError: broken")
    workflows.deliver(r, namespace, "default", "P")
    assert _state(r, keys, "K") == "pending"
    parents = _message(r, keys, "K").parents
    assert parents == (("archived", "ValueError: broken", "default", "P"),)


def test_a_parent_already_final_and_kept_releases_at_once(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="P", retention=60)
    _lease(r, keys, "P")
    _run(r, ops.done(keys, [ops.Ack("P", TOKEN, keep_until_ms=NOW_MS * 2, result=b"kept")], 0))
    client.enqueue("t", task_id="K", depends_on=["P"])
    assert _state(r, keys, "K") == "pending"
    parents = _message(r, keys, "K").parents
    assert parents == (("completed", b"kept", "default", "P"),)


def test_a_missing_parent_is_refused_and_nothing_is_written(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    with pytest.raises(TaskNotFoundError, match="retention="):
        client.enqueue("t", task_id="K", depends_on=["nope"])
    keys = QueueKeys(namespace, "default")
    assert r.exists(keys.held, keys.deps, keys.children) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depends_on": "A"}, "list of task ids"),
        ({"depends_on": []}, "1 to"),
        ({"depends_on": ["A", "A"]}, "twice"),
        ({"depends_on": [("q",)]}, "pairs"),
        ({"depends_on": ["A"], "on_parent_failure": "maybe"}, "'cancel' or 'run'"),
        ({"depends_on": ["A"], "process_in": 5}, "process_in"),
        ({"depends_on": ["A"], "unique": 5}, "unique"),
    ],
)
def test_bad_dependencies_are_refused(
    client: Client, r: redis.Redis, namespace: str, kwargs: dict[str, Any], match: str
) -> None:
    client.enqueue("t", task_id="A")
    before = sorted(r.keys(f"{namespace}:*"))
    with pytest.raises(ValidationError, match=match):
        client.enqueue("t", task_id="K", **kwargs)
    assert sorted(r.keys(f"{namespace}:*")) == before


def test_parents_in_other_cluster_slots(cluster: Any, namespace: str) -> None:
    conn = connect(cluster.url, cluster=True)
    try:
        client = Client(conn, namespace=namespace)
        queues = ["alpha", "beta", "gamma"]  # spread over the three masters' slots
        for i, q in enumerate(queues):
            client.enqueue("t", i, queue=q, task_id=f"P{i}")
        client.enqueue(
            "t", queue="join", task_id="J", depends_on=[(q, f"P{i}") for i, q in enumerate(queues)]
        )
        join = QueueKeys(namespace, "join")
        for i, q in enumerate(queues):
            assert conn.hexists(join.held, "J")
            _settle(conn, QueueKeys(namespace, q), f"P{i}", f"r{i}".encode())
            workflows.deliver(conn, namespace, q, f"P{i}")
        assert conn.lrange(join.pending, 0, -1) == [b"J"]
        parents = _message(conn, join, "J").parents
        assert [p[1] for p in parents or ()] == [b"r0", b"r1", b"r2"]
    finally:
        conn.close()


# -- with a real worker ----------------------------------------------------------------------


def test_a_worker_runs_a_cross_queue_diamond_in_order_with_results(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    router = Router()

    @router.task("dag:node")
    async def node(task: Task) -> str:
        seen.add((task.payload, [x.decode() if x else x for x in task.parent_results()]))
        return f"out-{task.payload}"

    client = Client(r, namespace=namespace)
    a = client.enqueue("dag:node", "A", queue="q1")
    b = client.enqueue("dag:node", "B", queue="q2", depends_on=[("q1", a.id)])
    c = client.enqueue("dag:node", "C", queue="q1", depends_on=[a.id])
    d = client.enqueue("dag:node", "D", queue="q2", depends_on=[b.id, ("q1", c.id)], retention=60)
    with running_server(redis_url, router, namespace=namespace, queues={"q1": 1, "q2": 1}):
        seen.wait_for(4)
        assert client.wait_result("q2", d.id, 10) == b"out-D"
    order = [payload for payload, _ in seen.items]
    assert order[0] == "A" and order[-1] == "D" and sorted(order[1:3]) == ["B", "C"]
    assert dict(seen.items)["D"] == ["out-B", "out-C"]
    assert len(seen.items) == 4


def test_async_client_enqueues_dependants(redis_url: str, r: redis.Redis, namespace: str) -> None:
    async def main() -> None:
        async with AsyncClient.from_url(redis_url, namespace=namespace) as client:
            await client.enqueue("t", task_id="P")
            await client.enqueue("t", task_id="K", depends_on=["P"])

    asyncio.run(main())
    assert r.hexists(QueueKeys(namespace, "default").held, "K")


def test_the_inspector_cli_and_api_show_a_released_tasks_parents(
    r: redis.Redis, namespace: str, client: Client, inspector: Inspector
) -> None:
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="P1")
    client.enqueue("t", task_id="P2", queue="other")
    client.enqueue("t", task_id="K", depends_on=["P1", ("other", "P2")], on_parent_failure="run")
    _settle(r, keys, "P1", b"one")
    workflows.deliver(r, namespace, "default", "P1")
    _fail(r, QueueKeys(namespace, "other"), "P2", "ValueError: broken\ntraceback")
    workflows.deliver(r, namespace, "other", "P2")
    info = inspector.get_task("default", "K")
    assert info.parents == [
        ParentInfo("default", "P1", "completed"),
        ParentInfo("other", "P2", "archived", "ValueError: broken\ntraceback"),
    ]
    text = _describe(info, time.time())
    assert (
        "waited for 2 task(s):\n  default/P1 completed\n  other/P2 archived: ValueError: broken"
        in text
    )
    error = "ValueError: broken\ntraceback"
    assert task_json(info)["parents"][1] == {
        "queue": "other", "id": "P2", "outcome": "archived", "error": error
    }  # fmt: skip


def test_tasks_waiting_for_their_parents_are_listed_for_operators(
    r: redis.Redis,
    namespace: str,
    client: Client,
    inspector: Inspector,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="P")
    client.enqueue("t", task_id="Q", queue="other")
    client.enqueue("join", {"n": 1}, task_id="J", depends_on=["P", ("other", "Q")])
    _settle(r, keys, "P")
    workflows.deliver(r, namespace, "default", "P")
    (waiting,) = inspector.waiting("default")
    assert (waiting.id, waiting.type, waiting.payload) == ("J", "join", {"n": 1})
    assert (waiting.parents, waiting.reported, waiting.policy) == (
        ["default/P", "other/Q"],
        1,
        "cancel",
    )
    with pytest.raises(TaskNotFoundError, match="waiting for its parents"):
        inspector.get_task("default", "J")
    assert main(["waiting", "--url", redis_url, "--namespace", namespace, "default"]) == 0
    out = capsys.readouterr().out
    assert "J  join  1/2 parents final (on failure: cancel): default/P, other/Q" in out


def test_random_graphs_with_repeated_racing_deliveries_release_each_task_once(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    """Random DAGs over three queues; parents settle in random order and every outcome is
    delivered two or three times, interleaved with other deliveries (as a worker and the sweep
    racing would). Each task is released exactly once, only after all its parents settled."""
    rng = random.Random(1729)
    queues = ["ga", "gb", "gc"]
    for graph in range(15):
        nodes = [(queues[rng.randrange(3)], f"g{graph}n{n}") for n in range(12)]
        parents: dict[int, list[int]] = {}
        for n, (queue, task_id) in enumerate(nodes):
            chosen = sorted(rng.sample(range(n), k=min(n, rng.randint(0, 3))))
            parents[n] = chosen
            refs = [nodes[p] for p in chosen]
            if refs:
                client.enqueue("t", queue=queue, task_id=task_id, depends_on=refs)
            else:
                client.enqueue("t", queue=queue, task_id=task_id)
        settled: set[int] = set()
        released_at: dict[int, int] = {}
        step = 0
        while len(settled) < len(nodes):
            ready = [
                n
                for n, (q, i) in enumerate(nodes)
                if n not in settled
                and i.encode() in r.lrange(QueueKeys(namespace, q).pending, 0, -1)
            ]
            assert ready, "nothing pending although tasks remain: a release was lost"
            for q in queues:
                listed = r.lrange(QueueKeys(namespace, q).pending, 0, -1)
                assert len(listed) == len(set(listed)), "a task was released twice"
            early = [nodes[n] for n in ready if not all(p in settled for p in parents[n])]
            assert not early, f"released before all their parents settled: {early}"
            batch = rng.sample(ready, k=min(len(ready), rng.randint(1, 3)))
            for n in batch:
                queue, task_id = nodes[n]
                released_at.setdefault(n, step)
                _settle(r, QueueKeys(namespace, queue), task_id)
                settled.add(n)
            # A deliverer that dies after reporting to some children (before its ack), then
            # full deliveries, repeated and shuffled: children see the same report again.
            deliveries = [nodes[n] for n in batch for _ in range(rng.randint(1, 2))]
            rng.shuffle(deliveries)
            for queue, task_id in deliveries:
                _partial_delivery(r, namespace, queue, task_id, rng)
            rng.shuffle(deliveries)
            for queue, task_id in deliveries:
                workflows.deliver(r, namespace, queue, task_id)
            step += 1
        for queue in queues:
            keys = QueueKeys(namespace, queue)
            assert r.llen(keys.pending) == 0
            for key in (keys.held, keys.deps, keys.reports, keys.outbox, keys.children):
                assert r.hlen(key) == 0, key


def _partial_delivery(
    r: redis.Redis, namespace: str, queue: str, task_id: str, rng: random.Random
) -> None:
    """What a deliverer killed midway leaves: reports to some children, no ack."""
    children_raw, entry_raw = _run(r, ops.dep_read(QueueKeys(namespace, queue), task_id))
    if entry_raw is None:
        return
    outcome, data = msgpack.unpackb(entry_raw, raw=False)
    children = workflows.read_dependants(children_raw)
    for child_queue, child_id, index in rng.sample(children, k=rng.randint(0, len(children))):
        entry = msgpack.packb([outcome, data, queue, task_id])
        child = QueueKeys(namespace, child_queue)
        name = f"{queue}/{task_id}"
        _run(r, ops.dep_report(child, child_id, index, entry, outcome, parent=name))


def test_a_callback_with_the_most_parents_allowed_is_released(
    r: redis.Redis, namespace: str
) -> None:
    # Lua's unpack() refuses about 8,000 values: a release that passed every report field to one
    # HDEL failed for large groups, after recording the last report, so the callback stayed
    # held for ever (a repeated delivery is a duplicate). Seeded with all reports but the last.
    keys = QueueKeys(namespace, "default")
    n = workflows.MAX_PARENTS
    parents = [f"default/p{i}" for i in range(n)]
    record = msgpack.packb({"policy": "run", "n": n, "got": 0, "parents": parents})
    held = TaskMessage(type="t", payload=None).encode_held()
    assert _run(r, ops.dep_hold(keys, "cb", held, record)) == 1
    entry = msgpack.packb(["completed", None, "default", "p"])
    r.hset(keys.reports, mapping={f"{i}:cb": entry for i in range(n - 1)})
    almost = {"policy": "run", "n": n, "got": n - 1}
    r.hset(keys.deps, "cb", msgpack.packb(almost))
    assert (
        _run(r, ops.dep_report(keys, "cb", n - 1, entry, "completed", parent=f"default/p{n - 1}"))
        == 2
    )
    assert _state(r, keys, "cb") == "pending"
    assert len(_message(r, keys, "cb").parents or ()) == n
    assert r.hlen(keys.reports) == 0


def test_the_id_of_a_held_task_is_not_given_to_another_task(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    # A held task is in no state (not in `msg`), but its id is taken: were another task stored
    # under it, the release would refuse to overwrite that task (CONFLICT) after recording the
    # last report, and the held task could never be released.
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="A")
    client.enqueue("t", task_id="C", depends_on=["A"])
    with pytest.raises(TaskIdConflictError):
        client.enqueue("t", "other", task_id="C", retention=60)
    with pytest.raises(EnqueueManyError):
        client.enqueue_many([NewTask(type="t", payload="other", task_id="C")])
    assert not r.hexists(keys.msg, "C")
    _settle(r, keys, "A")
    workflows.deliver(r, namespace, "default", "A")
    assert _state(r, keys, "C") == "pending"


def test_a_held_task_enqueued_again_with_other_parents_is_refused(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    # The same message again is a resend (answered as written), but only with the same parents:
    # a resend with another parent list linked C to B at an index its record does not have, so
    # B's outcome was ignored and C ran as soon as A ended, B still running.
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="A")
    client.enqueue("t", task_id="B")
    client.enqueue("t", task_id="C", depends_on=["A"])
    client.enqueue("t", task_id="C", depends_on=["A"])  # a resend: fine
    with pytest.raises(TaskIdConflictError):
        client.enqueue("t", task_id="C", depends_on=["A", "B"])
    with pytest.raises(TaskIdConflictError):
        client.enqueue("t", task_id="C", depends_on=["A"], on_parent_failure="run")
    assert not r.hexists(keys.children, "B")


def _report_usec(r: redis.Redis, keys: QueueKeys, child_id: str, n: int) -> float:
    """Redis time (µs) of one report to a task held on ``n`` parents (the best of five)."""
    parents = [f"default/p{i}" for i in range(n)]
    record = msgpack.packb({"policy": "run", "n": n, "got": 0, "parents": parents})
    held = TaskMessage(type="t", payload=None).encode_held()
    _run(r, ops.dep_hold(keys, child_id, held, record))
    entry = msgpack.packb(["completed", None, "default", "p0"])
    # the first report loads the script
    _run(r, ops.dep_report(keys, child_id, 0, entry, "completed", parent="default/p0"))
    best = float("inf")
    for index in range(1, 6):
        r.config_resetstat()
        name = f"default/p{index}"
        assert _run(r, ops.dep_report(keys, child_id, index, entry, "completed", parent=name)) == 1
        best = min(best, float(r.info("commandstats")["cmdstat_evalsha"]["usec"]))
    return best


def test_a_report_costs_the_same_whatever_the_number_of_parents(
    r: redis.Redis, namespace: str
) -> None:
    # The record held every parent's name and was unpacked and repacked by every report:
    # O(parents) per report, O(parents^2) per group (10,000 members: ~15 s of Redis time).
    keys = QueueKeys(namespace, "default")
    small = _report_usec(r, keys, "small", 10)
    large = _report_usec(r, keys, "large", workflows.MAX_PARENTS)
    assert large < small * 10 + 200, (small, large)


def test_a_parent_archived_as_corrupt_reports_its_error_to_its_dependants(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="A")
    client.enqueue("t", task_id="C", depends_on=["A"], on_parent_failure="run")
    _lease(r, keys, "A")
    call = ops.archive_corrupt(
        keys, "A", TOKEN, raw=b"\xc1", error="CorruptTaskError: bad bytes", now_s=NOW_MS / 1000,
        limits=ops.ArchiveLimits(),
    )  # fmt: skip
    assert _run(r, call) == 2
    workflows.deliver(r, namespace, "default", "A")
    parents = _message(r, keys, "C").parents or ()
    assert [p[:2] for p in parents] == [("archived", "CorruptTaskError: bad bytes")]


def _poisoned_and_healthy_records(r: redis.Redis, client: Client, namespace: str) -> QueueKeys:
    """P1's dependant lives in a queue whose keys Redis refuses (WRONGTYPE: someone else's data),
    P2's in a healthy one; both settled, neither delivered."""
    keys = QueueKeys(namespace, "default")
    client.enqueue("t", task_id="P1")
    client.enqueue("t", task_id="P2")
    client.enqueue("t", task_id="C1", queue="bad", depends_on=[("default", "P1")])
    client.enqueue("t", task_id="C2", queue="good", depends_on=[("default", "P2")])
    bad = QueueKeys(namespace, "bad")
    r.delete(bad.deps)
    r.set(bad.deps, "not a hash")
    _settle(r, keys, "P1")
    _settle(r, keys, "P2")
    return keys


def _deliverer_run(redis_url: str, keys: QueueKeys, namespace: str, *parents: str) -> int:
    async def run() -> int:
        conn = redis.asyncio.Redis.from_url(redis_url)
        try:
            deliverer = Deliverer(
                conn, {"default": keys}, namespace=namespace, sweep_interval=1, grace=0
            )
            if not parents:
                return await deliverer.sweep()
            for parent in parents:
                deliverer.notify("default", parent)
            return await deliverer.deliver_pending()
        finally:
            await conn.aclose()

    return asyncio.run(run())


def test_an_outcome_redis_refuses_to_deliver_does_not_hold_up_the_sweep(
    r: redis.Redis, namespace: str, client: Client, redis_url: str
) -> None:
    keys = _poisoned_and_healthy_records(r, client, namespace)
    assert _deliverer_run(redis_url, keys, namespace) == 1
    assert _state(r, QueueKeys(namespace, "good"), "C2") == "pending"
    assert r.zrange(keys.outbox_at, 0, -1) == [b"P1"]  # kept, tried again by the next sweep


def test_an_outcome_redis_refuses_to_deliver_does_not_hold_up_the_worker_s_deliveries(
    r: redis.Redis, namespace: str, client: Client, redis_url: str
) -> None:
    keys = _poisoned_and_healthy_records(r, client, namespace)
    assert _deliverer_run(redis_url, keys, namespace, "P1", "P2") == 1
    assert _state(r, QueueKeys(namespace, "good"), "C2") == "pending"
    assert r.zrange(keys.outbox_at, 0, -1) == [b"P1"]


def test_a_task_held_under_an_archived_id_replaces_the_archived_record(
    r: redis.Redis, namespace: str, client: Client, inspector: Inspector
) -> None:
    # Held over an archived task's id (an archived id may be reused), the archived record stayed:
    # an operator could run it again, and then the release found the id taken (CONFLICT) and
    # the held task stayed held for ever.
    keys = QueueKeys(namespace, "default")
    client.enqueue("old", task_id="X")
    inspector.archive_task("default", "X")
    client.enqueue("t", task_id="A")
    client.enqueue("new", task_id="X", depends_on=["A"])
    with pytest.raises(TaskNotFoundError):
        inspector.run_task("default", "X")
    _settle(r, keys, "A")
    workflows.deliver(r, namespace, "default", "A")
    assert _state(r, keys, "X") == "pending"
    assert _message(r, keys, "X").type == "new"


def test_linking_a_dependant_costs_the_same_whatever_the_number_of_siblings(
    r: redis.Redis, namespace: str
) -> None:
    # One parent, many dependants (a fan-out): each link rewrote the whole list of dependants,
    # O(dependants) per link and O(dependants^2) in all (10,000: 61 s of Redis time, 7.5 ms per
    # link at the end).
    keys = QueueKeys(namespace, "default")
    r.hset(keys.msg, "P", TaskMessage(type="t", payload=None).encode())
    r.lpush(keys.pending, "P")
    script, key_list, _ = ops.dep_link(keys, "P", keys, "c", index=0, expect_new=False)

    def link_usec(child_id: str) -> float:
        r.config_resetstat()
        _run(r, ops.dep_link(keys, "P", keys, child_id, index=0, expect_new=False))
        return float(r.info("commandstats")["cmdstat_evalsha"]["usec"])

    _run(r, ops.dep_link(keys, "P", keys, "first", index=0, expect_new=False))
    small = min(link_usec(f"s{i}") for i in range(5))
    pipe = r.pipeline(transaction=False)
    for i in range(5000):
        pipe.evalsha(script.sha, len(key_list), *key_list, "P", "default", f"c{i}", 0, "0")
    pipe.execute()
    large = min(link_usec(f"l{i}") for i in range(5))
    assert large < small * 10 + 200, (small, large)


def test_an_operator_deletes_a_held_orphan_and_its_dependants_hear_of_it(
    r: redis.Redis, namespace: str, client: Client, inspector: Inspector, redis_url: str
) -> None:
    # A client died while enqueueing a chain: link 2 is held on link 1, which was never
    # enqueued, and link 3 on link 2. Nothing would ever release them; an operator deletes
    # link 2, and link 3 is cancelled by its policy as for any deleted parent.
    keys = QueueKeys(namespace, "default")
    record = msgpack.packb({"policy": "cancel", "n": 1, "got": 0, "parents": ["default/L1"]})
    held = TaskMessage(type="t", payload=None).encode_held()
    assert _run(r, ops.dep_hold(keys, "L2", held, record)) == 1
    _run(r, ops.dep_link(keys, "L1", keys, "L2", index=0, expect_new=True))
    client.enqueue("t", task_id="L3", depends_on=["L2"])
    inspector.delete_task("default", "L2")
    for key in (keys.held, keys.deps, keys.dep_parents, keys.reports):
        assert not r.hexists(key, "L2")
    with pytest.raises(TaskNotFoundError):
        inspector.delete_task("default", "L2")
    _deliverer_run(redis_url, keys, namespace)  # the sweep, as after an operator's delete
    assert _state(r, keys, "L3") == "archived"
    assert "ended deleted" in (_message(r, keys, "L3").last_error or "")


def test_a_late_report_for_an_earlier_task_with_the_same_id_is_ignored(
    r: redis.Redis, namespace: str, client: Client, redis_url: str
) -> None:
    # C waited for P1 and P2. P1's deliverer reported to C and died before its ack; C was
    # released by P2, ran and was not kept, and its id was used again for a new C waiting for X
    # and Y. The sweep's late delivery of P1's outcome must not count as X's.
    keys = QueueKeys(namespace, "default")
    for parent in ("P1", "P2", "X", "Y"):
        client.enqueue("t", task_id=parent)
    client.enqueue("t", task_id="C", depends_on=["P1", "P2"])
    _settle(r, keys, "P1")
    entry = msgpack.packb(["completed", None, "default", "P1"])
    _run(r, ops.dep_report(keys, "C", 0, entry, "completed", parent="default/P1"))  # no ack
    _settle(r, keys, "P2")
    workflows.deliver(r, namespace, "default", "P2")
    _settle(r, keys, "C")  # released, run, not kept: the id is free again
    client.enqueue("t", task_id="C", depends_on=["X", "Y"])
    _deliverer_run(redis_url, keys, namespace)  # P1's record, delivered again
    _settle(r, keys, "Y")
    workflows.deliver(r, namespace, "default", "Y")
    assert _state(r, keys, "C") == "held"  # X has not ended
    _settle(r, keys, "X")
    workflows.deliver(r, namespace, "default", "X")
    assert _state(r, keys, "C") == "pending"
    assert [p[3] for p in _message(r, keys, "C").parents or ()] == ["X", "Y"]
