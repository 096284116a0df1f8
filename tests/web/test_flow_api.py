"""The flow limits in the dashboard's JSON API and in /metrics."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from rq_sched import Client, FlowLimits, Inspector, KeyLimits, TypeLimits
from rq_sched.keys import QueueKeys
from rq_sched.web import create_app
from tests.web.serve import serving
from tests.web.test_api import MUTATE


@pytest.fixture
def http(inspector: Inspector) -> Iterator[httpx.Client]:
    with serving(create_app(inspector)) as client:
        yield client


def test_flow_is_shown_with_the_queue_and_on_its_own(http: httpx.Client, client: Client) -> None:
    client.enqueue("t", None, queue="api")
    client.set_flow("api", FlowLimits(rate="100/s", concurrency=3))
    flow = http.get("/api/queue/flow", params={"queue": "api"}).json()
    assert (flow["rate"], flow["concurrency"], flow["pending"], flow["held"]) == (
        "100/s",
        3,
        1,
        False,
    )
    assert flow["tokens"] == 3  # burst 1, plus the 20 ms lateness allowance (2 tokens)
    assert http.get("/api/queue", params={"queue": "api"}).json()["flow"]["concurrency"] == 3


def test_flow_is_changed_through_the_api_and_bad_input_writes_nothing(
    http: httpx.Client, client: Client, r: redis.Redis, namespace: str
) -> None:
    client.enqueue("t", None, queue="api")
    resp = http.post(
        "/api/queue/flow", params={"queue": "api"}, json={"rate": "5/min"}, headers=MUTATE
    )
    assert resp.status_code == 200 and resp.json()["rate"] == "5/min"
    for bad in ({"rate": "0/s"}, {"concurrency": 0}, {"burst": -1}, {"speed": 3}):
        resp = http.post("/api/queue/flow", params={"queue": "api"}, json=bad, headers=MUTATE)
        assert resp.status_code == 400, bad
    assert r.hget(QueueKeys(namespace, "api").flow, "rate") == b"5/min"
    resp = http.post("/api/queue/flow", params={"queue": "api"}, json={}, headers=MUTATE)
    assert resp.status_code == 200 and resp.json()["rate"] is None
    assert not r.exists(QueueKeys(namespace, "api").flow)


def test_flow_changes_are_refused_from_a_plain_cross_site_form(
    http: httpx.Client, inspector: Inspector
) -> None:
    resp = http.post(
        "/api/queue/flow",
        params={"queue": "api"},
        content=b'{"rate": "1/s"}',
        headers={"content-type": "text/plain"},
    )
    assert resp.status_code == 403
    assert not inspector.flow("api").limited


def test_metrics_carry_the_flow_limits(http: httpx.Client, client: Client) -> None:
    client.enqueue("t", None, queue="api")
    client.set_flow("api", FlowLimits(rate="100/s", concurrency=3))
    text = http.get("/metrics").text
    assert 'rq_sched_flow_rate_per_second{queue="api"} 100.0' in text
    assert 'rq_sched_flow_concurrency_cap{queue="api"} 3.0' in text
    assert 'rq_sched_flow_held{queue="api"} 0.0' in text
    assert 'rq_sched_flow_tokens{queue="api"}' in text


def test_per_key_limits_and_keys_in_the_api_and_metrics(
    http: httpx.Client, client: Client, inspector: Inspector
) -> None:
    resp = http.post(
        "/api/queue/flow",
        params={"queue": "api"},
        json={"key_concurrency": 1, "key_hold_on_retry": True, "key_rate": "2/s"},
        headers=MUTATE,
    )
    assert resp.status_code == 200
    assert (resp.json()["key_concurrency"], resp.json()["key_rate"]) == (1, "2/s")
    client.enqueue("t", 1, queue="api", key="tenant:7")
    client.enqueue("t", 2, queue="api", key="tenant:7")
    keys = http.get("/api/queue/keys", params={"queue": "api"}).json()
    assert keys["total"] == 1
    assert keys["keys"][0] == {
        "key": "tenant:7",
        "pending": 2,
        "running": 0,
        "state": "ready",
        "next_token_at": None,
        "tokens": 1,  # burst 1 (plus the 20 ms allowance, less than a token at 2/s)
    }
    detail = http.get("/api/queue", params={"queue": "api"}).json()
    assert detail["keys"]["total"] == 1 and detail["stats"]["info"]["pending"] == 2
    text = http.get("/metrics").text
    assert 'rq_sched_flow_key_concurrency_cap{queue="api"} 1.0' in text
    assert 'rq_sched_flow_key_rate_per_second{queue="api"} 2.0' in text
    assert 'rq_sched_flow_keyed_pending{queue="api"} 2.0' in text
    resp = http.post(
        "/api/queue/flow",
        params={"queue": "api"},
        json={"key_hold_on_retry": True},
        headers=MUTATE,
    )
    assert resp.status_code == 400 and "key_concurrency" in resp.text
    assert inspector.flow("api").key_concurrency == 1


def test_a_post_replaces_every_limit_type_limits_too(
    http: httpx.Client, inspector: Inspector
) -> None:
    crm = TypeLimits(rate="10/s", burst=2, concurrency=3)
    inspector.set_flow("api", FlowLimits(rate="100/s", concurrency=4, types={"sync:crm": crm}))
    shown = http.get("/api/queue/flow", params={"queue": "api"}).json()
    types = {t["type"]: {k: t[k] for k in ("rate", "burst", "concurrency")} for t in shown["types"]}
    body = {"rate": "5/s", "types": types}  # what GET shows, one limit changed
    resp = http.post("/api/queue/flow", params={"queue": "api"}, json=body, headers=MUTATE)
    assert resp.status_code == 200, resp.text
    status = inspector.flow("api")
    assert (status.rate, status.concurrency) == ("5/s", None)  # not sent: no such limit
    assert [(t.type, t.rate, t.burst, t.concurrency) for t in status.types] == [
        ("sync:crm", "10/s", 2, 3)
    ]
    resp = http.post("/api/queue/flow", params={"queue": "api"}, json={}, headers=MUTATE)
    assert resp.status_code == 200, resp.text
    assert inspector.flow("api").types == ()


def test_type_limits_are_set_shown_and_removed_through_the_api(
    http: httpx.Client, client: Client, inspector: Inspector
) -> None:
    types = {"sync:crm": {"rate": "10/s", "burst": 2, "concurrency": 3}, "mail": {"concurrency": 1}}
    resp = http.post(
        "/api/queue/flow",
        params={"queue": "api"},
        json={"rate": "100/s", "types": types},
        headers=MUTATE,
    )
    assert resp.status_code == 200, resp.text
    assert [t["type"] for t in resp.json()["types"]] == ["mail", "sync:crm"]
    client.enqueue("sync:crm", 1, queue="api")
    flow = http.get("/api/queue/flow", params={"queue": "api"}).json()
    crm = flow["types"][1]
    assert {k: crm[k] for k in ("type", "rate", "burst", "concurrency", "running", "state")} == {
        "type": "sync:crm",
        "rate": "10/s",
        "burst": 2,
        "concurrency": 3,
        "running": 0,
        "state": "idle",
    }
    assert crm["tokens"] == 2 and crm["next_token_at"] is None and crm["interval_ms"] == 100.0
    shown = http.get("/api/queue", params={"queue": "api"}).json()["flow"]["types"]
    assert [t["type"] for t in shown] == ["mail", "sync:crm"]
    resp = http.post(
        "/api/queue/flow",
        params={"queue": "api"},
        json={"types": {"mail": {"rate": "1/s"}}},
        headers=MUTATE,
    )
    assert resp.status_code == 200, resp.text
    assert [(t.type, t.rate, t.concurrency) for t in inspector.flow("api").types] == [
        ("mail", "1/s", None)  # given types replace the type limits
    ]
    resp = http.post(
        "/api/queue/flow", params={"queue": "api"}, json={"types": None}, headers=MUTATE
    )
    assert resp.status_code == 200 and resp.json()["types"] == []
    assert inspector.flow("api").types == ()


@pytest.mark.parametrize(
    ("types", "message"),
    [
        (["sync:crm"], 'types as a list must hold objects with a "type"'),
        ("sync:crm", "types must map task types to their limits"),
        ({"sync:crm": "10/s"}, "must be an object"),
        ({"sync:crm": {"speed": 3}}, "unknown fields ['speed']"),
        ({"sync:crm": {}}, "needs a rate or a concurrency"),
        ({"sync:crm": {"rate": "0/s"}}, "at least 1"),
        ({"sync:crm": {"rate": "1/s", "burst": 0}}, "burst must be an int"),
        ({"": {"concurrency": 1}}, "task type"),
    ],
)
def test_bad_type_limits_get_a_400_and_write_nothing(
    http: httpx.Client, inspector: Inspector, types: object, message: str
) -> None:
    inspector.set_flow("api", FlowLimits(types={"mail": TypeLimits(concurrency=1)}))
    resp = http.post(
        "/api/queue/flow", params={"queue": "api"}, json={"types": types}, headers=MUTATE
    )
    assert resp.status_code == 400
    assert message in resp.json()["error"]
    assert [(t.type, t.concurrency) for t in inspector.flow("api").types] == [("mail", 1)]


def test_type_limits_and_per_key_limits_on_one_queue_get_a_400(
    http: httpx.Client, inspector: Inspector
) -> None:
    inspector.set_flow("api", FlowLimits(types={"mail": TypeLimits(concurrency=1)}))
    body = {"key_rate": "1/s", "types": {"mail": {"concurrency": 2}}}
    resp = http.post("/api/queue/flow", params={"queue": "api"}, json=body, headers=MUTATE)
    assert resp.status_code == 400 and "cannot both be set" in resp.json()["error"]
    status = inspector.flow("api")
    assert status.key_rate is None and [t.type for t in status.types] == ["mail"]


def test_metrics_carry_the_type_limits(http: httpx.Client, client: Client) -> None:
    crm = TypeLimits(rate="10/s", burst=2, concurrency=3)
    mail = TypeLimits(concurrency=1)
    client.set_flow("api", FlowLimits(types={"sync:crm": crm, "mail": mail}))
    text = http.get("/metrics").text
    assert 'rq_sched_flow_type_rate_per_second{queue="api",type="sync:crm"} 10.0' in text
    assert 'rq_sched_flow_type_tokens{queue="api",type="sync:crm"} 2.0' in text
    assert 'rq_sched_flow_type_concurrency_cap{queue="api",type="sync:crm"} 3.0' in text
    assert 'rq_sched_flow_type_concurrency_cap{queue="api",type="mail"} 1.0' in text
    assert 'rq_sched_flow_type_running{queue="api",type="mail"} 0.0' in text
    assert 'rq_sched_flow_type_pending{queue="api",type="sync:crm"} 0.0' in text
    assert 'rq_sched_flow_type_rate_per_second{queue="api",type="mail"}' not in text


VIP = {"rate": "50/s", "burst": 5, "concurrency": 10, "weight": 4}


def test_keys_own_limits_are_set_shown_and_removed_through_the_api(
    http: httpx.Client, client: Client, inspector: Inspector
) -> None:
    client.enqueue("t", 1, queue="api", key="tenant:vip")
    body = {"key_concurrency": 1, "keys": {"tenant:vip": VIP, "ops": {}}}
    resp = http.post("/api/queue/flow", params={"queue": "api"}, json=body, headers=MUTATE)
    assert resp.status_code == 200, resp.text
    assert inspector.flow("api").keys == {
        "ops": KeyLimits(),  # no field: exempt from the per-key defaults
        "tenant:vip": KeyLimits(rate="50/s", burst=5, concurrency=10, weight=4),
    }
    flow = http.get("/api/queue/flow", params={"queue": "api"}).json()
    assert flow["keys"] == {
        "ops": {"rate": None, "burst": 1, "concurrency": None, "weight": 1, "interval_ms": None},
        "tenant:vip": {**VIP, "interval_ms": 20.0},
    }
    detail = http.get("/api/queue", params={"queue": "api"}).json()
    assert detail["flow"]["keys"]["tenant:vip"]["weight"] == 4
    resp = http.post(
        "/api/queue/flow", params={"queue": "api"}, json={"key_rate": "1/s"}, headers=MUTATE
    )
    assert resp.status_code == 200 and resp.json()["keys"] is None  # a POST replaces them all
    assert inspector.flow("api").keys is None


def test_a_types_weight_is_set_and_shown_through_the_api(
    http: httpx.Client, inspector: Inspector
) -> None:
    body = {"types": {"sync:crm": {"concurrency": 2, "weight": 3}}}
    resp = http.post("/api/queue/flow", params={"queue": "api"}, json=body, headers=MUTATE)
    assert resp.status_code == 200, resp.text
    assert inspector.flow("api").type_limits() == {"sync:crm": TypeLimits(concurrency=2, weight=3)}
    (crm,) = http.get("/api/queue/flow", params={"queue": "api"}).json()["types"]
    assert (crm["type"], crm["concurrency"], crm["weight"]) == ("sync:crm", 2, 3)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["tenant:vip"], "keys must map fairness keys to their limits"),
        ({"tenant:vip": 4}, "keys['tenant:vip'] must be an object"),
        ({"tenant:vip": {"share": 3}}, "unknown fields ['share']"),
        ({"tenant:vip": {"weight": 0}}, "weight must be an int from 1"),
        ({"tenant:vip": {"weight": 2.5}}, "weight must be an int from 1"),
        ({"tenant:vip": {"rate": "0/s"}}, "at least 1"),
        ({"tenant:vip": {"concurrency": 0}}, "concurrency must be an int"),
        ({"": {"weight": 2}}, "key must be a non-empty str"),
        ({f"k{n}": {} for n in range(1001)}, "at most 1000"),
    ],
)
def test_bad_key_limits_get_a_400_and_write_nothing(
    http: httpx.Client, inspector: Inspector, keys: object, message: str
) -> None:
    inspector.set_flow("api", FlowLimits(keys={"old": KeyLimits(weight=2)}))
    resp = http.post(
        "/api/queue/flow", params={"queue": "api"}, json={"keys": keys}, headers=MUTATE
    )
    assert resp.status_code == 400
    assert message in resp.json()["error"]
    assert inspector.flow("api").keys == {"old": KeyLimits(weight=2)}


def test_a_bad_type_weight_gets_a_400_and_writes_nothing(
    http: httpx.Client, inspector: Inspector
) -> None:
    body = {"types": {"mail": {"concurrency": 1, "weight": 1001}}}
    resp = http.post("/api/queue/flow", params={"queue": "api"}, json=body, headers=MUTATE)
    assert resp.status_code == 400 and "weight must be an int" in resp.json()["error"]
    body = {"keys": {"vip": {"weight": 2}}, "types": {"mail": {"concurrency": 1}}}
    resp = http.post("/api/queue/flow", params={"queue": "api"}, json=body, headers=MUTATE)
    assert resp.status_code == 400 and "cannot both be set" in resp.json()["error"]
    assert inspector.flow("api").types == () and inspector.flow("api").keys is None


def test_metrics_carry_the_type_weights_and_the_keys_own_limits(
    http: httpx.Client, client: Client, inspector: Inspector
) -> None:
    vip = KeyLimits(rate="50/s", burst=5, concurrency=10, weight=4)
    client.set_flow(
        "api", FlowLimits(key_concurrency=1, keys={"tenant:vip": vip, "ops": KeyLimits()})
    )
    client.set_flow("crm", FlowLimits(types={"sync:crm": TypeLimits(concurrency=1, weight=3)}))
    text = http.get("/metrics").text
    assert 'rq_sched_flow_type_weight{queue="crm",type="sync:crm"} 3.0' in text
    assert 'rq_sched_flow_key_own_rate_per_second{key="tenant:vip",queue="api"} 50.0' in text
    assert 'rq_sched_flow_key_own_concurrency_cap{key="tenant:vip",queue="api"} 10.0' in text
    assert 'rq_sched_flow_key_own_weight{key="tenant:vip",queue="api"} 4.0' in text
    assert 'rq_sched_flow_key_own_weight{key="ops",queue="api"} 1.0' in text
    assert 'rq_sched_flow_key_own_rate_per_second{key="ops"' not in text  # exempt: no rate
    assert "at most 1000 keys per queue" in text


def test_a_get_body_posted_back_as_it_is_changes_nothing(
    http: httpx.Client, client: Client, inspector: Inspector
) -> None:
    inspector.set_flow(
        "api",
        FlowLimits(rate="100/s", burst=3, concurrency=4, types={"mail": TypeLimits(rate="5/s")}),
    )
    client.enqueue("mail", 1, queue="api")
    inspector.set_flow(
        "other", FlowLimits(key_concurrency=2, keys={"vip": KeyLimits(concurrency=5, weight=3)})
    )
    for queue in ("api", "other"):
        before = inspector.flow(queue)
        shown = http.get("/api/queue/flow", params={"queue": queue}).json()
        resp = http.post("/api/queue/flow", params={"queue": queue}, json=shown, headers=MUTATE)
        assert resp.status_code == 200, resp.text
        after = inspector.flow(queue)
        assert (after.rate, after.burst, after.concurrency, after.key_concurrency) == (
            before.rate,
            before.burst,
            before.concurrency,
            before.key_concurrency,
        )
        assert after.type_limits() == before.type_limits()
        assert after.keys == before.keys
