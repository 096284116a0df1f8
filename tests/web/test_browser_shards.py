"""The dashboard shows a sharded queue as one queue, with its shards on its page, and pauses
every shard at once, in a real headless Chromium."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from rq_sched import Client, Inspector
from rq_sched.keys import QueueKeys
from rq_sched.shards import layout
from tests.web.test_browser import Dashboard, browser, dashboard, page, sign_in

__all__ = ["browser", "dashboard", "page"]  # fixtures used by the tests below


def test_a_sharded_queue_page_lists_its_shards_and_pauses_them_all(
    page: Page, dashboard: Dashboard
) -> None:
    r, namespace = dashboard.r, dashboard.namespace
    Inspector(r, namespace=namespace).set_shards("orders", 3)
    client = Client(r, namespace=namespace)
    for i in range(6):
        client.enqueue("ship", i, queue="orders")

    sign_in(page, dashboard, "#/queues")
    expect(page.locator('tr[data-queue="orders"]')).to_have_count(1)
    expect(page.locator('tr[data-queue^="orders~"]')).to_have_count(0)
    page.locator('tr[data-queue="orders"] a').first.click()
    expect(page.locator("#shards tr[data-shard]")).to_have_count(4)
    for name in layout("orders", 3):
        expect(page.locator(f'#shards tr[data-shard="{name}"]')).to_contain_text("2")
    expect(page.locator("tr[data-task]")).to_have_count(6)
    page.locator("main [data-action=pause]").first.click()
    expect(page.locator("#notice")).to_have_text("queue orders paused")
    assert all(r.exists(QueueKeys(namespace, q).paused) for q in [*layout("orders", 3), "orders"])
