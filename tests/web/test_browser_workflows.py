"""The dashboard's task page shows workflow links (the tasks a task waited for, each linking to
its page) and a running task's progress, in a real headless Chromium."""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from rq_sched import Client, ops, scripts, workflows
from rq_sched.keys import QueueKeys
from rq_sched.message import encode_progress
from tests.web.test_browser import Dashboard, browser, dashboard, page, sign_in

__all__ = ["browser", "dashboard", "page"]  # fixtures used by the tests below


def test_the_task_page_links_the_parents_and_shows_progress(
    page: Page, dashboard: Dashboard
) -> None:
    r, namespace = dashboard.r, dashboard.namespace
    client = Client(r, namespace=namespace)
    keys = QueueKeys(namespace, "wf")
    client.enqueue("step", queue="wf", task_id="parent-1", retention=3600)
    client.enqueue("join", queue="wf", task_id="child-1", depends_on=["parent-1"])
    r.lrem(keys.pending, 0, "parent-1")
    r.zadd(keys.lease, {"parent-1": 9_999_999_999_999})
    r.hset(keys.token, "parent-1", 3)
    scripts.run(
        r,
        *ops.done(keys, [ops.Ack("parent-1", 3, keep_until_ms=9_999_999_999_999, result=b"r")], 0),
    )
    workflows.deliver(r, namespace, "wf", "parent-1")
    client.enqueue("long", queue="wf", task_id="running-1")
    r.lrem(keys.pending, 0, "running-1")
    r.zadd(keys.lease, {"running-1": 9_999_999_999_999})
    r.hset(keys.token, "running-1", 5)
    r.hset(keys.progress, "running-1", encode_progress(5, 0.5, "half way", int(time.time() * 1000)))

    sign_in(page, dashboard, "#/queues/wf/tasks/child-1")
    parents = page.locator("#parents")
    expect(parents).to_contain_text("Waited for 1 task(s)")
    expect(parents).to_contain_text("wf/parent-1")
    expect(parents).to_contain_text("completed")
    parents.locator("a").first.click()
    expect(page.locator("h1")).to_contain_text("parent-1")

    page.goto(f"{dashboard.url}/#/queues/wf/tasks/running-1")
    expect(page.locator("#task-progress")).to_contain_text("0.5 · half way")
