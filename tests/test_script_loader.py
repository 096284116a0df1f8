"""The script loader: includes, header parsing, EVALSHA with NOSCRIPT recovery, pipelines."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

import pytest
import redis
import redis.asyncio

from rq_sched import dedup, errors, ops, scripts
from rq_sched.keys import QueueKeys
from rq_sched.scripts import Call
from tests.script_support import NOW_MS, Store, task


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def every_call(keys: QueueKeys) -> list[Call]:
    """One call of every script, built by ops the way the client and worker build them."""
    limits = ops.ArchiveLimits()
    return [
        ops.enqueue(keys, task("a")),
        ops.enqueue(keys, task("u", unique="d", unique_ttl_ms=10), ("g", 1)),
        ops.enqueue_batch(keys, [task("b"), task("c")]),
        dedup.debounce_call(keys, task("db"), "k"),
        dedup.throttle_call(keys, task("th"), "k", 1000),
        ops.dequeue(keys, 30_000, 1),
        ops.done(keys, [ops.Ack("a", 1, unique="x"), ops.Ack("b", 2)], NOW_MS / 1000),
        ops.retry(keys, "a", 1, encoded=b"m", due_ms=0, now_s=NOW_MS / 1000),
        ops.archive(keys, "a", unique=None, now_s=0, limits=limits),
        ops.archive_active(
            keys, "a", 1, encoded=b"m", unique="x", now_s=0, limits=limits, count_failure=True
        ),
        ops.requeue(keys, [("a", 1)]),
        ops.forward(keys, NOW_MS),
        ops.extend(keys, 30_000, [("a", 1)]),
        ops.recover(keys),
        ops.cancel(keys, "a", None),
        ops.delete(keys, "a", None),
        ops.run_now(keys, "a"),
        ops.set_paused(keys, False),
        ops.trim(keys, NOW_MS, limits),
        ops.claim_tick(keys, "g", 1),
        ops.progress(keys, "a", 1, b"p"),
        ops.unwait(keys, "a"),
        ops.dep_hold(keys, "c", b"h", b"r"),
        ops.dep_link(keys, "a", keys, "c", index=0, expect_new=False),
        ops.dep_report(keys, "c", 0, b"e", "completed", parent="q/p"),
        ops.dep_ack(keys, "a"),
        ops.dep_drop(keys, "a"),
        ops.dep_due(keys, 1000),
        ops.dep_read(keys, "a"),
        ops.task_brief(keys, "a"),
        ops.enqueue_grouped(keys, "g", b"e", NOW_MS, (1000, 0, 0)),
        ops.agg_due(keys, NOW_MS),
        ops.agg_take(keys, "g", NOW_MS, 0),
        ops.agg_commit(keys, "g", now_ms=NOW_MS, grace_ms=1000, task=None, entries=[b"e"]),
        ops.agg_conf(keys, (1000, 0, 0)),
    ]


def test_every_call_covers_every_script_ops_builds() -> None:
    built = {call[0].name for call in every_call(QueueKeys("ns", "q"))}
    # ops re-exports the builders of the modules it gathers; read each of those.
    gathered = {inspect.getmodule(getattr(ops, name)) for name in ops.__all__}
    sources = "".join(inspect.getsource(m) for m in gathered | {dedup} if m is not None)
    assert built == set(re.findall(r'scripts\.load\("(\w+)"\)', sources))


def test_every_script_in_lua_dir_loads_with_a_consistent_header() -> None:
    for script in scripts.all_scripts():
        assert script.numkeys >= 1, script.name
        assert "--@include" not in script.source


def test_every_builder_passes_the_key_count_its_script_declares() -> None:
    for script, keys, _args in every_call(QueueKeys("ns", "q")):
        script.check_keys(keys)


def test_every_key_of_a_call_is_in_the_queue_slot() -> None:
    keys = QueueKeys("ns", "my.queue")
    for _script, call_keys, _args in every_call(keys):
        assert all(key.startswith("ns:{my.queue}:") for key in call_keys)


def test_check_keys_refuses_a_wrong_count() -> None:
    with pytest.raises(TypeError, match="takes 14 keys, got 5"):
        scripts.load("dequeue").check_keys(["k"] * 5)
    scripts.load("done").check_keys(["k"] * 20)  # variadic: more keys may follow


def test_includes_are_expanded_once_each(tmp_path: Path) -> None:
    includes = tmp_path / "includes"
    includes.mkdir()
    (includes / "a.lua").write_text("--@include b\nlocal A = 1\n")
    (includes / "b.lua").write_text("local B = 2\n")
    text = "-- KEYS[1] k\n--@include a\n--@include b\nreturn A + B\n"
    script = scripts.parse_script("x", text, includes)
    assert script.source.count("local B = 2") == 1
    assert script.source.count("local A = 1") == 1
    assert "--@include" not in script.source
    assert script.numkeys == 1


def test_missing_include_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lua include 'nope' not found"):
        scripts.parse_script("x", "--@include nope\nreturn 1\n", tmp_path)


def test_header_keys_must_be_numbered_from_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"numbered 1..n, got \[1, 3\]"):
        scripts.parse_script("x", "-- KEYS[1] a\n-- KEYS[3] c\nreturn 1\n", tmp_path)


def test_run_reloads_scripts_after_script_flush(store: Store) -> None:
    store.run(ops.enqueue(store.keys, task("a")))
    store.r.script_flush()
    assert store.r.script_exists(scripts.load("enqueue").sha) == [False]
    assert store.run(ops.enqueue(store.keys, task("b"))) == 1
    assert store.r.script_exists(scripts.load("enqueue").sha) == [True]
    assert store.r.llen(store.keys.pending) == 2


def test_pipeline_reloads_only_missing_scripts_and_keeps_result_order(store: Store) -> None:
    store.run(ops.enqueue(store.keys, task("a")))
    store.r.script_flush()
    store.run(ops.forward(store.keys, NOW_MS))  # loaded again; the others are not
    calls = [
        ops.forward(store.keys, NOW_MS),
        ops.enqueue(store.keys, task("b")),
        ops.enqueue(store.keys, task("b", payload=b"other")),
        ops.enqueue_batch(store.keys, [task("c"), task("d", due_ms=NOW_MS + 5)]),
        ops.dequeue(store.keys, 30_000, 1),
    ]
    results = scripts.run_pipeline(store.r, calls)
    assert results == [[0, -1], 1, -1, [1, 2], [b"a", task("a").encoded, 0, 1, 0]]


def test_pipeline_returns_script_errors_as_values(store: Store) -> None:
    bad: Call = (scripts.load("forward"), ops.forward(store.keys, 0)[1], ("notanumber", "x"))
    results = scripts.run_pipeline(store.r, [bad, ops.enqueue(store.keys, task("a"))])
    assert isinstance(results[0], redis.ResponseError)
    assert results[1] == 1


def test_async_run_and_pipeline_reload_after_script_flush(redis_url: str, namespace: str) -> None:
    keys = QueueKeys(namespace, "q")

    async def scenario() -> list[object]:
        conn = redis.asyncio.Redis.from_url(redis_url)
        try:
            await conn.script_flush()
            script, call_keys, args = ops.enqueue(keys, task("a"))
            first = await scripts.arun(conn, script, call_keys, args)
            await conn.script_flush()
            rest = await scripts.arun_pipeline(
                conn, [ops.enqueue(keys, task("b")), ops.forward(keys, NOW_MS)]
            )
            return [first, *rest]
        finally:
            await conn.aclose()

    assert asyncio.run(scenario()) == [1, 1, [0, -1]]


def test_lua_failure_codes_match_the_python_error_map() -> None:
    text = (scripts.LUA_DIR / "includes" / "codes.lua").read_text()
    lua_codes = {name: int(code) for name, code in re.findall(r"local (\w+) = (-\d+)", text)}
    assert lua_codes, "no codes found in codes.lua"
    for name, code in lua_codes.items():
        assert getattr(errors, name) == code, name
        error = errors.error_for_code(code, queue="q", task_id="i")
        assert not isinstance(error, errors.ScriptError), f"{name} has no exception mapped"
    assert isinstance(errors.error_for_code(-99, queue="q", task_id="i"), errors.ScriptError)
