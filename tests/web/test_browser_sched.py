"""The scheduler page's pause / resume and the task page's attempt errors, in the real headless
Chromium of :mod:`tests.web.test_browser` (same fixtures: a real ``rq-sched web`` process over
seeded Redis data)."""

# ruff: noqa: F811 - the fixtures imported from test_browser are parameters of these tests
from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from rq_sched import Client
from rq_sched.clock import from_ms, to_ms
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.message import decode
from rq_sched.models import ScheduleRecord
from tests.web.test_browser import (  # noqa: F401 - fixtures used by name
    XSS,
    Dashboard,
    browser,
    dashboard,
    page,
    pytestmark,
    sign_in,
)


def test_pause_and_resume_an_entry_from_the_scheduler_page(
    page: Page, dashboard: Dashboard
) -> None:
    paused_key = GlobalKeys(dashboard.namespace).scheduler_paused
    sign_in(page, dashboard, "#/scheduler")
    page.click("[data-pause-entry=nightly-id]")
    expect(page.locator("#notice")).to_contain_text("entry nightly-id paused")
    expect(page.locator("[data-key='e:nightly-id'] [data-paused]")).to_have_text("paused")
    assert dashboard.r.sismember(paused_key, "nightly-id")
    expect(page.locator("[data-pause-entry=nightly-id]")).to_have_text("Resume")
    page.click("[data-pause-entry=nightly-id]")
    expect(page.locator("#notice")).to_contain_text("entry nightly-id resumed")
    expect(page.locator("[data-key='e:nightly-id'] [data-paused]")).to_have_count(0)
    assert not dashboard.r.sismember(paused_key, "nightly-id")


def test_a_skipped_fire_shows_as_skipped(page: Page, dashboard: Dashboard) -> None:
    now = from_ms(to_ms(time.time()))
    record = ScheduleRecord(now, now, "", "default", skipped=True)
    history = GlobalKeys(dashboard.namespace).scheduler_history("nightly-id")
    dashboard.r.lpush(history, record.to_json())
    sign_in(page, dashboard, "#/scheduler/nightly-id")
    expect(page.locator("#fires [data-outcome]").first).to_have_text("skipped")
    expect(page.locator("#fires tbody tr").first).to_contain_text("entry paused")


def test_task_page_shows_every_kept_attempt_error_as_text(page: Page, dashboard: Dashboard) -> None:
    keys = QueueKeys(dashboard.namespace, "errs")
    Client(dashboard.r, namespace=dashboard.namespace).enqueue(
        "flaky", None, queue="errs", task_id="errs-1"
    )
    message = decode(dashboard.r.hget(keys.msg, "errs-1"))  # type: ignore[arg-type]
    for n in range(1, 4):
        message = message.failed(f"ValueError: attempt {n} {XSS}", at_ms=to_ms(time.time()))
    dashboard.r.hset(keys.msg, "errs-1", message.encode())
    sign_in(page, dashboard, "#/queues/errs/tasks/errs-1")
    expect(page.locator("#last-error")).to_have_text(f"ValueError: attempt 3 {XSS}")
    earlier = page.locator("#earlier-errors .attempt-error")
    expect(earlier).to_have_count(2)
    expect(earlier.first.locator("pre")).to_have_text(f"ValueError: attempt 2 {XSS}")
    expect(earlier.nth(1)).to_contain_text("Attempt 1")
    assert page.evaluate("window.__xss") is None
    assert page.locator("#earlier-errors img, #earlier-errors script").count() == 0
