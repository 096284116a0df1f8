"""Chains and groups, built on ``depends_on``: a chain's links run in order with the previous
result passed on, a failed link ends it and its status says where; a group's callback runs once
after every member is final, with their results in order, by the member-failure policy; members
in other queues and Redis Cluster slots.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from rq_sched import (
    AsyncClient,
    Client,
    NewTask,
    Router,
    SkipRetry,
    Task,
    TaskIdConflictError,
    ValidationError,
)
from rq_sched.connection import connect
from rq_sched.keys import QueueKeys
from rq_sched.results import unpack_result
from tests.worker_support import Recorder, running_server

QUEUES = {"q1": 1, "q2": 1}


def _router(seen: Recorder) -> Router:
    router = Router()

    @router.task("wf:append")
    async def append(task: Task) -> str:
        before = task.parent_results()
        text: str = (before[0].decode() if before and before[0] else "") + task.payload
        seen.add(("append", task.payload, text))
        return text

    @router.task("wf:fail")
    async def fail(task: Task) -> None:
        seen.add(("fail", task.payload, None))
        raise SkipRetry(f"link {task.payload} gives up")

    @router.task("wf:join")
    def join(task: Task) -> list[Any]:
        seen.add(("join", task.payload, task.parents))
        return [p[1].decode() if isinstance(p[1], bytes) else p[1] for p in task.parents]

    return router


def test_a_chain_runs_its_links_in_order_passing_results_on(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    client = Client(r, namespace=namespace)
    chain = client.chain(
        [
            NewTask(type="wf:append", payload="a", queue="q1"),
            NewTask(type="wf:append", payload="b", queue="q2"),
            NewTask(type="wf:append", payload="c", queue="q1", retention=60),
        ]
    )
    assert client.chain_status(chain).links == ["pending", "waiting", "waiting"]
    with running_server(redis_url, _router(seen), namespace=namespace, queues=QUEUES):
        last = chain.links[-1]
        assert client.wait_result(last.queue, last.id, 10) == b"abc"
    assert [item[1] for item in seen.items] == ["a", "b", "c"]
    status = client.chain_status(chain)
    assert status.state == "completed"
    assert status.links == ["gone", "gone", "completed"]


def test_a_failed_link_ends_the_chain_and_the_status_says_where(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    client = Client(r, namespace=namespace)
    chain = client.chain(
        [
            NewTask(type="wf:append", payload="a", queue="q1"),
            NewTask(type="wf:fail", payload="b", queue="q2"),
            NewTask(type="wf:append", payload="c", queue="q1"),
            NewTask(type="wf:append", payload="d", queue="q2"),
        ]
    )
    with running_server(redis_url, _router(seen), namespace=namespace, queues=QUEUES):
        last = chain.links[-1]
        with pytest.raises(Exception, match="DependencyFailedError"):
            client.wait_result(last.queue, last.id, 10)
    assert [item[1] for item in seen.items] == ["a", "b"]
    status = client.chain_status(chain)
    assert status.state == "failed"
    assert status.stopped_at == 1
    assert status.error is not None and "link b gives up" in status.error
    assert status.links == ["gone", "archived", "archived", "archived"]


@pytest.mark.parametrize("policy", ["run", "cancel"])
def test_a_group_callback_runs_once_after_all_members_with_results_in_order(
    policy: str, redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    client = Client(r, namespace=namespace)
    members = [NewTask(type="wf:append", payload=f"m{i}", queue=f"q{i % 2 + 1}") for i in range(6)]
    members.insert(3, NewTask(type="wf:fail", payload="bad", queue="q2"))
    group = client.group(
        members,
        NewTask(type="wf:join", payload="cb", queue="q1", retention=60),
        on_member_failure=policy,  # type: ignore[arg-type]
    )
    with running_server(redis_url, _router(seen), namespace=namespace, queues=QUEUES):
        if policy == "run":
            result = client.wait_result("q1", group.callback.id, 10, decode=unpack_result)
            assert result[:3] == ["m0", "m1", "m2"]
            assert result[3].startswith("SkipRetry: link bad gives up")
            assert result[4:] == ["m3", "m4", "m5"]
        else:
            with pytest.raises(Exception, match=r"parent q2/.* ended archived"):
                client.wait_result("q1", group.callback.id, 10)
    kinds = [item[0] for item in seen.items]
    assert kinds.count("join") == (1 if policy == "run" else 0)
    assert len(seen.items) == 7 + kinds.count("join")
    if policy == "run":
        assert kinds[-1] == "join"  # never before a member finished


def test_bad_chains_and_groups_are_refused(client: Client, r: redis.Redis, namespace: str) -> None:
    one = NewTask(type="t", payload=1)
    with pytest.raises(ValidationError, match="at least 2"):
        client.chain([one])
    with pytest.raises(ValidationError, match="process_in"):
        client.chain([one, NewTask(type="t", process_in=5)])
    with pytest.raises(ValidationError, match="twice"):
        client.chain([NewTask(type="t", task_id="x"), NewTask(type="t", task_id="x")])
    with pytest.raises(ValidationError, match="1 to"):
        client.group([], one)
    with pytest.raises(ValidationError, match="unique members"):
        client.group([NewTask(type="t", unique=5)], one)
    with pytest.raises(ValidationError, match="on_member_failure"):
        client.group([one], one, on_member_failure="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="NewTask"):
        client.chain(["not a task"])  # type: ignore[list-item]
    left: list[bytes] = r.keys(f"{namespace}:*")  # type: ignore[assignment]
    assert [k for k in left if not k.endswith(b":queues")] == []


def test_async_client_builds_chains_and_groups(redis_url: str, namespace: str) -> None:
    async def main() -> tuple[Any, Any]:
        async with AsyncClient.from_url(redis_url, namespace=namespace) as client:
            chain = await client.chain([NewTask(type="t"), NewTask(type="t")])
            group = await client.group([NewTask(type="t")], NewTask(type="t"))
            return await client.chain_status(chain), group

    status, group = asyncio.run(main())
    assert status.links == ["pending", "waiting"]
    assert len(group.members) == 1


@pytest.mark.cluster
def test_a_group_spanning_cluster_slots_releases_its_callback_once(
    cluster: Any, namespace: str
) -> None:
    seen = Recorder()
    queues = {"alpha": 1, "beta": 1, "gamma": 1}
    conn = connect(cluster.url, cluster=True)
    try:
        client = Client(conn, namespace=namespace)
        members = [
            NewTask(type="wf:append", payload=f"m{i}", queue=q) for i, q in enumerate(queues)
        ]
        group = client.group(members, NewTask(type="wf:join", queue="beta", retention=60))
        options = {"queues": queues, "cluster": True, "idle_timeout": 3600.0}
        with running_server(cluster.url, _router(seen), namespace=namespace, **options):
            result = client.wait_result("beta", group.callback.id, 15, decode=unpack_result)
        assert result == ["m0", "m1", "m2"]
        assert [item[0] for item in seen.items].count("join") == 1
    finally:
        conn.close()


def test_a_chain_refused_for_a_taken_id_leaves_nothing_behind(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    # Link 1's id is a live task's: the chain is refused, and its later links must not stay
    # behind, held on that unrelated task (they would run when it ends).
    keys = QueueKeys(namespace, "default")
    client.enqueue("other", task_id="A")
    with pytest.raises(TaskIdConflictError):
        client.chain([NewTask(type="t", task_id="A"), NewTask(type="t", task_id="B")])
    assert r.hlen(keys.held) == 0
    assert not r.hexists(keys.children, "A")


def test_a_group_refused_for_a_taken_id_leaves_nothing_behind(
    r: redis.Redis, namespace: str, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    client.enqueue("other", task_id="M2")
    members = [NewTask(type="m", task_id="M1"), NewTask(type="m", task_id="M2")]
    with pytest.raises(TaskIdConflictError):
        client.group(members, NewTask(type="cb", task_id="CB"))
    assert r.hlen(keys.held) == 0
    assert r.hlen(keys.children) == 0
    assert not r.hexists(keys.msg, "M1")
