"""The queue page's flow card shows the keys with limits of their own and their weights, in a
real headless Chromium."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from rq_sched import Client, FlowLimits, Inspector, KeyLimits
from rq_sched.keys import QueueKeys
from tests.web.test_browser import (
    Dashboard,
    browser,
    dashboard,
    no_overflow,
    page,
    shot,
    sign_in,
)

__all__ = ["browser", "dashboard", "page"]  # fixtures used by the tests below


def test_a_queue_page_shows_its_keys_with_limits_of_their_own(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    keys = QueueKeys(dashboard.namespace, "team-k")
    inspector = Inspector(dashboard.r, namespace=dashboard.namespace)
    client = Client(dashboard.r, namespace=dashboard.namespace)
    vip = KeyLimits(rate="50/s", burst=5, concurrency=10, weight=4)
    client.set_flow("team-k", FlowLimits(keys={"tenant:vip": vip, "ops": KeyLimits()}))
    info = client.enqueue("t", 1, queue="team-k", key="tenant:vip")
    try:
        sign_in(page, dashboard, "#/queues")
        page.locator('tr[data-queue="team-k"] a').first.click()
        expect(page.locator("main [data-flow]")).to_have_text(
            "flow: 2 key(s) with limits of their own"
        )
        expect(page.locator("#flow-keys tr[data-flow-key]")).to_have_count(2)
        vip_row = page.locator('#flow-keys tr[data-flow-key="tenant:vip"] td')
        expect(vip_row).to_have_text(["tenant:vip", "50/s (burst 5)", "10", "4"])
        ops_row = page.locator('#flow-keys tr[data-flow-key="ops"] td')
        expect(ops_row).to_have_text(["ops", "none", "none", "1"])
        no_overflow(page)
        page.set_viewport_size({"width": 390, "height": 844})  # the table becomes cards
        expect(vip_row.nth(3)).to_have_text("4")
        no_overflow(page)
        shot(page, tmp_path, "flow-keys-narrow")
    finally:
        inspector.set_flow("team-k", None)
        inspector.delete_task("team-k", info.id)
        inspector.delete_queue("team-k")  # the other tests' queue lists stay as seeded
    assert not dashboard.r.exists(keys.flow)
