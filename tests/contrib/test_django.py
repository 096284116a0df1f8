"""Django: a task enqueued on commit reaches Redis only after the commit and never after a
rollback; a Redis outage at commit time raises after the commit; the settings are checked; the
dashboard answers staff users only; ``manage.py rqsched_worker`` runs tasks in a process where
Django is set up."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import django
import pytest
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client as DjangoClient
from django.test.utils import override_settings

from rq_sched import Client, Inspector, RedisUnavailableError, ValidationError
from rq_sched.contrib.django import enqueue_on_commit, get_client, on_commit
from rq_sched.contrib.django.conf import settings as rq_settings
from rq_sched.contrib.typed import TaskHandle
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import free_port
from tests.contrib.django_project import settings_for
from tests.worker_support import ROOT, queue_state, stop_process, wait_until

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class RollbackError(Exception):
    """Raised to roll a transaction back."""


@pytest.fixture(scope="session")
def django_namespace() -> str:
    return f"dj{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def django_project(
    redis_url: str, django_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Django configured in this process (once: settings cannot be configured twice)."""
    database = tmp_path_factory.mktemp("django") / "db.sqlite3"
    settings.configure(
        **settings_for(redis_url=redis_url, namespace=django_namespace, database=database)
    )
    django.setup()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")


@pytest.fixture
def client(django_project: None, r: redis.Redis, namespace: str) -> Client:
    return Client(r, namespace=namespace)


