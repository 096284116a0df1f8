"""Namespaces: one validator for every entry point, and SCAN patterns that cannot reach into
another namespace (issue #10, case 11)."""

from __future__ import annotations

import uuid

import pytest
import redis

from rq_sched import Client, Inspector, ValidationError
from rq_sched import keys as keys_module
from rq_sched.keys import QueueKeys


@pytest.mark.parametrize("bad", ["", "ns?", "ns*", "n[s]", "a:b", "{ns}", "n s", "ns\n", "n\x00s"])
def test_check_namespace_rejects_key_syntax_globs_and_whitespace(bad: str) -> None:
    with pytest.raises(ValidationError, match="namespace"):
        keys_module.check_namespace(bad)


def test_check_namespace_accepts_plain_names() -> None:
    assert keys_module.check_namespace("rqs-prod_2.eu") == "rqs-prod_2.eu"


@pytest.mark.parametrize("make", [Client, Inspector])
def test_entry_points_reject_a_glob_namespace_before_writing(
    r: redis.Redis, make: type[Client] | type[Inspector]
) -> None:
    with pytest.raises(ValidationError, match="namespace"):
        make(r, namespace="ns?")


def test_delete_queue_leaves_other_namespaces_alone(r: redis.Redis) -> None:
    other = f"n{uuid.uuid4().hex[:8]}"
    victim = QueueKeys(other, "default")
    r.hset(victim.result, "a", b"keep me")
    # A namespace one glob character away from ``other`` (what "ns?" was to "nsA").
    probe = QueueKeys(other[:-1] + "?", "default")
    found = {k.decode() for k in r.scan_iter(match=probe.pattern(), count=1000)}
    assert victim.result not in found
    r.delete(victim.result)
