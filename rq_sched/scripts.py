"""Loading and running the Lua scripts in ``lua/``: includes, SHA caching, NOSCRIPT recovery.

Each script is one command, read from its file once per process; ``--@include name`` lines pull
in ``lua/includes/name.lua`` (each include at most once per script). Scripts run by EVALSHA; when
Redis answers NOSCRIPT (first use, restart, SCRIPT FLUSH) the script is loaded and the call
repeated. Pipelines run optimistically by EVALSHA too: calls that came back NOSCRIPT had no
effect, so exactly those are repeated after loading — unlike redis-py's own pipeline script
support, this costs no SCRIPT EXISTS round trip per pipeline.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import hiredis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.client import Redis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

LUA_DIR = Path(__file__).resolve().parent / "lua"
_INCLUDE = re.compile(r"^--@include\s+(\w+)\s*$", re.MULTILINE)
_KEY_DECL = re.compile(r"^-- KEYS\[(\d+)(\.\.)?\]", re.MULTILINE)

SyncRedis = Redis | RedisCluster
AnyAsyncRedis = AsyncRedis | AsyncRedisCluster
Arg = str | bytes | int | float


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua command: its expanded source, SHA1 and the number of KEYS it declares."""

    name: str
    source: str
    sha: str
    numkeys: int
    """How many fixed KEYS the header declares."""
    variadic_keys: bool
    """True when the header declares ``KEYS[n..]``: more keys may follow the fixed ones."""

    def check_keys(self, keys: Sequence[str]) -> None:
        """Fail when a caller passes a key count the script's contract does not allow."""
        if len(keys) == self.numkeys or (self.variadic_keys and len(keys) > self.numkeys):
            return
        raise TypeError(f"script {self.name} takes {self.numkeys} keys, got {len(keys)}")


def expand(source: str, includes_dir: Path) -> str:
    """Replace ``--@include name`` lines with the include's text, once per include."""
    seen: set[str] = set()

    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        path = includes_dir / f"{name}.lua"
        if not path.is_file():
            raise FileNotFoundError(f"lua include {name!r} not found at {path}")
        return _INCLUDE.sub(include, path.read_text())

    return _INCLUDE.sub(include, source)


def parse_script(name: str, text: str, includes_dir: Path) -> Script:
    """Build a :class:`Script` from a file's text; the KEYS count comes from its header."""
    declared = _KEY_DECL.findall(text)
    numbers = [int(n) for n, _ in declared]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"lua/{name}.lua: header KEYS must be numbered 1..n, got {numbers}")
    variadic = any(dots for _, dots in declared)
    source = expand(text, includes_dir)
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    return Script(name, source, sha, len(numbers) - int(variadic), variadic)


@cache
def load(name: str) -> Script:
    """The script ``lua/<name>.lua``, read and expanded once per process."""
    path = LUA_DIR / f"{name}.lua"
    return parse_script(name, path.read_text(), LUA_DIR / "includes")


def all_scripts() -> list[Script]:
    """Every script in ``lua/`` (not the includes)."""
    return [load(path.stem) for path in sorted(LUA_DIR.glob("*.lua"))]


def run(redis: SyncRedis, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    """Run ``script`` by EVALSHA, loading it on NOSCRIPT."""
    try:
        # execute_command, not evalsha(): two fewer Python calls on the hot path
        return redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
    except NoScriptError:
        _load_into(redis, script)
        return redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]


RESEND_ON = (RedisConnectionError, RedisTimeoutError, OSError)
"""Failures of a connection after which a resendable call is sent once more on a fresh one."""


def run_resendable(
    redis: SyncRedis, script: Script, keys: Sequence[str], args: Sequence[Arg]
) -> Any:
    """:func:`run` for a call that is safe to send twice (an enqueue with its task id), on
    the shortest path: on a plain client the command is packed by hiredis (the bytes redis-py
    would send) and written on a pooled connection, without redis-py's per-command machinery,
    which cost more CPU than the enqueue itself. A failure of the connection sends it once
    more on a fresh connection, as redis-py's own retry would."""
    if not isinstance(redis, Redis) or redis.connection is not None:
        return run(redis, script, keys, args)
    command: Any = ("EVALSHA", script.sha, len(keys), *keys, *args)  # hiredis's stub: 1-tuple
    packed = hiredis.pack_command(command)
    try:
        return _send_packed(redis, packed)
    except NoScriptError:
        _load_into(redis, script)
    except RESEND_ON:
        pass
    return _send_packed(redis, packed)


