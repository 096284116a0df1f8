"""The dashboard's safety rules, enforced by the server (not only hidden in the UI): token auth,
read-only mode, cross-site request refusal, Host checks, and the security headers."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import redis

from rq_sched import Inspector, ManualClock
from rq_sched.web import create_app
from rq_sched.web.app import STATIC_DIR
from rq_sched.web.security import host_name, route_path
from tests.seeding import Seeded, seed_queue
from tests.web.serve import serving

TOKEN = "s3cret-token"
MUTATE = {"X-Requested-With": "rq-sched"}


@pytest.fixture
def seeded(r: redis.Redis, namespace: str, clock: ManualClock) -> Seeded:
    return seed_queue(r, namespace, clock)


@pytest.fixture
def open_app(inspector: Inspector) -> Iterator[httpx.Client]:
    with serving(create_app(inspector)) as client:
        yield client


@pytest.fixture
def token_app(inspector: Inspector) -> Iterator[httpx.Client]:
    with serving(create_app(inspector, auth_token=TOKEN)) as client:
        yield client


@pytest.fixture
def read_only_app(inspector: Inspector) -> Iterator[httpx.Client]:
    with serving(create_app(inspector, read_only=True)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_api_without_the_token_is_401(token_app: httpx.Client, seeded: Seeded) -> None:
    resp = token_app.get("/api/queues")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in resp.json()["error"]


def test_a_wrong_token_is_401(token_app: httpx.Client, seeded: Seeded) -> None:
    assert token_app.get("/api/queues", headers=bearer("guess")).status_code == 401
    assert token_app.get("/api/queues", headers={"Authorization": TOKEN}).status_code == 401


def test_the_right_token_opens_the_api(token_app: httpx.Client, seeded: Seeded) -> None:
    resp = token_app.get("/api/queues", headers=bearer(TOKEN))
    assert resp.status_code == 200 and resp.json()[0]["info"]["queue"] == "default"
    assert token_app.get("/api/config", headers=bearer(TOKEN)).json()["auth"] is True


def test_actions_need_the_token_too(
    token_app: httpx.Client, r: redis.Redis, seeded: Seeded
) -> None:
    resp = token_app.post("/api/queues/default/pause", headers=MUTATE)
    assert resp.status_code == 401 and not r.exists(seeded.keys.paused)
    resp = token_app.post("/api/queues/default/pause", headers={**MUTATE, **bearer(TOKEN)})
    assert resp.status_code == 200 and r.exists(seeded.keys.paused)


def test_metrics_need_the_token(token_app: httpx.Client, seeded: Seeded) -> None:
    assert token_app.get("/metrics").status_code == 401
    assert token_app.get("/metrics", headers=bearer(TOKEN)).status_code == 200


def test_the_page_itself_loads_without_the_token(token_app: httpx.Client) -> None:
    assert token_app.get("/").status_code == 200
    assert token_app.get("/static/app.js").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/queues/default/pause"),
        ("POST", "/api/queues/default/tasks/archived-0/run"),
        ("POST", "/api/queues/default/tasks/pending-0/archive"),
        ("POST", "/api/queues/default/tasks/active-0/cancel"),
        ("DELETE", "/api/queues/default/tasks/pending-0"),
        ("DELETE", "/api/queues/default?force=1"),
        ("POST", "/api/queues/default/tasks:bulk"),
    ],
)
def test_read_only_refuses_every_action(
    read_only_app: httpx.Client,
    r: redis.Redis,
    inspector: Inspector,
    seeded: Seeded,
    method: str,
    path: str,
) -> None:
    before = inspector.queue_stats("default").info
    body = {"state": "archived", "action": "delete"}
    resp = read_only_app.request(method, path, headers=MUTATE, json=body)
    assert resp.status_code == 403 and "read-only" in resp.json()["error"]
    assert inspector.queue_stats("default").info == before
    assert not r.exists(seeded.keys.paused)


def test_read_only_still_shows_everything(read_only_app: httpx.Client, seeded: Seeded) -> None:
    assert read_only_app.get("/api/queues").status_code == 200
    assert read_only_app.get("/api/queues/default/tasks/retry-0").status_code == 200
    assert read_only_app.get("/api/config").json()["read_only"] is True


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "X-Requested-With"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "X-Requested-With"),
        ({"Content-Type": "text/plain"}, "X-Requested-With"),
        ({**MUTATE, "Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site is 'cross-site'"),
        ({**MUTATE, "Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site is 'same-site'"),
        ({**MUTATE, "Origin": "https://evil.example"}, "Origin 'https://evil.example'"),
        ({**MUTATE, "Origin": "null"}, "Origin 'null'"),
    ],
)
def test_cross_site_posts_are_refused(
    open_app: httpx.Client,
    r: redis.Redis,
    seeded: Seeded,
    headers: dict[str, str],
    reason: str,
) -> None:
    resp = open_app.post("/api/queues/default/pause", headers=headers, content=b"x=1")
    assert resp.status_code == 403
    assert "cross-site request refused" in resp.json()["error"]
    assert reason in resp.json()["error"]
    assert not r.exists(seeded.keys.paused)


def test_a_same_origin_browser_post_is_accepted(
    open_app: httpx.Client, r: redis.Redis, seeded: Seeded
) -> None:
    origin = str(open_app.base_url).rstrip("/")
    headers = {**MUTATE, "Origin": origin, "Sec-Fetch-Site": "same-origin"}
    assert open_app.post("/api/queues/default/pause", headers=headers).status_code == 200
    assert r.exists(seeded.keys.paused)


def test_a_json_body_counts_as_a_non_form_request(
    open_app: httpx.Client, r: redis.Redis, seeded: Seeded
) -> None:
    body = {"state": "archived", "action": "delete"}
    assert open_app.post("/api/queues/default/tasks:bulk", json=body).status_code == 200
    assert r.zcard(seeded.keys.archived) == 0


def test_a_foreign_host_name_is_refused_when_hosts_are_limited(
    inspector: Inspector, seeded: Seeded
) -> None:
    app = create_app(inspector, allowed_hosts=["127.0.0.1", "localhost"])
    with serving(app) as client:
        assert client.get("/api/queues").status_code == 200
        rebound = client.get("/api/queues", headers={"Host": "attacker.example"})
        assert rebound.status_code == 400 and "Host" in rebound.json()["error"]


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:8080", "127.0.0.1"), ("[::1]:80", "::1"), ("LocalHost", "localhost")],
)
def test_host_name_strips_the_port(header: str, name: str) -> None:
    assert host_name(header) == name


def test_every_response_carries_a_strict_csp(open_app: httpx.Client) -> None:
    for path in ("/", "/static/app.js", "/api/config", "/api/nothing"):
        headers = open_app.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
    assert open_app.get("/api/config").headers["cache-control"] == "no-store"


def test_the_ui_has_no_inline_script_and_never_parses_html() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son\w+=", html)  # no inline event handlers
    assert re.findall(r'src="static/(\w+\.js)"', html) == ["lib.js", "app.js"]
    js = (STATIC_DIR / "app.js").read_text() + (STATIC_DIR / "lib.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js, sink


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"path": "/api/queues"}, "/api/queues"),
        ({"path": "/ops/q/api/queues", "root_path": "/ops/q"}, "/api/queues"),
        ({"path": "/ops/q", "root_path": "/ops/q"}, "/"),
        # A root path that is only a string prefix of a segment is not a mount point.
        ({"path": "/ops/qapi/queues", "root_path": "/ops/q"}, "/ops/qapi/queues"),
        # A server that already stripped the root path.
        ({"path": "/metrics", "root_path": "/ops/q"}, "/metrics"),
    ],
)
def test_the_guard_judges_the_path_inside_a_mount(scope: dict[str, str], expected: str) -> None:
    assert route_path(scope) == expected