def orders() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT item FROM orders ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def place_order(item: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders (item) VALUES (%s)", [item])


def test_a_task_enqueued_in_a_rolled_back_transaction_never_reaches_redis(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    with pytest.raises(RollbackError), transaction.atomic():
        place_order("rolled back")
        enqueue_on_commit("order:ship", {"item": "rolled back"}, client=client)
        raise RollbackError
    assert "rolled back" not in orders()
    assert r.keys(f"{namespace}:*") == []


def test_a_task_enqueued_in_a_committed_transaction_is_in_redis_only_after_the_commit(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    keys = QueueKeys(namespace, "shipping")
    with transaction.atomic():
        place_order("committed")
        task_id = enqueue_on_commit(
            "order:ship", {"item": "committed"}, queue="shipping", client=client
        )
        assert r.hget(keys.msg, task_id) is None  # not before the commit
        assert r.keys(f"{namespace}:*") == []
    assert "committed" in orders()
    assert r.hget(keys.msg, task_id) is not None
    assert r.lrange(keys.pending, 0, -1) == [task_id.encode()]


def test_a_rolled_back_savepoint_drops_its_task_and_the_outer_commit_sends_the_rest(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    with transaction.atomic():
        kept = enqueue_on_commit("order:ship", {"n": 1}, client=client)
        with pytest.raises(RollbackError), transaction.atomic():  # a savepoint
            enqueue_on_commit("order:ship", {"n": 2}, client=client)
            raise RollbackError
    assert r.lrange(QueueKeys(namespace, "default").pending, 0, -1) == [kept.encode()]


def test_a_fairness_key_given_on_commit_reaches_redis(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    with transaction.atomic():
        task_id = enqueue_on_commit("order:ship", {"n": 1}, key="tenant:7", client=client)
    info = Inspector(r, namespace=namespace).get_task("default", task_id)
    assert info.key == "tenant:7"


def test_a_shard_key_on_commit_is_refused_at_the_call(client: Client) -> None:
    with pytest.raises(ValidationError, match="shard_key"):
        enqueue_on_commit("order:ship", None, shard_key="cust-1", client=client)


def test_outside_a_transaction_the_task_is_sent_at_once(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    task_id = enqueue_on_commit("order:ship", None, client=client)
    assert r.hget(QueueKeys(namespace, "default").msg, task_id) is not None


def test_a_typed_task_is_checked_when_enqueued_and_sent_on_commit(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    ship = TaskHandle("order:ship", int)
    with pytest.raises(ValidationError), transaction.atomic():
        on_commit(ship.new_task("seven"), client=client)  # type: ignore[arg-type]
    with transaction.atomic():
        task_id = on_commit(ship.new_task(7), client=client)
    assert r.hget(QueueKeys(namespace, "default").msg, task_id) is not None


def test_bad_arguments_fail_at_the_call_not_at_the_commit(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    with transaction.atomic():
        place_order("bad args")
        with pytest.raises(ValidationError, match="naive"):
            enqueue_on_commit("order:ship", None, process_at=datetime(2030, 1, 1), client=client)
    assert "bad args" in orders()  # the transaction itself went on and committed
    assert r.keys(f"{namespace}:*") == []


def test_debounce_or_throttle_on_commit_is_refused_at_the_call(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    # on_commit enqueues with client.enqueue: a debounce it would drop silently is refused.
    with transaction.atomic(), pytest.raises(ValidationError, match="takes no debounce="):
        enqueue_on_commit("order:ship", None, debounce="k", window=5, client=client)
    assert r.keys(f"{namespace}:*") == []


def test_redis_down_at_commit_raises_after_the_database_committed(django_project: None) -> None:
    down = Client.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with pytest.raises(RedisUnavailableError), transaction.atomic():
        place_order("committed, task lost")
        enqueue_on_commit("order:ship", None, client=down)
    assert "committed, task lost" in orders()


def test_robust_on_commit_logs_a_redis_outage_instead_of_raising(
    django_project: None, caplog: pytest.LogCaptureFixture
) -> None:
    down = Client.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with transaction.atomic():
        place_order("robust")
        enqueue_on_commit("order:ship", None, client=down, robust=True)
    assert "robust" in orders()
    assert any(r.exc_info and r.exc_info[0] is RedisUnavailableError for r in caplog.records)


def test_the_default_client_comes_from_the_settings(
    django_project: None, r: redis.Redis, django_namespace: str
) -> None:
    with transaction.atomic():
        task_id = enqueue_on_commit("order:ship", {"from": "settings"})
    assert get_client().namespace == django_namespace
    assert r.hget(QueueKeys(django_namespace, "default").msg, task_id) is not None


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ({"URL": "redis://x", "CONCURENCY": 4}, r"unknown key\(s\) \['CONCURENCY'\]"),
        ({"QUEUES": {"default": 0}}, "weights >= 1"),
        ({"CLUSTER": "yes"}, r"\['CLUSTER'\] must be a bool"),
        ({"NAMESPACE": "a:b"}, "namespace"),
        ({"ARCHIVE_MAX_SIZE": -1}, "archive max_size must be an int >= 0"),
        ({"ARCHIVE_MAX_AGE": 0}, "archive max_age_s must be at least 1 ms"),
        ({"LEASE": 0}, r"\['LEASE'\] must be >= 1 second"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    django_project: None, setting: dict[str, object], error: str
) -> None:
    with override_settings(RQ_SCHED=setting), pytest.raises(ImproperlyConfigured, match=error):
        rq_settings()


@pytest.fixture
def staff(django_project: None) -> User:
    from django.contrib.auth.models import User  # noqa: PLC0415 - needs the configured apps

    name = f"staff{uuid.uuid4().hex[:6]}"
    return User.objects.create_user(name, password="x", is_staff=True)


def test_the_dashboard_needs_a_staff_login(django_project: None, staff: User) -> None:
    from django.contrib.auth.models import User  # noqa: PLC0415 - needs the configured apps

    browser = DjangoClient(enforce_csrf_checks=True)
    page = browser.get("/admin/queues/")
    assert page.status_code == 302
    assert page["Location"] == "/admin/login/?next=/admin/queues/"
    assert browser.get("/admin/queues/api/queues").status_code == 403
    browser.force_login(User.objects.create_user(f"u{uuid.uuid4().hex[:6]}"))  # not staff
    assert browser.get("/admin/queues/api/queues").status_code == 403
    browser.force_login(staff)
    page = browser.get("/admin/queues/")
    assert page.status_code == 200 and b'src="static/app.js"' in page.content
    assert browser.get("/admin/queues/static/app.js").status_code == 200
    queues = browser.get("/admin/queues/api/queues")
    assert queues.status_code == 200 and isinstance(queues.json(), list)


def test_only_a_superuser_may_change_queues_through_the_dashboard(
    django_project: None, staff: User, r: redis.Redis, django_namespace: str
) -> None:
    """Found by review: any staff account, even one granted no permission, could delete
    queues and tasks."""
    get_client().enqueue("mail:send", None, queue="mail")
    browser = DjangoClient(enforce_csrf_checks=True)
    browser.force_login(staff)
    refused = browser.post("/admin/queues/api/queues/mail/pause", headers={"X-Requested-With": "t"})
    assert refused.status_code == 403 and "superuser" in refused.json()["error"]
    assert not r.exists(QueueKeys(django_namespace, "mail").paused)
    assert browser.get("/admin/queues/api/queues").status_code == 200


def test_the_dashboard_keeps_its_cross_site_rules_under_django(
    django_project: None, staff: User, r: redis.Redis, django_namespace: str
) -> None:
    get_client().enqueue("mail:send", None, queue="mail")
    browser = DjangoClient(enforce_csrf_checks=True)
    staff.is_superuser = True
    staff.save()
    browser.force_login(staff)
    refused = browser.post("/admin/queues/api/queues/mail/pause")
    assert refused.status_code == 403 and "cross-site" in refused.json()["error"]
    paused = browser.post("/admin/queues/api/queues/mail/pause", headers={"X-Requested-With": "t"})
    assert paused.status_code == 200, paused.content
    assert r.exists(QueueKeys(django_namespace, "mail").paused)


def test_the_worker_command_runs_tasks_with_django_set_up(
    redis_url: str, r: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    project = settings_for(redis_url=redis_url, namespace=namespace, database=tmp_path / "db")
    project["RQ_SCHED"]["ROUTER"] = "tests.contrib.django_tasks:router"
    project["RQ_SCHED"]["QUEUES"] = {"dj": 1}
    project["RQ_SCHED"]["ARCHIVE_MAX_SIZE"] = 54321  # found by review: it could not be set
    (tmp_path / "worker_settings.py").write_text(
        "".join(f"{key} = {value!r}\n" for key, value in project.items())
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "worker_settings",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "django", "rqsched_worker", "--log-level", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    key = f"{namespace}:seen"
    try:
        Client(r, namespace=namespace).enqueue("dj:report", {"key": key}, queue="dj")
        seen = wait_until(lambda: r.lrange(key, 0, -1), timeout=30, what="the handler's report")
    finally:
        code, err = stop_process(worker)
    assert seen == [f"{namespace}:42".encode()]
    assert code == 0, err
    assert r.hget(QueueKeys(namespace, "dj").limits, "max_size") == b"54321"
    assert queue_state(r, namespace, "dj")["msg"] == 0


def test_the_scheduler_command_reads_its_entries_from_the_settings(
    redis_url: str, tmp_path: Path
) -> None:
    schedule = tmp_path / "schedule.toml"
    schedule.write_text('[[entry]]\nname = "nightly"\nspec = "30 2 * * *"\ntype = "report"\n')
    project = settings_for(redis_url=redis_url, namespace="djs", database=tmp_path / "db")
    project["RQ_SCHED"]["SCHEDULE"] = str(schedule)
    (tmp_path / "sched_settings.py").write_text(
        "".join(f"{key} = {value!r}\n" for key, value in project.items())
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "sched_settings",
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "rqsched_scheduler", "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "nightly" in done.stdout and "02:30" in done.stdout