def _send_packed(redis: Redis, packed: bytes) -> Any:
    pool = redis.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([packed])  # type: ignore[no-untyped-call]
        return conn.read_response()
    except ResponseError:
        raise  # the reply was read: the connection is fine
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise
    finally:
        pool.release(conn)


async def arun(
    redis: AnyAsyncRedis, script: Script, keys: Sequence[str], args: Sequence[Arg]
) -> Any:
    """Async :func:`run`."""
    try:
        return await redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        await redis.script_load(script.source)
        return await redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


Call = tuple[Script, Sequence[str], Sequence[Arg]]


def run_pipeline(
    redis: SyncRedis, calls: Sequence[Call], meanwhile: Callable[[], object] | None = None
) -> list[Any]:
    """Run many script calls in one round trip; results in order, exceptions as values.

    ``meanwhile``, if given, is called once while Redis works: on a plain (non-cluster) client
    the calls are written, ``meanwhile()`` runs, then the replies are read, so Python work that
    does not need the replies overlaps with Redis executing the scripts.
    """
    results = _pipeline_once(redis, calls, meanwhile)
    missing = [i for i, res in enumerate(results) if isinstance(res, NoScriptError)]
    if missing:
        for script in {calls[i][0] for i in missing}:
            _load_into(redis, script)
        retried = _pipeline_once(redis, [calls[i] for i in missing], None)
        for i, res in zip(missing, retried, strict=True):
            results[i] = res
    return results


async def arun_pipeline(redis: AnyAsyncRedis, calls: Sequence[Call]) -> list[Any]:
    """Async :func:`run_pipeline`."""
    results = await _apipeline_once(redis, calls)
    missing = [i for i, res in enumerate(results) if isinstance(res, NoScriptError)]
    if missing:
        for script in {calls[i][0] for i in missing}:
            await redis.script_load(script.source)
        retried = await _apipeline_once(redis, [calls[i] for i in missing])
        for i, res in zip(missing, retried, strict=True):
            results[i] = res
    return results


def _pipeline_once(
    redis: SyncRedis, calls: Sequence[Call], meanwhile: Callable[[], object] | None
) -> list[Any]:
    if isinstance(redis, Redis) and redis.connection is None:
        return _write_then_read(redis, calls, meanwhile)
    pipe = redis.pipeline(transaction=False)
    for script, keys, args in calls:
        # Not pipe.evalsha(): redis-py's cluster pipeline blocks that method, though it routes
        # EVALSHA by its keys like any other command.
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    results = list(pipe.execute(raise_on_error=False))
    if meanwhile is not None:
        meanwhile()
    return results


def _write_then_read(
    redis: Redis, calls: Sequence[Call], meanwhile: Callable[[], object] | None
) -> list[Any]:
    """A pipeline on one pooled connection, split so ``meanwhile`` runs between write and read.

    Unlike redis-py's pipeline this never resends after a connection error (the scripts may
    have run); the error propagates and the connection is dropped.
    """
    pool = redis.connection_pool
    conn = pool.get_connection()
    try:
        commands = [("EVALSHA", s.sha, len(keys), *keys, *args) for s, keys, args in calls]
        conn.send_packed_command(conn.pack_commands(commands))  # type: ignore[no-untyped-call]
        if meanwhile is not None:
            meanwhile()
        results: list[Any] = []
        for _ in calls:
            try:
                results.append(conn.read_response())
            except ResponseError as exc:
                results.append(exc)
    except BaseException:
        # Replies may be left unread: never hand this socket out again.
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise
    finally:
        pool.release(conn)
    return results


async def _apipeline_once(redis: AnyAsyncRedis, calls: Sequence[Call]) -> list[Any]:
    pipe = redis.pipeline(transaction=False)
    for script, keys, args in calls:
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    return list(await pipe.execute(raise_on_error=False))


def _load_into(redis: SyncRedis, script: Script) -> None:
    # In a cluster, redis-py sends SCRIPT LOAD to every primary, so any shard can run it.
    redis.script_load(script.source)
