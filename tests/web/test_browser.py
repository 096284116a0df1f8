"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright; no
browser download), served by a real ``rq-sched web`` process over seeded Redis data.

Each test acts on its own queue or state of the shared seeded data, so order does not matter.
Covers what only a browser can show: the token prompt, pages and deep links, paging, an action
changing a task's state (checked in Redis too), and markup in user data shown as text without
running. Screenshots land in each test's tmp_path.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Page, expect, sync_playwright

from rq_sched import Client, Inspector, ManualClock, TaskState
from rq_sched.clock import from_ms, to_ms
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.local_redis import free_port, require_binary, wait_for_port
from rq_sched.models import ScheduleEntryInfo, ScheduleRecord, ServerInfo, WorkerInfo
from tests.web.seed import seed_queue
from tests.web.test_holes import rename_queue, rename_task

pytestmark = pytest.mark.browser

TOKEN = "browser-test-token"
XSS = "<img src=x onerror=window.__xss=1><script>window.__xss=2</script>"
XSS_TYPE = "<img src=x onerror=window.__xss=3>"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Dashboard:
    url: str
    namespace: str
    r: redis.Redis

    def inspector(self) -> Inspector:
        return Inspector(self.r, namespace=self.namespace)


def start_web(
    redis_url: str, namespace: str, log: Path, *extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    """A real ``rq-sched web`` process on a free port; its output goes to ``log``."""
    port = free_port()
    argv = [sys.executable, "-m", "rq_sched.cli", "--log-level", "WARNING", "web"]
    argv += ["--url", redis_url, "--namespace", namespace, "--port", str(port), *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=20, proc=proc)
    except (RuntimeError, TimeoutError) as exc:
        stop(proc)
        raise AssertionError(f"rq-sched web did not start: {log.read_text()}") from exc
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def seed(r: redis.Redis, namespace: str) -> None:
    clock = ManualClock(time.time() - 120)  # the web process reads the real clock
    seed_queue(r, namespace, clock, "default", counts={"pending": 25})
    seed_queue(r, namespace, clock, "critical", counts={"pending": 4, "active": 0})
    client = Client(r, namespace=namespace, clock=clock)
    client.enqueue(XSS_TYPE, XSS, queue="xss", task_id="evil-0")
    dots = seed_queue(r, namespace, clock, "dots", counts={"pending": 3, "active": 0})
    rename_task(r, dots.keys, "pending-0", "..")
    rename_task(r, dots.keys, "pending-1", ".")
    seed_queue(r, namespace, clock, "slashed", counts={"pending": 2, "active": 0})
    rename_queue(r, namespace, "slashed", "team/a")
    seed_processes(r, GlobalKeys(namespace))


def seed_processes(r: redis.Redis, keys: GlobalKeys) -> None:
    """A live worker server running one task, and a periodic entry with two fires."""
    now = from_ms(to_ms(time.time()))
    server = ServerInfo("srv-1", "worker-host", 4242, {"default": 3}, False, 8, now, "running")
    r.zadd(keys.servers, {"srv-1": to_ms(time.time() + 600)})
    r.set(keys.server("srv-1"), server.to_json())
    worker = WorkerInfo("active-0", "work", "default", now - timedelta(seconds=30))
    r.hset(keys.workers("srv-1"), "active-0", worker.to_json())
    entry = ScheduleEntryInfo(
        "nightly-id", "nightly-report", "0 3 * * *", "report", "default", "UTC", "skip",
        '{"kind": "daily"}', now + timedelta(hours=3), now - timedelta(hours=21), now,
    )  # fmt: skip
    r.hset(keys.scheduler_entries, "nightly-id", entry.to_json())
    for n in range(2):
        fired = now - timedelta(days=n, hours=21)
        record = ScheduleRecord(fired, fired, f"tick-{n}", "default")
        r.rpush(keys.scheduler_history("nightly-id"), record.to_json())


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_binary("chromium")  # loud failure: apt-get install -y chromium
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def dashboard(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    namespace = f"b{uuid.uuid4().hex[:10]}"
    conn = redis.Redis.from_url(redis_url)
    seed(conn, namespace)
    log = tmp_path_factory.mktemp("web") / "web.log"
    proc, url = start_web(redis_url, namespace, log, "--auth-token", TOKEN)
    try:
        yield Dashboard(url, namespace, conn)
    finally:
        stop(proc)
        conn.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    expected = "the server responded with a status of 401"  # the sign-in probe
    opened.on("dialog", lambda dialog: dialog.accept())
    try:
        yield opened
    finally:
        context.close()
    # A CSP violation or a script error shows up here.
    assert [e for e in errors if expected not in e] == [], errors


def sign_in(page: Page, dashboard: Dashboard, hash_: str) -> None:
    page.goto(f"{dashboard.url}/{hash_}")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", TOKEN)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login")).to_be_hidden()


