"""The operations commands of ``rq-sched``, run through ``rq_sched.cli.main`` against real Redis;
each test checks what was printed and what changed in Redis."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import redis

from rq_sched import Client, Inspector, ManualClock, TaskState
from rq_sched.cli import main
from rq_sched.clock import from_ms, to_ms
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.local_redis import free_port
from rq_sched.message import decode
from rq_sched.models import ScheduleEntryInfo, ScheduleRecord, ServerInfo, WorkerInfo
from tests.seeding import Seeded, seed_queue


@pytest.fixture
def now_clock() -> ManualClock:
    """The CLI reads the system clock, so seed at the real "now" (daily counters, latency)."""
    return ManualClock(time.time() - 60)


@pytest.fixture
def seeded(r: redis.Redis, namespace: str, now_clock: ManualClock) -> Seeded:
    return seed_queue(r, namespace, now_clock, counts={"pending": 5})


@pytest.fixture
def cli(redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main([argv[0], "--url", redis_url, "--namespace", namespace, *argv[1:]])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_queues_prints_a_row_per_queue(
    cli: Any, r: redis.Redis, namespace: str, now_clock: ManualClock, seeded: Seeded
) -> None:
    seed_queue(r, namespace, now_clock, "low", counts={"pending": 1, "active": 0})
    code, out, _ = cli("queues")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:8] == [
        "QUEUE", "STATE", "PENDING", "ACTIVE", "SCHEDULED", "RETRY", "ARCHIVED", "COMPLETED"
    ]  # fmt: skip
    assert lines[1].split()[:8] == ["default", "running", "5", "2", "2", "2", "2", "2"]
    assert lines[2].split()[:4] == ["low", "running", "1", "0"]


def test_queues_json_is_the_inspector_data(cli: Any, seeded: Seeded) -> None:
    code, out, _ = cli("queues", "--json")
    data = json.loads(out)
    assert code == 0 and len(data) == 1
    info = data[0]["info"]
    assert (info["queue"], info["pending"], info["processed_today"]) == ("default", 5, 2)
    assert data[0]["latency"] > 0


def test_queue_shows_counts_memory_and_history(cli: Any, seeded: Seeded) -> None:
    code, out, _ = cli("queue", "default", "--days", "3")
    assert code == 0
    assert "memory     ~" in out and "KiB" in out
    assert "processed  2 today, 2 total" in out
    assert "failed     4 today, 4 total" in out
    history = out.split("DAY")[1].splitlines()[1:]
    assert len(history) == 3 and history[-1].split()[1:] == ["2", "4"]


def test_queue_unknown_name_fails_with_a_hint(cli: Any) -> None:
    code, out, err = cli("queue", "nope")
    assert code == 1 and out == ""
    assert "no queue 'nope'; `rq-sched queues` lists them" in err


def test_queue_delete_refuses_active_tasks_unless_forced(
    cli: Any, r: redis.Redis, seeded: Seeded
) -> None:
    code, _, err = cli("queue", "default", "--delete", "--yes")
    assert code == 1 and "active task" in err
    assert r.exists(seeded.keys.msg)
    code, out, _ = cli("queue", "default", "--delete", "--force", "--yes")
    assert code == 0 and "deleted queue 'default'" in out
    assert list(r.scan_iter(match=seeded.keys.pattern())) == []


def test_tasks_pages_pending_in_run_order(cli: Any, seeded: Seeded) -> None:
    code, out, _ = cli("tasks", "default", "pending", "--size", "2", "--page", "2")
    assert code == 0
    rows = out.splitlines()
    assert rows[0].split()[:3] == ["ID", "TYPE", "PAYLOAD"]
    assert [row.split()[0] for row in rows[1:3]] == ["pending-2", "pending-3"]
    assert rows[-1] == "page 2/3 of 5 pending task(s)"


def test_tasks_bulk_runs_every_archived_task(cli: Any, r: redis.Redis, seeded: Seeded) -> None:
    code, out, _ = cli("tasks", "default", "archived", "--bulk", "run", "--yes")
    assert code == 0 and out.strip() == "run: 2 archived task(s); 0 skipped"
    assert r.zcard(seeded.keys.archived) == 0
    assert r.llen(seeded.keys.pending) == 7


def test_tasks_bulk_refuses_an_action_the_state_does_not_allow(cli: Any, seeded: Seeded) -> None:
    code, _, err = cli("tasks", "default", "pending", "--bulk", "run", "--yes")
    assert code == 2 and "run does not apply to pending tasks" in err


def test_task_shows_payload_and_full_error(cli: Any, seeded: Seeded) -> None:
    code, out, _ = cli("task", "default", "retry-0")
    assert code == 0
    assert "state       retry" in out and "retried     1 of 25" in out
    assert '"task": "retry-0"' in out  # pretty-printed payload
    assert "Traceback (most recent call last)" in out


@pytest.mark.parametrize(
    ("task_id", "action", "state"),
    [
        ("archived-0", "run", TaskState.PENDING),
        ("pending-0", "archive", TaskState.ARCHIVED),
        ("scheduled-1", "delete", None),
    ],
)
def test_task_actions_change_the_task(
    cli: Any,
    r: redis.Redis,
    namespace: str,
    seeded: Seeded,
    task_id: str,
    action: str,
    state: TaskState | None,
) -> None:
    code, out, _ = cli("task", "default", task_id, action)
    assert code == 0 and out.strip() == f"{action}: done for {task_id}"
    if state is None:
        assert not r.hexists(seeded.keys.msg, task_id)
    else:
        assert Inspector(r, namespace=namespace).get_task("default", task_id).state is state


def test_a_task_id_that_starts_with_a_dash_goes_after_a_double_dash(
    cli: Any, redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Client.from_url(redis_url, namespace=namespace).enqueue("t", task_id="-dash")
    code, out, _ = cli("task", "default", "--", "-dash")
    assert code == 0 and "state       pending" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["task", "--url", redis_url, "--namespace", namespace, "default", "-dash"])
    assert exit_info.value.code == 2
    assert "goes after '--'" in capsys.readouterr().err


def test_task_cancel_of_a_pending_task_is_refused(cli: Any, seeded: Seeded) -> None:
    code, _, err = cli("task", "default", "pending-0", "cancel")
    assert code == 1 and "not active" in err


def test_task_cancel_reports_listening_servers(cli: Any, seeded: Seeded) -> None:
    code, out, _ = cli("task", "default", "active-0", "cancel", "--json")
    assert code == 0
    assert json.loads(out) == {"cancelled": "active-0", "servers_notified": 0}


def test_pause_and_unpause_set_the_flag(cli: Any, r: redis.Redis, seeded: Seeded) -> None:
    assert cli("pause", "default")[1].strip() == "queue default is now paused"
    assert r.exists(seeded.keys.paused)
    assert cli("pause", "default")[1].strip() == "queue default was already paused"
    assert cli("unpause", "default")[1].strip() == "queue default is now running"
    assert not r.exists(seeded.keys.paused)


def test_servers_lists_workers(cli: Any, r: redis.Redis, namespace: str) -> None:
    keys = GlobalKeys(namespace)
    now = from_ms(to_ms(time.time()))
    info = ServerInfo("srv-1", "web-7", 4242, {"default": 1}, False, 4, now, "running", active=1)
    r.zadd(keys.servers, {"srv-1": to_ms(time.time() + 30)})
    r.set(keys.server("srv-1"), info.to_json())
    worker = WorkerInfo("task-9", "email:send", "default", now - timedelta(seconds=5))
    r.hset(keys.workers("srv-1"), "task-9", worker.to_json())
    code, out, _ = cli("servers")
    assert code == 0
    assert "srv-1  web-7 pid 4242  running  queues default=1  1/4 busy" in out
    assert out.splitlines()[2].split()[:3] == ["task-9", "email:send", "default"]


def test_cron_lists_entries_with_recent_tasks(cli: Any, r: redis.Redis, namespace: str) -> None:
    keys = GlobalKeys(namespace)
    now = from_ms(to_ms(time.time()))
    entry = ScheduleEntryInfo(
        "e1", "nightly", "0 3 * * *", "report", "default", "UTC", "skip", "{}",
        now + timedelta(hours=1), now - timedelta(hours=23), now,
    )  # fmt: skip
    r.hset(keys.scheduler_entries, "e1", entry.to_json())
    r.rpush(keys.scheduler_history("e1"), ScheduleRecord(now, now, "tick-1", "default").to_json())
    code, out, _ = cli("cron")
    assert code == 0
    row = out.splitlines()[1]
    assert row.startswith("nightly  0 3 * * *  report  default")
    assert row.endswith("tick-1")
    assert "(in 59m" in row or "(in 1h" in row


def test_enqueue_later_with_a_duration(cli: Any, r: redis.Redis, namespace: str) -> None:
    code, out, _ = cli("enqueue", "email:send", '{"to": 42}', "--in", "5m", "--task-id", "e-1")
    assert code == 0 and out.startswith("enqueued e-1 (email:send) on default: scheduled due ")
    due = r.zscore(QueueKeys(namespace, "default").scheduled, "e-1")
    assert due is not None and abs(due / 1000 - (time.time() + 300)) < 30
    task = Inspector(r, namespace=namespace).get_task("default", "e-1")
    assert task.payload == {"to": 42}


def test_enqueue_at_an_instant_on_another_queue(cli: Any, r: redis.Redis, namespace: str) -> None:
    code, out, _ = cli(
        "enqueue", "report", "--at", "2031-02-03T04:05:06+01:00", "--queue", "low", "--json"
    )
    data = json.loads(out)
    assert code == 0 and data["queue"] == "low" and data["state"] == "scheduled"
    assert data["next_process_at"] == "2031-02-03T03:05:06Z"
    assert r.zcard(QueueKeys(namespace, "low").scheduled) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["t", "not json"], "payload must be JSON"),
        (["t", "--at", "2030-01-01T09:00"], "has no UTC offset"),
        (["t", "--at", "tomorrow"], "is not an ISO 8601 time"),
        (["t", "--in", "5 parsecs"], "--in: "),
        (["t", "--queue", "has space"], "may not contain braces, spaces"),
    ],
)
def test_enqueue_refuses_bad_input_with_a_hint(
    cli: Any, r: redis.Redis, namespace: str, argv: list[str], message: str
) -> None:
    code, _, err = cli("enqueue", *argv)
    assert code == 2 and message in err
    assert r.scard(GlobalKeys(namespace).queues) == 0


def test_enqueue_debounce_keeps_one_task_per_window_carrying_the_newest_payload(
    cli: Any, r: redis.Redis, namespace: str
) -> None:
    code, out, _ = cli("enqueue", "sync", '{"v": 1}', "--debounce", "acct:7", "--window", "1h")
    assert code == 0 and out.startswith("enqueued ") and ": scheduled due " in out
    first = out.split()[1]
    code, out, _ = cli(
        "enqueue", "sync", '{"v": 2}', "--debounce", "acct:7", "--window", "1h", "--json"
    )
    data = json.loads(out)
    assert code == 0 and data["debounced"] and data["replaced"]
    assert data["task"]["id"] == first and data["task"]["payload"] == {"v": 2}
    keys = QueueKeys(namespace, "default")
    assert r.zcard(keys.scheduled) == 1 and r.hlen(keys.msg) == 1


def test_enqueue_throttle_drops_the_calls_after_the_first_in_a_window(
    cli: Any, r: redis.Redis, namespace: str
) -> None:
    code, out, _ = cli("enqueue", "ping", '"a"', "--throttle", "host:1", "--window", "1h")
    assert code == 0 and out.startswith("enqueued ")
    kept = out.split()[1]
    code, out, _ = cli("enqueue", "ping", '"b"', "--throttle", "host:1", "--window", "1h")
    assert code == 0 and out.startswith(f"dropped: the window keeps {kept} (ping)")
    keys = QueueKeys(namespace, "default")
    assert r.llen(keys.pending) == 1 and r.hlen(keys.msg) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["t", "--debounce", "k"], "need --window"),
        (["t", "--window", "5s"], "--window goes with --debounce KEY or --throttle KEY"),
        (["t", "--debounce", "k", "--window", "5s", "--in", "1m"], "leave out --in, --at"),
        (["t", "--throttle", "k", "--window", "5s", "--unique", "1m"], "leave out --unique"),
        (["t", "--throttle", "k", "--window", "soon"], "--window: "),
        (["t", "--debounce", "", "--window", "5s"], "key"),
    ],
)
def test_enqueue_debounce_and_throttle_refuse_bad_input_and_write_nothing(
    cli: Any, r: redis.Redis, namespace: str, argv: list[str], message: str
) -> None:
    code, _, err = cli("enqueue", *argv)
    assert code == 2 and message in err, err
    assert r.keys(f"{namespace}:*") == []


def test_stats_sums_every_queue(
    cli: Any, r: redis.Redis, namespace: str, now_clock: ManualClock, seeded: Seeded
) -> None:
    seed_queue(r, namespace, now_clock, "low", counts={"pending": 1, "active": 0})
    code, out, _ = cli("stats", "--json", "--days", "2")
    data = json.loads(out)
    assert code == 0 and data["queues"] == 2
    assert data["totals"]["pending"] == 6 and data["totals"]["archived"] == 4
    assert [d["processed"] for d in data["history"]] == [0, 4]
    assert data["redis"][0]["info"]["redis_version"]


def test_tables_escape_control_characters_in_user_data(
    cli: Any, r: redis.Redis, namespace: str
) -> None:
    assert cli("enqueue", "t", '"\\u001b[2Jwiped"')[0] == 0
    code, out, _ = cli("tasks", "default", "pending")
    assert code == 0 and "\x1b" not in out
    assert "\\x1b[2Jwiped" in out


# ---- issue 13 holes ---------------------------------------------------------------------------

CONTROL = "\x1b]0;TITLE\x07\x1b[2J\r\u202e"
"""A terminal title change, a screen wipe, a carriage return and a bidi override."""


def assert_no_control(text: str) -> None:
    assert not any(c in text for c in "\x1b\x07\r\u202e"), repr(text)


def test_task_escapes_control_characters_in_every_field(
    cli: Any, r: redis.Redis, namespace: str, now_clock: ManualClock
) -> None:
    # Enqueue refuses control characters in ids and types now, so the hostile task is written
    # the way an older version or another writer could have left it: straight into the store.
    client = Client(r, namespace=namespace, clock=now_clock)
    keys = QueueKeys(namespace, "default")
    task_id = "id" + CONTROL
    client.enqueue("plain", "payload" + CONTROL, task_id="plain-id")
    stored = r.hget(keys.msg, "plain-id")
    assert isinstance(stored, bytes)
    message = replace(decode(stored, task_id="plain-id"), type="type" + CONTROL)
    failed = message.failed("error" + CONTROL, to_ms(now_clock.now())).encode()
    r.hset(keys.msg, task_id, failed)
    r.hdel(keys.msg, "plain-id")
    r.lrem(keys.pending, 0, "plain-id")
    r.lpush(keys.pending, task_id)
    code, out, err = cli("task", "default", task_id)
    assert code == 0, err
    assert_no_control(out)
    assert out.count("\\x1b]0;TITLE") == 4  # id, type, payload, error: shown escaped
    code, out, err = cli("task", "default", task_id, "archive")
    assert code == 0 and "\\x1b" in out
    assert_no_control(out)
    code, _, err = cli("task", "default", "ghost" + CONTROL)
    assert code == 1
    assert_no_control(err)


def test_enqueue_escapes_control_characters_it_prints(cli: Any) -> None:
    code, out, err = cli("enqueue", "t" + CONTROL, "--task-id", "x" + CONTROL)
    assert code == 2, out  # refused before anything is written...
    assert_no_control(err)  # ...and the refusal shows the bad text escaped
    assert "\\x1b]0;TITLE" in err


def test_a_huge_page_number_is_a_clear_error(cli: Any, seeded: Seeded) -> None:
    code, out, err = cli("tasks", "default", "archived", "--page", "99999999999999999999")
    assert code == 2 and out == ""
    assert "page 99999999999999999999" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ("tasks", "nope", "pending"),
        ("pause", "nope"),
        ("unpause", "nope"),
        ("queue", "nope", "--delete", "--yes"),
        ("tasks", "nope", "archived", "--bulk", "delete", "--yes"),
    ],
)
def test_an_unknown_queue_fails_and_writes_nothing(
    cli: Any, r: redis.Redis, namespace: str, argv: tuple[str, ...]
) -> None:
    code, _, err = cli(*argv)
    assert code == 1 and "no queue 'nope'" in err
    assert list(r.scan_iter(match=QueueKeys(namespace, "nope").pattern())) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("queue", "default", "--delete", "--force"),
        ("tasks", "default", "archived", "--bulk", "run"),
    ],
)
def test_deletes_and_bulk_actions_need_yes(
    cli: Any, r: redis.Redis, seeded: Seeded, argv: tuple[str, ...]
) -> None:
    code, _, err = cli(*argv)
    assert code == 2 and "--yes" in err
    assert r.zcard(seeded.keys.archived) == 2


def test_reading_with_redis_down_gives_no_write_advice(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    code = main(["queues", "--url", url])
    err = capsys.readouterr().err
    assert code == 1 and "cannot talk to Redis" in err
    assert "retry" not in err and "task_id" not in err


def test_tasks_filter_by_type(cli: Any, r: redis.Redis, namespace: str, seeded: Seeded) -> None:
    Client(r, namespace=namespace).enqueue("resize", {"n": 1}, task_id="img-1")
    code, out, _ = cli("tasks", "default", "pending", "--type", "resize")
    assert code == 0
    assert [row.split()[0] for row in out.splitlines()[1:-1]] == ["img-1"]
    assert out.splitlines()[-1] == "page 1/1 of 1 pending task(s) of type resize"


def test_queue_shards_sets_n_and_the_queue_shows_its_shards(
    cli: Any, r: redis.Redis, namespace: str
) -> None:
    code, out, _ = cli("queue", "orders", "--shards", "3")
    assert code == 0
    assert out.startswith("queue 'orders': 1 -> 3 shard(s): orders~0of3-1, orders~1of3-3")
    assert r.hget(GlobalKeys(namespace).shards, "orders") == b"3"
    client = Client(r, namespace=namespace)
    for i in range(6):
        client.enqueue("t", i, queue="orders")
    code, out, _ = cli("queues")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["orders"]
    code, out, _ = cli("queue", "orders")
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("orders")]
    assert [row[:2] for row in rows] == [
        ["orders~0of3-1", "2"], ["orders~1of3-3", "2"], ["orders~2of3-2", "2"], ["orders", "0"]
    ]  # fmt: skip
    code, _, err = cli("queue", "orders", "--shards", "6")
    assert code != 0
    assert "still holds tasks" in err
    assert r.hget(GlobalKeys(namespace).shards, "orders") == b"3"
