"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright; no
browser download), served by a real ``rq-sched web`` process over seeded Redis data.

Each test acts on its own queue or state of the shared seeded data, so order does not matter.
Covers what only a browser can show: the token prompt, pages and deep links, paging, an action
changing a task's state (checked in Redis too), and markup in user data shown as text without
running. Screenshots land in each test's tmp_path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from rq_sched import Client, FlowLimits, Inspector, ManualClock, TaskState, TypeLimits
from rq_sched.clock import from_ms, to_ms
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.local_redis import free_port, require_binary, wait_for_port
from rq_sched.models import ScheduleEntryInfo, ScheduleRecord, ServerInfo, WorkerInfo
from tests.seeding import seed_queue
from tests.web.test_holes import rename_queue, rename_task

pytestmark = pytest.mark.browser

TOKEN = "browser-test-token"
XSS = "<img src=x onerror=window.__xss=1><script>window.__xss=2</script>"
XSS_TYPE = "<img src=x onerror=window.__xss=3>"
LONG_ID = "order-" + "9f86d081884c7d659a2feaa0c55ad015" * 6
LONG_TYPE = "billing.invoices.regenerate_" + "monthly_statement_" * 6
BIG = 2_500
"""Pending tasks of the "big" queue: more than one bulk step (2,000) of the UI."""
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
    seed_queue(r, namespace, clock, "sel", counts={"pending": 6, "active": 0})
    seed_queue(r, namespace, clock, "big", counts={"pending": BIG, "active": 0})
    client.enqueue(LONG_TYPE, {"long": "x" * 300}, queue="long", task_id=LONG_ID)
    client.enqueue("resize", {"n": 1}, queue="sel", task_id="img-1")
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
    expect(rows).to_have_count(8)
    default = page.locator('tr[data-queue="default"] td')
    expect(default.nth(1)).to_have_text("25")  # pending
    expect(default.nth(5)).to_have_text("2")  # archived
    expect(page.locator("svg.chart.days rect.processed")).to_have_count(14)
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
    expect(row.locator("td.type")).to_have_text(XSS_TYPE)
    expect(row.locator("td.preview")).to_have_text(XSS)
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


# ---- issue 13 features ------------------------------------------------------------------------

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
VIEWS = [
    "#/queues",
    "#/queues/default/retry",
    "#/queues/long/pending",
    f"#/queues/long/tasks/{LONG_ID}",
    "#/queues/default/tasks/archived-0",
    "#/search?id=retry-0",
    "#/servers",
    "#/scheduler/nightly-id",
    "#/redis",
]
SHOTS = os.environ.get("RQ_SCHED_DOC_SHOTS")
"""Set to a directory (docs/img) to keep the documentation's screenshots from this run."""


def no_overflow(page: Page) -> None:
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"horizontal overflow {widths} on {page.url}"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_every_view_fits_the_width(
    browser: Browser, dashboard: Dashboard, viewport: dict[str, int]
) -> None:
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
        try:
            assert visit_every_view(context.new_page(), dashboard) == []
            if SHOTS:
                keep_screenshots(context.new_page(), dashboard, viewport["width"], scheme)
        finally:
            context.close()


def visit_every_view(page: Page, dashboard: Dashboard) -> list[str]:
    """Open each view, assert it fits the width; returns the script errors seen."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, dashboard, "#/queues")
    for view in VIEWS:
        page.goto(f"{dashboard.url}/{view}")
        expect(page.locator("main .page")).to_be_visible()
        expect(page.locator("main")).not_to_contain_text("Could not load")
        page.wait_for_load_state("networkidle")
        no_overflow(page)
    return errors


def keep_screenshots(page: Page, dashboard: Dashboard, width: int, scheme: str) -> None:
    """The documentation's screenshots (light at both widths; dark: the overview at 1280)."""
    sign_in(page, dashboard, "#/queues")
    views = {
        "overview": "#/queues",
        "queue": "#/queues/sel/pending",
        "task": "#/queues/default/tasks/archived-0",
    }
    if scheme == "dark":
        views = {"overview": "#/queues"} if width == DESKTOP["width"] else {}
    suffix = "-dark" if scheme == "dark" else ""
    for name, view in views.items():
        page.goto(f"{dashboard.url}/{view}")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(300)
        page.screenshot(path=f"{SHOTS}/dashboard-{name}-{width}{suffix}.png")


def test_long_ids_and_types_wrap_inside_their_cards(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/queues/long/pending")
    cell = page.locator("td.id").first
    expect(cell).to_contain_text(LONG_ID[:20])
    card = page.locator(".card").nth(1).bounding_box()
    box = cell.bounding_box()
    assert card is not None and box is not None
    assert box["x"] + box["width"] <= card["x"] + card["width"]
    no_overflow(page)


def test_dark_mode_follows_the_system(browser: Browser, dashboard: Dashboard) -> None:
    colors = []
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme)
        page = context.new_page()
        sign_in(page, dashboard, "#/queues")
        colors.append(page.evaluate("getComputedStyle(document.body).backgroundColor"))
        context.close()
    assert colors[0] != colors[1]
    assert colors[1] == "rgb(17, 21, 28)"