def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def test_overview_asks_for_the_token_then_shows_the_queues(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    sign_in(page, dashboard, "#/queues")
    rows = page.locator("tr[data-queue]")
    expect(rows).to_have_count(5)
    default = page.locator('tr[data-queue="default"] td')
    expect(default.nth(1)).to_have_text("25")  # pending
    expect(default.nth(5)).to_have_text("2")  # archived
    expect(page.locator("svg.chart rect.processed")).to_have_count(14)
    shot(page, tmp_path, "overview")


def test_pending_tasks_page_through_with_deep_links(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    sign_in(page, dashboard, "#/queues/default/pending")
    rows = page.locator("tr[data-task]")
    expect(rows).to_have_count(20)
    expect(rows.first).to_have_attribute("data-task", "pending-0")
    page.click("[data-pager=next]")
    expect(page).to_have_url(f"{dashboard.url}/#/queues/default/pending?page=2")
    expect(rows).to_have_count(5)
    expect(rows.first).to_have_attribute("data-task", "pending-20")
    page.goto(f"{dashboard.url}/#/queues/default/retry")
    expect(page.locator("tr[data-task]")).to_have_count(2)
    expect(page.locator(".tabs a.active")).to_contain_text("retry")
    shot(page, tmp_path, "queue-retry")


def test_run_now_moves_an_archived_task_to_pending(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    sign_in(page, dashboard, "#/queues/critical/archived")
    row = page.locator('tr[data-task="archived-0"]')
    expect(row).to_be_visible()
    row.locator("[data-action=run]").click()
    expect(page.locator("#notice")).to_have_text("moved to pending: archived-0")
    expect(row).to_have_count(0)
    expect(page.locator('.tabs a[data-state="archived"] .count')).to_have_text("1")
    assert dashboard.inspector().get_task("critical", "archived-0").state is TaskState.PENDING
    shot(page, tmp_path, "after-run")


def test_bulk_delete_after_confirming_empties_the_state(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/queues/critical/completed")
    expect(page.locator("tr[data-task]")).to_have_count(2)
    page.click("[data-bulk=delete]")  # the confirm() dialog is accepted
    expect(page.locator("#notice")).to_have_text("delete: 2 task(s) done, 0 skipped")
    expect(page.locator("tr[data-task]")).to_have_count(0)
    assert dashboard.inspector().queue_stats("critical").info.completed == 0


def test_markup_in_user_data_is_text_and_never_runs(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    sign_in(page, dashboard, "#/queues/xss/pending")
    row = page.locator('tr[data-task="evil-0"]')
    expect(row.locator("td").nth(1)).to_have_text(XSS_TYPE)
    expect(row.locator("td").nth(2)).to_have_text(XSS)
    row.locator("a").first.click()
    expect(page).to_have_url(f"{dashboard.url}/#/queues/xss/tasks/evil-0")
    expect(page.locator("#payload")).to_have_text(XSS)
    expect(page.locator("dl.fields")).to_contain_text(XSS_TYPE)
    page.wait_for_timeout(300)  # give an onerror handler every chance to fire
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("main img, main script").count() == 0
    shot(page, tmp_path, "xss-task")


def test_servers_scheduler_and_redis_pages(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    sign_in(page, dashboard, "#/servers")
    server = page.locator('[data-server="srv-1"]')
    expect(server).to_contain_text("worker-host")
    expect(server.locator("tbody tr")).to_have_count(1)
    expect(server.locator("tbody tr")).to_contain_text("active-0")
    page.click("#nav a[data-page=scheduler]")
    page.click("text=nightly-report")
    expect(page).to_have_url(f"{dashboard.url}/#/scheduler/nightly-id")
    expect(page.locator("table").nth(1).locator("tbody tr")).to_have_count(2)
    expect(page.locator("main")).to_contain_text("tick-1")
    shot(page, tmp_path, "scheduler")
    page.click("#nav a[data-page=redis]")
    expect(page.locator("main")).to_contain_text("redis_version")


def test_read_only_dashboard_shows_no_actions(
    browser: Browser, dashboard: Dashboard, redis_url: str, tmp_path: Path
) -> None:
    proc, url = start_web(redis_url, dashboard.namespace, tmp_path / "web.log", "--read-only")
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/#/queues/default/scheduled")
        expect(page.locator("tr[data-task]")).to_have_count(2)
        expect(page.locator("#mode")).to_be_visible()
        assert page.locator("button[data-action], button[data-bulk]").count() == 0
        shot(page, tmp_path, "read-only")
        context.close()
    finally:
        stop(proc)


def test_the_browser_is_debians_chromium(browser: Browser) -> None:
    executable = require_binary("chromium")
    assert "ms-playwright" not in str(Path(executable).resolve())
    reported = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert browser.version in reported


# ---- issue 13 holes ---------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["..", "."])
def test_deleting_a_dot_task_deletes_only_that_task(
    page: Page, dashboard: Dashboard, task_id: str
) -> None:
    sign_in(page, dashboard, "#/queues/dots/pending")
    row = page.locator(f'tr[data-task="{task_id}"]')
    row.locator("a").first.click()
    expect(page.locator("dl.fields")).to_contain_text("pending")
    expect(page.locator("h1")).to_have_text(task_id)
    page.click("[data-action=delete]")  # the confirm() dialog is accepted
    expect(page.locator("#notice")).to_have_text(f"deleted: {task_id}")
    keys = QueueKeys(dashboard.namespace, "dots")
    assert not dashboard.r.hexists(keys.msg, task_id)
    assert dashboard.r.hexists(keys.msg, "pending-2")
    assert dashboard.r.sismember(GlobalKeys(dashboard.namespace).queues, "dots")


def test_a_queue_with_a_slash_opens_and_pauses(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/queues")
    page.locator('tr[data-queue="team/a"] a').first.click()
    expect(page.locator("tr[data-task]")).to_have_count(2)
    page.locator("main [data-action=pause]").first.click()
    expect(page.locator("#notice")).to_have_text("queue team/a paused")
    assert dashboard.r.exists(QueueKeys(dashboard.namespace, "team/a").paused)
    page.locator("main [data-action=unpause]").first.click()
    expect(page.locator("#notice")).to_have_text("queue team/a resumed")


def test_a_malformed_link_shows_a_message_not_a_script_error(
    page: Page, dashboard: Dashboard
) -> None:
    sign_in(page, dashboard, "#/queues/%E0%A4%A")
    expect(page.locator("#bad-link")).to_contain_text("malformed")


def test_a_wrong_token_says_so(page: Page, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/#/queues")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "wrong")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-reason")).to_contain_text("not accepted")
    assert "Authorization" not in page.locator("#login").inner_text()
