"""``rq-sched flow`` and the Inspector's flow view: limits shown and changed at run time,
bad values refused with nothing written."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from rq_sched import Client, FlowLimits, Inspector, KeyLimits, TypeLimits, ValidationError
from rq_sched.cli import main
from rq_sched.keys import QueueKeys


@pytest.fixture
def cli(redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main([argv[0], "--url", redis_url, "--namespace", namespace, *argv[1:]])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_flow_shows_no_limits_for_a_plain_queue(cli: Any) -> None:
    code, out, _ = cli("flow", "default")
    assert code == 0
    assert "rate limit          none" in out
    assert "concurrency cap     none" in out


def test_flow_sets_and_changes_limits_option_by_option(
    cli: Any, inspector: Inspector, r: redis.Redis, namespace: str
) -> None:
    code, out, _ = cli("flow", "api", "--rate", "5000/min", "--concurrency", "5")
    assert code == 0, out
    assert "5000/min (burst 1)" in out and "concurrency cap     5" in out
    code, out, _ = cli("flow", "api", "--burst", "10", "--json")
    assert code == 0
    shown = json.loads(out)
    assert (shown["rate"], shown["burst"], shown["concurrency"]) == ("5000/min", 10, 5)
    assert shown["tokens"] == 11  # a full burst, plus the 20 ms lateness allowance (1 token)
    status = inspector.flow("api")
    assert (status.rate, status.burst, status.concurrency) == ("5000/min", 10, 5)
    assert status.interval_ms == 12.0
    code, out, _ = cli("flow", "api", "--no-rate")
    assert "rate limit          none" in out and "concurrency cap     5" in out
    code, out, _ = cli("flow", "api", "--clear")
    assert code == 0
    assert not r.exists(QueueKeys(namespace, "api").flow)


@pytest.mark.parametrize(
    "argv",
    [
        ("--rate", "0/s"),
        ("--rate", "fast"),
        ("--rate", "100/s", "--concurrency", "0"),
        ("--concurrency", "-3"),
        ("--burst", "0", "--rate", "1/s"),
    ],
)
def test_flow_refuses_bad_values_and_writes_nothing(
    cli: Any, argv: tuple[str, ...], r: redis.Redis, namespace: str
) -> None:
    code, _, err = cli("flow", "api", *argv)
    assert code == 2, err
    assert "must" in err or "not a rate" in err or "at least 1" in err
    assert not r.exists(QueueKeys(namespace, "api").flow)


def test_client_sets_limits_and_registers_the_queue(client: Client, inspector: Inspector) -> None:
    client.set_flow("api", FlowLimits(rate="10/s", concurrency=2))
    assert "api" in inspector.queues()
    status = inspector.flow("api")
    assert (status.rate, status.concurrency, status.active, status.held) == ("10/s", 2, 0, False)
    with pytest.raises(ValidationError, match="queue"):
        client.set_flow("", FlowLimits(rate="10/s"))
    client.set_flow("api", None)
    assert not inspector.flow("api").limited


def test_flow_sets_per_key_limits_and_lists_the_busiest_keys(
    cli: Any, client: Client, inspector: Inspector
) -> None:
    code, out, _ = cli(
        "flow", "api", "--key-concurrency", "1", "--key-hold-on-retry", "--key-rate", "10/s"
    )
    assert code == 0, out
    words = " ".join(out.split())
    assert "per-key concurrency 1, held through retries" in words
    assert "per-key rate 10/s (burst 1)" in words
    for n in range(3):
        client.enqueue("t", n, queue="api", key="tenant:1")
    client.enqueue("t", 9, queue="api", key="tenant:2")
    code, out, _ = cli("flow", "api", "--json")
    shown = json.loads(out)
    assert (shown["key_concurrency"], shown["key_hold_on_retry"]) == (1, True)
    assert shown["keyed_pending"] == 4 and shown["pending"] == 4
    assert shown["keys"]["total"] == 2
    assert [(k["key"], k["pending"], k["state"]) for k in shown["keys"]["keys"]] == [
        ("tenant:1", 3, "ready"),
        ("tenant:2", 1, "ready"),
    ]
    code, out, _ = cli("flow", "api", "--no-key-concurrency")
    status = inspector.flow("api")
    assert (status.key_concurrency, status.key_hold_on_retry, status.key_rate) == (
        None,
        False,
        "10/s",
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"key_concurrency": 0}, "key_concurrency must be an int from 1"),
        ({"key_rate": "0/s"}, "at least 1"),
        ({"key_burst": True}, "key_burst must be an int"),
        ({"key_hold_on_retry": True}, "needs key_concurrency"),
        ({"key_concurrency": 1, "key_hold_on_retry": 1}, "True or False"),
    ],
)
def test_bad_per_key_limits_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FlowLimits(**options)


CRM = TypeLimits(rate="10/s", burst=2, concurrency=3)


def type_limits(inspector: Inspector, queue: str = "api") -> list[tuple[Any, ...]]:
    return [(t.type, t.rate, t.burst, t.concurrency) for t in inspector.flow(queue).types]


def test_changing_the_queue_limits_keeps_the_type_limits(cli: Any, inspector: Inspector) -> None:
    inspector.set_flow("api", FlowLimits(rate="100/s", types={"sync:crm": CRM}))
    code, _, err = cli("flow", "api", "--rate", "5/s", "--concurrency", "4")
    assert code == 0, err
    status = inspector.flow("api")
    assert (status.rate, status.concurrency) == ("5/s", 4)
    assert type_limits(inspector) == [("sync:crm", "10/s", 2, 3)]
    code, _, err = cli("flow", "api", "--no-rate", "--no-concurrency")
    assert code == 0, err
    assert not inspector.flow("api").limited
    assert type_limits(inspector) == [("sync:crm", "10/s", 2, 3)]


def test_flow_sets_changes_and_removes_a_types_limits_option_by_option(
    cli: Any, inspector: Inspector
) -> None:
    code, out, err = cli(
        "flow", "api", "--type", "sync:crm", "--type-rate", "10/s", "--type-concurrency", "2"
    )
    assert code == 0, err
    assert type_limits(inspector) == [("sync:crm", "10/s", 1, 2)]
    words = " ".join(out.split())
    assert "1 limited task type(s):" in words
    assert "type rate burst cap weight in lane running tokens state next token" in words
    assert "sync:crm 10/s 1 2 1 0 0 1 idle -" in words
    code, out, err = cli("flow", "api", "--type", "sync:crm", "--type-burst", "5")
    assert code == 0, err
    assert type_limits(inspector) == [("sync:crm", "10/s", 5, 2)]  # only the burst changed
    code, out, err = cli("flow", "api", "--type", "mail", "--type-concurrency", "1", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert [(t["type"], t["rate"], t["concurrency"], t["state"]) for t in shown["types"]] == [
        ("mail", None, 1, "idle"),
        ("sync:crm", "10/s", 2, "idle"),
    ]
    code, out, err = cli("flow", "api", "--type", "sync:crm", "--no-type-rate")
    assert code == 0, err
    assert type_limits(inspector) == [("mail", None, 1, 1), ("sync:crm", None, 1, 2)]
    code, out, err = cli("flow", "api", "--type", "sync:crm", "--no-type-concurrency")
    assert code == 0, err  # neither limit is left: the type is no longer limited
    assert type_limits(inspector) == [("mail", None, 1, 1)]
    code, out, err = cli("flow", "api", "--no-type", "mail")
    assert code == 0, err
    assert inspector.flow("api").types == ()
    assert "limited task type" not in out


def test_flow_json_shows_a_types_limits_and_tokens(
    cli: Any, client: Client, inspector: Inspector
) -> None:
    inspector.set_flow("api", FlowLimits(types={"sync:crm": TypeLimits(rate="1/h", burst=2)}))
    for n in range(3):
        client.enqueue("sync:crm", n, queue="api")
    code, out, err = cli("flow", "api", "--json")
    assert code == 0, err
    (crm,) = json.loads(out)["types"]
    assert (crm["type"], crm["rate"], crm["burst"], crm["tokens"]) == ("sync:crm", "1/h", 2, 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--type-rate", "10/s"), "--type-rate limit(s) one task type: name it with --type"),
        (("--no-type-concurrency",), "name it with --type TYPE"),
        (("--type", "sync:crm"), "give one of them"),
        (("--type", "mail", "--type-concurrency", "1", "--type-burst", "3"), "a rate too"),
        (("--type", "sync:crm", "--type-rate", "0/s"), "--type sync:crm: rate '0/s'"),
        (("--type", "sync:crm", "--type-concurrency", "0"), "concurrency must be an int"),
        (("--type", "mail", "--no-type-rate"), "'mail' has no limits to remove"),
        (("--no-type", "mail"), "'mail' has no limits on queue 'api'"),
        (("--type", "sync:crm", "--type-rate", "1/s", "--no-type", "sync:crm"), "both changed"),
        (("--type", "sync:crm", "--type-rate", "1/s", "--key-rate", "1/s"), "cannot both be set"),
    ],
)
def test_flow_refuses_bad_type_options_and_writes_nothing(
    cli: Any, argv: tuple[str, ...], message: str, inspector: Inspector
) -> None:
    inspector.set_flow("api", FlowLimits(types={"sync:crm": CRM}))
    code, _, err = cli("flow", "api", *argv)
    assert code == 2, err
    assert message in err
    assert type_limits(inspector) == [("sync:crm", "10/s", 2, 3)]
    assert inspector.flow("api").key_rate is None


VIP = KeyLimits(rate="50/s", burst=5, concurrency=10, weight=4)


def own_keys(inspector: Inspector, queue: str = "api") -> dict[str, KeyLimits]:
    return dict(inspector.flow(queue).keys or {})


def test_changing_the_queue_limits_keeps_the_keys_own_limits(
    cli: Any, inspector: Inspector
) -> None:
    inspector.set_flow("api", FlowLimits(key_concurrency=1, keys={"tenant:vip": VIP}))
    code, _, err = cli("flow", "api", "--rate", "5/s")
    assert code == 0, err
    assert inspector.flow("api").rate == "5/s"
    assert own_keys(inspector) == {"tenant:vip": VIP}
    code, _, err = cli("flow", "api", "--no-key-concurrency")
    assert code == 0, err
    assert own_keys(inspector) == {"tenant:vip": VIP}


def test_changing_a_types_limits_keeps_its_weight(cli: Any, inspector: Inspector) -> None:
    heavy = TypeLimits(rate="10/s", concurrency=3, weight=5)
    inspector.set_flow("api", FlowLimits(rate="1/s", types={"sync:crm": heavy}))
    code, _, err = cli("flow", "api", "--type", "sync:crm", "--type-burst", "2")
    assert code == 0, err
    assert inspector.flow("api").type_limits() == {
        "sync:crm": TypeLimits(rate="10/s", burst=2, concurrency=3, weight=5)
    }
    code, _, err = cli("flow", "api", "--rate", "2/s")
    assert code == 0, err
    assert inspector.flow("api").type_limits()["sync:crm"].weight == 5


def test_flow_sets_changes_and_removes_a_keys_own_limits_option_by_option(
    cli: Any, inspector: Inspector
) -> None:
    inspector.set_flow("api", FlowLimits(key_rate="10/s", key_burst=2, key_concurrency=1))
    code, out, err = cli("flow", "api", "--for-key", "tenant:vip", "--for-key-weight", "4")
    assert code == 0, err
    # A key new to --for-key starts from the per-key defaults: only its weight differs.
    assert own_keys(inspector) == {"tenant:vip": KeyLimits("10/s", 2, 1, weight=4)}
    words = " ".join(out.split())
    assert "1 key(s) with limits of their own" in words
    assert "key rate burst cap weight tenant:vip 10/s 2 1 4" in words
    code, _, err = cli(
        "flow", "api", "--for-key", "tenant:vip", "--for-key-rate", "50/s", "--for-key-burst", "5"
    )
    assert code == 0, err
    code, _, err = cli("flow", "api", "--for-key", "tenant:vip", "--for-key-concurrency", "10")
    assert code == 0, err
    assert own_keys(inspector) == {"tenant:vip": VIP}
    code, out, err = cli("flow", "api", "--for-key", "ops", "--no-for-key-rate", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["key_limits"]["ops"] == {
        "rate": None,
        "burst": 1,
        "concurrency": 1,
        "weight": 1,
        "interval_ms": None,
    }
    assert shown["key_limits"]["tenant:vip"]["weight"] == 4
    assert (shown["keys"]["total"], shown["keys"]["keys"]) == (0, [])  # the busiest, as before
    code, _, err = cli("flow", "api", "--for-key", "ops", "--no-for-key-concurrency")
    assert code == 0, err
    assert own_keys(inspector)["ops"] == KeyLimits()  # exempt from the defaults
    code, out, err = cli("flow", "api", "--no-for-key", "ops", "--no-for-key", "tenant:vip")
    assert code == 0, err
    assert own_keys(inspector) == {}
    assert "limits of their own" not in out
    status = inspector.flow("api")
    assert (status.key_rate, status.key_burst, status.key_concurrency) == ("10/s", 2, 1)


def test_a_key_new_to_for_key_starts_from_the_defaults_set_in_the_same_command(
    cli: Any, inspector: Inspector
) -> None:
    code, _, err = cli(
        "flow", "api", "--key-concurrency", "1", "--for-key", "vip", "--for-key-weight", "3"
    )
    assert code == 0, err
    assert own_keys(inspector) == {"vip": KeyLimits(concurrency=1, weight=3)}


def test_flow_sets_a_types_weight(cli: Any, inspector: Inspector) -> None:
    inspector.set_flow("api", FlowLimits(types={"sync:crm": CRM}))
    code, out, err = cli("flow", "api", "--type", "sync:crm", "--type-weight", "3")
    assert code == 0, err
    assert inspector.flow("api").type_limits() == {
        "sync:crm": TypeLimits(rate="10/s", burst=2, concurrency=3, weight=3)
    }
    assert "sync:crm 10/s 2 3 3 0 0" in " ".join(out.split())
    code, out, err = cli("flow", "api", "--json")
    assert json.loads(out)["types"][0]["weight"] == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--for-key-rate", "10/s"), "--for-key-rate set(s) one key's own limits: name it"),
        (("--no-for-key-concurrency",), "name it with --for-key KEY"),
        (("--for-key", "vip"), "give one of them"),
        (("--for-key", "new", "--for-key-burst", "3"), "give the key a rate too"),
        (("--for-key", "vip", "--for-key-rate", "0/s"), "--for-key vip: rate '0/s'"),
        (("--for-key", "vip", "--for-key-concurrency", "0"), "concurrency must be an int"),
        (("--for-key", "vip", "--for-key-weight", "0"), "weight must be an int from 1"),
        (("--for-key", "vip", "--for-key-rate", "1/s", "--no-for-key-rate"), "contradict"),
        (("--no-for-key", "other"), "'other' has no limits of its own on queue 'api'"),
        (("--for-key", "vip", "--for-key-weight", "2", "--no-for-key", "vip"), "both changed"),
        (("--for-key", "", "--for-key-weight", "2"), "key must be a non-empty str"),
        (("--type", "mail", "--type-rate", "1/s"), "cannot both be set"),
    ],
)
def test_flow_refuses_bad_key_options_and_writes_nothing(
    cli: Any, argv: tuple[str, ...], message: str, inspector: Inspector
) -> None:
    inspector.set_flow("api", FlowLimits(key_concurrency=1, keys={"vip": VIP}))
    code, _, err = cli("flow", "api", *argv)
    assert code == 2, err
    assert message in err
    status = inspector.flow("api")
    assert (status.keys, status.key_concurrency, status.types) == ({"vip": VIP}, 1, ())


def test_flow_refuses_a_weight_for_a_type_without_limits(cli: Any, inspector: Inspector) -> None:
    code, _, err = cli("flow", "api", "--type", "mail", "--type-weight", "2")
    assert code == 2, err
    assert "give it a rate or a cap too" in err
    assert inspector.flow("api").types == ()
