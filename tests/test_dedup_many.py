"""Debounce and throttle items in ``enqueue_many``: each item does what the single call would,
items sharing a key act in batch order, outcomes come per item beside the TaskInfo list, and a
bad item refuses the whole batch before anything is written."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from rq_sched import (
    AsyncClient,
    Client,
    Debounced,
    Enqueued,
    EnqueueManyError,
    Inspector,
    ManualClock,
    NewTask,
    TaskIdConflictError,
    TaskInfo,
    TaskState,
    Throttled,
    ValidationError,
)
from rq_sched.contrib.typed import TaskHandle
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import RedisCluster
from rq_sched.message import decode
from rq_sched.shards import layout
from tests.worker_support import texts


def keys_of(namespace: str, queue: str = "default") -> QueueKeys:
    return QueueKeys(namespace, queue)


def payload_of(r: redis.Redis | ClusterClient, keys: QueueKeys, task_id: str) -> Any:
    data = r.hget(keys.msg, task_id)
    assert isinstance(data, bytes)
    return decode(data, task_id=task_id).payload


def test_debounce_items_sharing_a_key_act_as_calls_in_batch_order(
    client: Client, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    keys = keys_of(namespace)
    infos = client.enqueue_many(
        [
            NewTask(type="reindex", payload=1, debounce="user:42", window=5),
            NewTask(type="plain", payload="p"),
            NewTask(type="reindex", payload=2, debounce="user:42", window=5, headers={"h": "v"}),
            NewTask(type="reindex", payload=3, debounce="user:7", window=timedelta(seconds=9)),
        ]
    )
    first, other = infos[0].id, infos[3].id
    assert infos.outcomes == [
        Debounced(first, replaced=False),
        None,
        Debounced(first, replaced=True),
        Debounced(other, replaced=False),
    ]
    # The replacing item's entry describes the waiting task that now carries its message.
    due = clock.now() + 5
    assert (infos[2].id, infos[2].payload, infos[2].headers) == (first, 2, {"h": "v"})
    assert infos[0].process_at == infos[2].process_at == datetime.fromtimestamp(due, UTC)
    assert infos[2].state is TaskState.SCHEDULED
    assert r.zrange(keys.scheduled, 0, -1, withscores=True) == [
        (first.encode(), due * 1000),
        (other.encode(), (clock.now() + 9) * 1000),
    ]
    assert payload_of(r, keys, first) == 2
    assert texts(r.lrange(keys.pending, 0, -1)) == [infos[1].id]
    assert r.hlen(keys.msg) == 3


def test_a_debounce_item_joins_the_task_an_earlier_call_left_waiting(
    client: Client, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    earlier = client.debounce("reindex", 1, key="k", window=5)
    clock.advance(2)
    infos = client.enqueue_many([NewTask(type="reindex", payload=2, debounce="k", window=5)])
    assert infos.outcomes == [Debounced(earlier.id, replaced=True)]
    assert infos[0].id == earlier.id
    assert infos[0].process_at == datetime.fromtimestamp(clock.now() - 2 + 5, UTC)
    assert payload_of(r, keys_of(namespace), earlier.id) == 2
    assert r.zcard(keys_of(namespace).scheduled) == 1


def test_throttle_items_sharing_a_key_keep_the_first_and_report_the_rest(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    keys = keys_of(namespace)
    infos = client.enqueue_many(
        [
            NewTask(type="digest", payload=1, throttle="user:42", window=600),
            NewTask(type="digest", payload=2, throttle="user:42", window=600),
            NewTask(type="digest", payload=3, throttle="user:7", window=600),
            NewTask(type="digest", payload=4, throttle="user:42", window=600),
        ]
    )
    kept, other = infos[0].id, infos[2].id
    assert infos.outcomes == [
        Throttled(kept, dropped=False),
        Throttled(kept, dropped=True),
        Throttled(other, dropped=False),
        Throttled(kept, dropped=True),
    ]
    assert sorted(texts(r.lrange(keys.pending, 0, -1))) == sorted([kept, other])
    assert r.hlen(keys.msg) == 2
    assert [i.id for i in infos] == [kept, kept, other, kept]  # the tasks standing for them
    assert payload_of(r, keys, kept) == 1
    assert r.get(keys.throttle("user:42")) == kept.encode()


def test_a_dropped_item_names_the_task_an_earlier_call_kept(client: Client) -> None:
    earlier = client.throttle("digest", 1, key="k", window=600)
    infos = client.enqueue_many([NewTask(type="digest", payload=2, throttle="k", window=600)])
    assert infos.outcomes == [Throttled(earlier.id, dropped=True)]


def test_batch_order_holds_when_redis_has_just_lost_its_scripts(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    # Calls answered NOSCRIPT are sent again after loading; items sharing a key use one
    # script, so they are all sent again, in their order.
    r.script_flush()
    infos = client.enqueue_many(
        [NewTask(type="d", payload=n, debounce="k", window=5) for n in range(3)]
        + [NewTask(type="t", payload=n, throttle="k", window=5) for n in range(2)]
    )
    assert [getattr(o, "replaced", None) for o in infos.outcomes[:3]] == [False, True, True]
    assert infos.outcomes[3:] == [Throttled(infos[3].id, False), Throttled(infos[3].id, True)]
    assert payload_of(r, keys_of(namespace), infos[0].id) == 2


def test_a_batch_without_debounce_or_throttle_is_the_plain_list_it_was(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    infos = client.enqueue_many([NewTask(type="t", payload=n) for n in range(3)])
    assert isinstance(infos, list) and isinstance(infos, Enqueued)
    assert infos == [infos[0], infos[1], infos[2]]
    assert infos.outcomes == [None, None, None]
    assert client.enqueue_many([]) == [] and client.enqueue_many([]).outcomes == []
    assert r.llen(keys_of(namespace).pending) == 3


@dataclass(frozen=True)
class Bad:
    options: dict[str, Any]
    message: str


BAD_ITEMS = [
    Bad({"window": 5}, r"item 1: window= goes with debounce= or throttle="),
    Bad({"debounce": "k", "throttle": "k", "window": 5}, r"item 1: give debounce= or throttle="),
    Bad({"debounce": "k"}, r"item 1: debounce= needs window= \(timedelta or seconds\)"),
    Bad({"throttle": "k"}, r"item 1: throttle= needs window="),
    Bad({"throttle": "", "window": 5}, r"item 1: key must be a non-empty str"),
    Bad({"debounce": 42, "window": 5}, r"item 1: key must be"),
    Bad({"debounce": "k", "window": 0}, r"item 1: .*window"),
    Bad({"throttle": "k", "window": math.nan}, r"item 1: .*window"),
    Bad({"throttle": "k", "window": "5s"}, r"item 1: .*window"),
    Bad({"debounce": "k", "window": 5, "unique": 60}, r"item 1: debounce does not take unique"),
    Bad({"throttle": "k", "window": 5, "unique": 60}, r"item 1: throttle does not take unique"),
    Bad({"debounce": "k", "window": 5, "process_in": 3}, r"item 1: .*the window is the delay"),
    Bad(
        {"debounce": "k", "window": 5, "process_at": datetime(2030, 1, 1, tzinfo=UTC)},
        r"item 1: debounce does not take process_at",
    ),
    Bad({"debounce": "k", "window": 5, "key": "tenant:1"}, r"item 1: key= \(a fairness key\)"),
    Bad({"throttle": "k", "window": 5, "shard_key": "s"}, r"item 1: shard_key cannot be"),
    Bad({"max_retry": -1}, r"item 1: max_retry"),
]


@pytest.mark.parametrize("bad", BAD_ITEMS, ids=[b.message for b in BAD_ITEMS])
def test_a_bad_item_refuses_the_whole_batch_and_nothing_is_written(
    client: Client, r: redis.Redis, namespace: str, bad: Bad
) -> None:
    good = NewTask(type="t", payload=0, debounce="k", window=5)
    with pytest.raises(ValidationError, match=bad.message):
        client.enqueue_many([good, NewTask(type="t", payload=1, **bad.options), good])
    assert not r.keys(f"{namespace}:*")


def test_a_throttle_item_may_run_later_and_a_throttled_one_keeps_its_own_id(
    client: Client, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    # What the single throttle call takes, the item takes: process_in, task_id.
    infos = client.enqueue_many(
        [NewTask(type="t", throttle="k", window=60, process_in=30, task_id="mine")]
    )
    assert infos.outcomes == [Throttled("mine", dropped=False)]
    assert r.zscore(keys_of(namespace).scheduled, "mine") == (clock.now() + 30) * 1000


def test_an_item_whose_id_is_taken_fails_alone_with_the_outcomes_of_the_rest(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    client.enqueue("p", None, task_id="taken")
    with pytest.raises(EnqueueManyError) as caught:
        client.enqueue_many(
            [
                NewTask(type="d", debounce="k", window=5, task_id="taken"),
                NewTask(type="t", throttle="k", window=5),
                NewTask(type="t", throttle="k", window=5),
            ]
        )
    first, kept, _ = caught.value.results
    assert isinstance(first, TaskIdConflictError) and isinstance(kept, TaskInfo)
    assert caught.value.outcomes == [
        None,
        Throttled(kept.id, dropped=False),
        Throttled(kept.id, dropped=True),
    ]
    assert not r.exists(keys_of(namespace).debounce("k"))


def test_the_async_client_batches_debounce_and_throttle_items(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    async def scenario() -> Enqueued:
        producer = AsyncClient.from_url(redis_url, namespace=namespace)
        try:
            return await producer.enqueue_many(
                [
                    NewTask(type="d", payload=1, debounce="k", window=5),
                    NewTask(type="d", payload=2, debounce="k", window=5),
                    NewTask(type="t", payload=1, throttle="k", window=5),
                    NewTask(type="t", payload=2, throttle="k", window=5),
                ]
            )
        finally:
            await producer.close()

    infos = asyncio.run(scenario())
    waiting, kept = infos[0].id, infos[2].id
    assert infos.outcomes == [
        Debounced(waiting, False),
        Debounced(waiting, True),
        Throttled(kept, False),
        Throttled(kept, True),
    ]
    keys = keys_of(namespace)
    assert payload_of(r, keys, waiting) == 2
    assert texts(r.lrange(keys.pending, 0, -1)) == [kept]
    assert r.hlen(keys.msg) == 2


def test_items_sharing_a_key_on_a_sharded_queue_meet_in_one_shard(
    client: Client, inspector: Inspector, r: redis.Redis, namespace: str
) -> None:
    inspector.set_shards("orders", 4)
    client._p.shard_map.read_at = -math.inf  # this test's client reads the new map at once
    debounced = [
        NewTask(type="d", payload=n, queue="orders", debounce="u", window=60) for n in range(5)
    ]
    throttled = [
        NewTask(type="t", payload=n, queue="orders", throttle="u", window=60) for n in range(3)
    ]
    infos = client.enqueue_many(debounced + throttled)
    assert [o.id for o in infos.outcomes if o] == [infos[0].id] * 5 + [infos[5].id] * 3
    assert [getattr(o, "replaced", None) for o in infos.outcomes[:5]] == [False] + [True] * 4
    assert [getattr(o, "dropped", None) for o in infos.outcomes[5:]] == [False, True, True]
    shards = [keys_of(namespace, name) for name in layout("orders", 4)]
    assert sum(r.zcard(k.scheduled) for k in shards) == 1
    assert sum(r.llen(k.pending) for k in shards) == 1
    [home] = [k for k in shards if r.hexists(k.msg, infos[0].id)]
    assert payload_of(r, home, infos[0].id) == 4


def test_a_typed_handle_makes_debounce_items(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    @dataclass
    class Reindex:
        user: int

    handle = TaskHandle("reindex", Reindex)
    infos = client.enqueue_many(
        [handle.new_task(Reindex(n), debounce="user:1", window=5) for n in range(3)]
    )
    assert [o.replaced for o in infos.outcomes if isinstance(o, Debounced)] == [False, True, True]
    assert handle.decode(payload_of(r, keys_of(namespace), infos[0].id)) == Reindex(2)


def three_masters(rc: ClusterClient, namespace: str) -> list[str]:
    """Three queue names whose keys live on three different masters."""
    found: dict[int, str] = {}
    for i in range(1000):
        node = rc.get_node_from_key(keys_of(namespace, f"q{i}").msg)  # type: ignore[no-untyped-call]
        found.setdefault(node.port, f"q{i}")
        if len(found) == 3:
            return list(found.values())
    raise AssertionError("no three queues on three masters")


@pytest.mark.cluster
def test_a_batch_spanning_three_masters_keeps_batch_order_per_key(
    cluster: RedisCluster, namespace: str
) -> None:
    rc = ClusterClient.from_url(cluster.url)
    try:
        queues = three_masters(rc, namespace)
        items = [
            task
            for n in range(2)
            for q in queues
            for task in (
                NewTask(type="d", payload=n, queue=q, debounce="k", window=60),
                NewTask(type="t", payload=n, queue=q, throttle="k", window=60),
            )
        ]
        infos = Client(rc, namespace=namespace).enqueue_many(items)
        for q in queues:
            mine = [i for i, t in enumerate(items) if t.queue == q]
            d1, t1 = infos[mine[0]].id, infos[mine[1]].id
            assert [infos.outcomes[i] for i in mine] == [
                Debounced(d1, False),
                Throttled(t1, False),
                Debounced(d1, True),
                Throttled(t1, True),
            ]
            keys = keys_of(namespace, q)
            assert payload_of(rc, keys, d1) == 1
            assert texts(rc.lrange(keys.pending, 0, -1)) == [t1]
            assert rc.zcard(keys.scheduled) == 1
    finally:
        rc.close()
