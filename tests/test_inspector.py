"""Inspector reads: queue stats, daily history, task pages per state, single tasks."""

from __future__ import annotations

import pytest
import redis

from rq_sched import Client, Inspector, ManualClock, TaskState, ValidationError
from rq_sched.inspector.models import jsonable
from rq_sched.keys import QueueKeys
from tests.seeding import ERROR, seed_queue


def test_queue_stats_count_every_state(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock)
    stats = inspector.queue_stats("default")
    info = stats.info
    counts = (info.pending, info.active, info.scheduled, info.retry, info.archived, info.completed)
    assert counts == (3, 2, 2, 2, 2, 2)
    assert info.size == 3 + 2 + 2 + 2
    assert (info.processed, info.failed) == (2, 4)  # completed; retry + archived attempts
    assert (info.processed_today, info.failed_today) == (2, 4)
    assert stats.memory_bytes is None


def test_latency_is_the_wait_of_the_oldest_pending_task(
    r: redis.Redis, namespace: str, clock: ManualClock, client: Client, inspector: Inspector
) -> None:
    client.enqueue("t", 1, task_id="first")
    clock.advance(30)
    client.enqueue("t", 2, task_id="second")
    clock.advance(12.5)
    stats = inspector.queue_stats("default")
    assert stats.oldest_pending_id == "first"
    assert stats.latency == pytest.approx(42.5)


def test_latency_is_zero_for_an_empty_queue(client: Client, inspector: Inspector) -> None:
    client.enqueue("t", 1, process_in=60)
    stats = inspector.queue_stats("default")
    assert (stats.latency, stats.oldest_pending_id) == (0.0, None)


def test_memory_estimate_grows_with_the_queue(client: Client, inspector: Inspector) -> None:
    client.enqueue("t", "x")
    small = inspector.queue_stats("default", memory=True).memory_bytes
    for i in range(200):
        client.enqueue("t", "y" * 200, task_id=f"big-{i}")
    big = inspector.queue_stats("default", memory=True).memory_bytes
    assert small is not None and big is not None
    assert 0 < small < big
    assert big > 200 * 200


def test_all_queue_stats_lists_every_queue_by_name(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock, "low", counts={"pending": 1})
    seed_queue(r, namespace, clock, "critical", counts={"pending": 4})
    stats = inspector.all_queue_stats()
    assert [s.info.queue for s in stats] == ["critical", "low"]
    assert [s.info.pending for s in stats] == [4, 1]


def test_history_counts_per_day_oldest_first(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock, "a")  # day 1: 2 processed, 4 failed
    clock.advance(86400)
    seed_queue(r, namespace, clock, "b", counts={"completed": 5, "archived": 0, "retry": 0})
    days = inspector.history(days=3)
    assert [(d.processed, d.failed) for d in days] == [(0, 0), (2, 4), (5, 0)]
    assert days[-1].day > days[-2].day > days[0].day
    only_a = inspector.history("a", days=2)
    assert [(d.processed, d.failed) for d in only_a] == [(2, 4), (0, 0)]


@pytest.mark.parametrize("days", [0, 91])
def test_history_refuses_days_out_of_range(inspector: Inspector, days: int) -> None:
    with pytest.raises(ValidationError, match="days must be between 1 and 90"):
        inspector.history(days=days)


def test_pending_pages_run_oldest_first(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock, counts={"pending": 25})
    pages = [inspector.list_tasks("default", "pending", page=p, size=10) for p in (1, 2, 3, 4)]
    assert [len(p.tasks) for p in pages] == [10, 10, 5, 0]
    assert all(p.total == 25 and p.pages == 3 for p in pages)
    listed = [t.id for p in pages for t in p.tasks]
    assert listed == [f"pending-{i}" for i in range(25)]
    first = pages[0].tasks[0]
    assert (first.type, first.state, first.retried) == ("email:send", TaskState.PENDING, 0)
    assert first.payload_preview == '{"task": "pending-0", "n": 1}'


def test_each_state_lists_its_tasks(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seeded = seed_queue(r, namespace, clock)
    for state in TaskState:
        page = inspector.list_tasks("default", state)
        assert sorted(t.id for t in page.tasks) == sorted(seeded.ids[state.value]), state
        assert {t.state for t in page.tasks} <= {state}


def test_archived_tasks_list_newest_first_with_their_error(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock, counts={"archived": 3})
    page = inspector.list_tasks("default", TaskState.ARCHIVED)
    assert [t.id for t in page.tasks] == ["archived-2", "archived-1", "archived-0"]
    task = page.tasks[0]
    assert task.last_error == ERROR.splitlines()[0]
    assert task.retried == 1 and task.last_failed_at is not None
    assert task.next_process_at is None and task.score_at is not None


def test_retry_tasks_show_when_they_run_next(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock)
    tasks = inspector.list_tasks("default", "retry").tasks
    assert [t.id for t in tasks] == ["retry-0", "retry-1"]
    due = [t.next_process_at for t in tasks]
    assert due[0] is not None and due[1] is not None and due[0] < due[1]
    assert due[0].timestamp() > clock.now()


def test_binary_payloads_preview_as_hex(client: Client, inspector: Inspector) -> None:
    client.enqueue("t", b"\xff\x00\x10")
    client.enqueue("t", "z" * 500)
    tasks = inspector.list_tasks("default", "pending").tasks
    assert tasks[0].payload_preview == "<3 bytes> ff0010"
    assert len(tasks[1].payload_preview) == 120 and tasks[1].payload_preview.endswith("…")


def test_a_corrupt_message_is_listed_not_fatal(
    r: redis.Redis, namespace: str, client: Client, inspector: Inspector
) -> None:
    client.enqueue("t", 1, task_id="good")
    client.enqueue("t", 2, task_id="bad")
    r.hset(QueueKeys(namespace, "default").msg, "bad", b"\xc1 not msgpack")
    tasks = {t.id: t for t in inspector.list_tasks("default", "pending").tasks}
    assert tasks["good"].type == "t"
    assert tasks["bad"].type == "?"
    assert tasks["bad"].last_error is not None and "unreadable" in tasks["bad"].last_error


@pytest.mark.parametrize(
    ("state", "page", "size", "message"),
    [
        ("running", 1, 20, "unknown task state 'running'"),
        ("pending", 0, 20, "page numbers start at 1"),
        ("pending", 1, 0, "page size must be between 1 and 500"),
        ("pending", 1, 501, "page size must be between 1 and 500"),
    ],
)
def test_list_tasks_refuses_bad_paging(
    inspector: Inspector, state: str, page: int, size: int, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        inspector.list_tasks("default", state, page=page, size=size)


def test_get_task_reports_state_error_and_result(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock)
    assert inspector.get_task("default", "active-0").state is TaskState.ACTIVE
    archived = inspector.get_task("default", "archived-1")
    assert archived.state is TaskState.ARCHIVED and archived.last_error == ERROR
    completed = inspector.get_task("default", "completed-0")
    assert completed.state is TaskState.COMPLETED and completed.result == b'{"ok": true}'


def test_jsonable_gives_plain_json_types(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock)
    data = jsonable(inspector.list_tasks("default", "retry", size=1))
    assert data["state"] == "retry" and data["pages"] == 2 and data["total"] == 2
    row = data["tasks"][0]
    assert row["next_process_at"].endswith("Z") and row["id"] == "retry-0"
    info = jsonable(inspector.get_task("default", "completed-0"))
    assert info["result"] == '{"ok": true}'
    assert jsonable(inspector.queue_stats("default"))["info"]["size"] == 9