def test_search_finds_a_task_in_any_queue(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/servers")
    page.fill("#search-id", "evil-0")
    page.press("#search-id", "Enter")
    expect(page).to_have_url(f"{dashboard.url}/#/queues/xss/tasks/evil-0")  # one match: opened
    page.fill("#search-id", "retry-0")
    page.press("#search-id", "Enter")
    results = page.locator("#search-results tbody tr")
    expect(results).to_have_count(6)  # every seeded queue holds a retry-0
    page.fill("#search-id", XSS)
    page.press("#search-id", "Enter")
    expect(page.locator("#search-results h2")).to_contain_text(XSS)
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_filter_a_state_by_type(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/queues/sel/pending")
    page.fill("#type-filter", "resize")
    page.press("#type-filter", "Enter")
    expect(page.locator("tr[data-task]")).to_have_count(1)
    expect(page.locator("tr[data-task]")).to_have_attribute("data-task", "img-1")
    page.fill("#type-filter", XSS_TYPE)
    page.press("#type-filter", "Enter")
    expect(page.locator("main .empty")).to_contain_text(XSS_TYPE)
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_page_size_and_jump_to_page(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/queues/big/pending")
    page.select_option("#page-size", "50")
    expect(page.locator("tr[data-task]")).to_have_count(50)
    page.fill("#jump", "3")
    page.press("#jump", "Enter")
    expect(page).to_have_url(f"{dashboard.url}/#/queues/big/pending?page=3&size=50")
    expect(page.locator("tr[data-task]").first).to_have_attribute("data-task", "pending-100")


def test_select_rows_and_archive_the_selection(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/queues/sel/pending")
    page.check('input[data-select="pending-1"]')
    page.check('input[data-select="pending-3"]')
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    page.click("[data-selection=archive]")
    expect(page.locator("#notice")).to_have_text("archive: 2 done")
    expect(page.locator("#selection")).to_be_hidden()
    inspector = dashboard.inspector()
    assert inspector.get_task("sel", "pending-1").state is TaskState.ARCHIVED
    assert inspector.get_task("sel", "pending-2").state is TaskState.PENDING
    assert inspector.get_task("sel", "pending-3").state is TaskState.ARCHIVED


def test_a_bulk_action_over_many_tasks_runs_in_steps(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/queues/big/pending")
    steps: list[str] = []
    page.on("request", lambda req: steps.append(req.url) if "/api/queue/bulk" in req.url else None)
    page.click("[data-bulk=archive]")
    expect(page.locator("#notice")).to_have_text(
        f"archive: {BIG} task(s) done, 0 skipped", timeout=60_000
    )
    assert len(steps) == 2  # 2,000 then 500: no single long request
    info = dashboard.inspector().queue_stats("big").info
    assert (info.pending, info.archived) == (0, BIG + 2)  # 2 were archived before


def test_auto_refresh_updates_in_place(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/queues/sel/pending")
    page.locator("#types summary").click()
    expect(page.locator("#types-table")).to_be_visible()
    page.check('input[data-select="pending-5"]')
    expect(page.locator("#selected-count")).to_have_text("1 selected")
    page.evaluate("document.querySelector('tr[data-task=\"pending-4\"]').__marker = 1")
    page.evaluate(
        "(() => { const cell = document.querySelector('tr[data-task=\"pending-4\"] td.type');"
        " const range = document.createRange(); range.selectNodeContents(cell);"
        " getSelection().removeAllRanges(); getSelection().addRange(range); })()"
    )
    refreshed(page)
    assert page.evaluate("document.querySelector('tr[data-task=\"pending-4\"]').__marker") == 1
    assert page.evaluate("getSelection().toString()") == "email:send"
    page.focus("#type-filter")
    page.keyboard.type("half-typed")
    refreshed(page)
    assert page.evaluate("document.activeElement.id") == "type-filter"
    assert page.input_value("#type-filter") == "half-typed"
    assert page.is_checked('input[data-select="pending-5"]')
    assert page.evaluate("document.getElementById('types').open") is True


def refreshed(page: Page) -> None:
    """Wait until the auto-refresh has re-rendered the page (its clock line changes)."""
    before = page.locator("#updated").inner_text()
    expect(page.locator("#updated")).not_to_have_text(before, timeout=10_000)
    page.wait_for_load_state("networkidle")


def test_minute_charts_show_on_the_overview(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/queues")
    expect(page.locator("#minutes svg.chart.minutes")).to_be_visible()
    expect(page.locator("#minutes")).to_contain_text("minutes sampled")
    page.click("[data-window=day]")
    expect(page.locator("[data-window=day]")).to_have_class("primary")
    expect(page.locator("#minutes")).to_contain_text("of 1440 minutes sampled")


def test_scheduler_fires_show_their_outcome(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "#/scheduler/nightly-id")
    expect(page.locator("#fires [data-outcome]")).to_have_count(2)
    expect(page.locator("#fires [data-outcome=gone]")).to_have_count(2)


def test_task_page_shows_absolute_times_and_asks_before_cancel(
    browser: Browser, dashboard: Dashboard, r: redis.Redis
) -> None:
    context = browser.new_context()
    page = context.new_page()
    questions: list[str] = []

    def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", answer)
    sub = cast(Any, dashboard.r).pubsub()  # typed from redis-py 8.2 on, untyped before
    sub.subscribe(GlobalKeys(dashboard.namespace).cancel_channel)
    sub.get_message(timeout=5)
    try:
        sign_in(page, dashboard, "#/queues/default/tasks/active-1")
        expect(page.locator("dl.fields .abs").first).to_contain_text("UTC")
        page.click("[data-action=cancel]")
        expect(page.locator("#updated")).not_to_have_text("")
        assert questions and "not retried" in questions[0]
        assert sub.get_message(timeout=0.5) is None  # dismissed: nothing was sent
    finally:
        sub.close()
        context.close()


def test_run_a_scheduler_entry_now(page: Page, dashboard: Dashboard) -> None:
    keys = GlobalKeys(dashboard.namespace)
    now = from_ms(to_ms(time.time()))
    Client(dashboard.r, namespace=dashboard.namespace).enqueue(
        "report", {"kind": "daily"}, task_id="tick-live"
    )
    record = ScheduleRecord(now, now, "tick-live", "default")
    dashboard.r.lpush(keys.scheduler_history("nightly-id"), record.to_json())
    sign_in(page, dashboard, "#/scheduler/nightly-id")
    page.click("[data-run-entry=nightly-id]")
    expect(page.locator("#notice")).to_contain_text("ran nightly-id now: task nightly-id:now:")
    expect(page.locator("#fires [data-outcome]").first).to_have_text("pending")


def test_a_queue_page_shows_its_flow_limits(page: Page, dashboard: Dashboard) -> None:
    keys = QueueKeys(dashboard.namespace, "team/a")
    inspector = Inspector(dashboard.r, namespace=dashboard.namespace)
    inspector.set_flow("team/a", FlowLimits(rate="100/s", concurrency=5))
    try:
        sign_in(page, dashboard, "#/queues")
        page.locator('tr[data-queue="team/a"] a').first.click()
        expect(page.locator("main [data-flow]")).to_have_text(
            re.compile(r"^flow: rate 100/s \(burst 1\), \d+ token\(s\) now · cap 5, 0 running$")
        )
    finally:
        inspector.set_flow("team/a", None)
    assert not dashboard.r.exists(keys.flow)


def test_a_queue_page_shows_its_per_key_limits_and_busiest_keys(
    page: Page, dashboard: Dashboard
) -> None:
    keys = QueueKeys(dashboard.namespace, "team-k")
    inspector = Inspector(dashboard.r, namespace=dashboard.namespace)
    client = Client(dashboard.r, namespace=dashboard.namespace)
    inspector.set_flow("team-k", FlowLimits(key_concurrency=1, key_hold_on_retry=True))
    infos = [client.enqueue("t", n, queue="team-k", key="tenant:1") for n in range(2)]
    try:
        sign_in(page, dashboard, "#/queues")
        page.locator('tr[data-queue="team-k"] a').first.click()
        expect(page.locator("main [data-flow]")).to_have_text(
            "flow: per key cap 1 held through retries, 0 key(s) waiting for a token"
        )
        expect(page.locator("main [data-keys]")).to_have_text(
            "keys: 1 with tasks · tenant:1: 2 pending, 0 running"
        )
    finally:
        inspector.set_flow("team-k", None)
        for info in infos:
            inspector.delete_task("team-k", info.id)
        inspector.delete_queue("team-k")  # the other tests' queue lists stay as seeded
    assert not dashboard.r.exists(keys.flow)


def test_a_queue_page_shows_its_limited_task_types(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    keys = QueueKeys(dashboard.namespace, "team-t")
    inspector = Inspector(dashboard.r, namespace=dashboard.namespace)
    client = Client(dashboard.r, namespace=dashboard.namespace)
    crm = TypeLimits(rate="1/h", burst=2, concurrency=3)
    client.set_flow("team-t", FlowLimits(types={"sync:crm": crm}))
    info = client.enqueue("sync:crm", 1, queue="team-t")
    try:
        sign_in(page, dashboard, "#/queues")
        page.locator('tr[data-queue="team-t"] a').first.click()
        expect(page.locator("main [data-flow]")).to_have_text("flow: 1 task type(s) limited")
        row = page.locator('#flow-types tr[data-flow-type="sync:crm"] td')
        expect(row).to_have_text(["sync:crm", "1/h (burst 2)", "3", "1", "0", "0", "2", "idle", ""])
        no_overflow(page)
        page.set_viewport_size({"width": 390, "height": 844})  # the table becomes cards
        expect(row.nth(1)).to_have_text("1/h (burst 2)")
        no_overflow(page)
        shot(page, tmp_path, "flow-types-narrow")
    finally:
        inspector.set_flow("team-t", None)
        inspector.delete_task("team-t", info.id)
        inspector.delete_queue("team-t")  # the other tests' queue lists stay as seeded
    assert not dashboard.r.exists(keys.flow)
