"""Regression tests for the holes of issue 13 that HTTP alone shows: dot-segment ids, slash
redirects, unknown queues, huge page numbers, the Origin scheme, and ids or queue names that a
path segment cannot carry (``.``, ``..``, ``a/b``), opened through the query-string routes.

Ids and queue names like these can no longer be enqueued, but Redis may still hold some from
before; they are seeded by renaming the keys of an ordinary task or queue.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from rq_sched import Inspector, ManualClock
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.web import create_app
from tests.seeding import Seeded, seed_queue
from tests.web.serve import serving

MUTATE = {"X-Requested-With": "rq-sched"}


@pytest.fixture
def seeded(r: redis.Redis, namespace: str, clock: ManualClock) -> Seeded:
    return seed_queue(r, namespace, clock)


@pytest.fixture
def http(inspector: Inspector) -> Iterator[httpx.Client]:
    with serving(create_app(inspector)) as client:
        yield client


def rename_task(r: redis.Redis, keys: QueueKeys, old: str, new: str) -> None:
    """Give the pending task ``old`` the id ``new``, as if it had been enqueued with it."""
    r.hset(keys.msg, new, r.hget(keys.msg, old) or b"")
    r.hdel(keys.msg, old)
    r.lrem(keys.pending, 0, old)
    r.lpush(keys.pending, new)


def rename_queue(r: redis.Redis, namespace: str, old: str, new: str) -> QueueKeys:
    """Move every key of queue ``old`` to queue ``new`` (a standalone Redis allows RENAME)."""
    before, after = QueueKeys(namespace, old), QueueKeys(namespace, new)
    for key in list(r.scan_iter(match=before.pattern())):
        suffix = key.decode()[len(before.prefix) :]
        r.rename(key, after.prefix + suffix)
    registry = GlobalKeys(namespace).queues
    r.srem(registry, old)
    r.sadd(registry, new)
    return after


def test_no_slash_redirect_under_api(http: httpx.Client, r: redis.Redis, seeded: Seeded) -> None:
    # What a browser sends for DELETE /api/queues/default/tasks/.. after removing the dot segment.
    resp = http.delete("/api/queues/default/", headers=MUTATE)
    assert resp.status_code == 404 and "location" not in resp.headers
    assert http.get("/api/queues/default/").status_code == 404
    assert r.exists(seeded.keys.msg) and r.sismember(
        GlobalKeys(seeded.keys.namespace).queues, "default"
    )


@pytest.mark.parametrize("task_id", [".", "..", "a/b", "%2e%2e", "?x=1#y"])
def test_any_stored_task_id_opens_and_deletes_through_the_query_routes(
    http: httpx.Client, r: redis.Redis, seeded: Seeded, task_id: str
) -> None:
    rename_task(r, seeded.keys, "pending-0", task_id)
    params = {"queue": "default", "id": task_id}
    data = http.get("/api/task", params=params).json()
    assert (data["id"], data["state"], data["headers"]) == (task_id, "pending", {})
    resp = http.post("/api/task/archive", params=params, headers=MUTATE)
    assert resp.json() == {"archive": task_id}
    assert r.zscore(seeded.keys.archived, task_id) is not None
    assert http.delete("/api/task", params=params, headers=MUTATE).json() == {"deleted": task_id}
    assert not r.hexists(seeded.keys.msg, task_id)
    assert r.hlen(seeded.keys.msg) > 0  # the rest of the queue is untouched


@pytest.mark.parametrize("queue", ["..", ".", "a/b"])
def test_a_stored_queue_whose_name_is_no_path_segment_opens_through_the_query_routes(
    http: httpx.Client, r: redis.Redis, namespace: str, seeded: Seeded, queue: str
) -> None:
    keys = rename_queue(r, namespace, "default", queue)
    detail = http.get("/api/queue", params={"queue": queue}).json()
    assert detail["stats"]["info"]["queue"] == queue
    page = http.get("/api/queue/tasks", params={"queue": queue, "state": "pending"}).json()
    assert page["total"] == 3
    resp = http.post("/api/queue/pause", params={"queue": queue}, headers=MUTATE)
    assert resp.json()["changed"] is True and r.exists(keys.paused)
    task = http.get("/api/task", params={"queue": queue, "id": "pending-0"}).json()
    assert task["queue"] == queue


def test_pausing_an_unknown_queue_is_404_and_leaves_no_key(
    http: httpx.Client, r: redis.Redis, namespace: str
) -> None:
    for action in ("pause", "unpause"):
        resp = http.post(f"/api/queues/nope/{action}", headers=MUTATE)
        assert resp.status_code == 404 and "no queue 'nope'" in resp.json()["error"]
    assert not r.exists(QueueKeys(namespace, "nope").paused)


def test_deleting_an_unknown_queue_is_404(http: httpx.Client) -> None:
    resp = http.delete("/api/queues/nope", headers=MUTATE)
    assert resp.status_code == 404 and "no queue 'nope'" in resp.json()["error"]


def test_deleting_a_queue_that_only_left_a_paused_flag_removes_it(
    http: httpx.Client, r: redis.Redis, namespace: str
) -> None:
    stale = QueueKeys(namespace, "stale").paused
    r.set(stale, 1)  # left behind by an older version that paused unknown queues
    assert http.delete("/api/queues/stale", headers=MUTATE).status_code == 200
    assert not r.exists(stale)


@pytest.mark.parametrize(
    "path", ["/api/queues/nope/tasks?state=pending", "/api/queue/tasks?queue=nope"]
)
def test_tasks_of_an_unknown_queue_is_404(http: httpx.Client, path: str) -> None:
    resp = http.get(path)
    assert resp.status_code == 404 and "no queue 'nope'" in resp.json()["error"]


def test_bulk_on_an_unknown_queue_is_404(http: httpx.Client) -> None:
    body = {"state": "archived", "action": "delete"}
    assert http.post("/api/queues/nope/tasks:bulk", json=body).status_code == 404


@pytest.mark.parametrize("page", ["99999999999999999999", "9223372036854775807"])
def test_a_huge_page_number_is_400_not_500(http: httpx.Client, seeded: Seeded, page: str) -> None:
    for state in ("pending", "archived"):
        resp = http.get(f"/api/queues/default/tasks?state={state}&page={page}")
        assert resp.status_code == 400 and "page" in resp.json()["error"]


def test_the_origin_must_have_this_servers_scheme(
    http: httpx.Client, r: redis.Redis, seeded: Seeded
) -> None:
    host = str(http.base_url.netloc.decode())
    headers = {**MUTATE, "Origin": f"https://{host}"}
    resp = http.post("/api/queues/default/pause", headers=headers)
    assert resp.status_code == 403 and "Origin" in resp.json()["error"]
    assert not r.exists(seeded.keys.paused)
    ok = http.post("/api/queues/default/pause", headers={**MUTATE, "Origin": f"http://{host}"})
    assert ok.status_code == 200


def test_an_empty_auth_token_is_refused(inspector: Inspector) -> None:
    with pytest.raises(ValueError, match="auth_token"):
        create_app(inspector, auth_token="")
    with pytest.raises(ValueError, match="auth_token"):
        create_app(inspector, auth_token="   ")
