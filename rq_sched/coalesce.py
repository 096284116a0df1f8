"""Coalescing script calls made concurrently on one event loop into pipelines.

An asyncio service that enqueues from many coroutines at once (a web app's request handlers, a
fan-out) would pay one round trip and redis-py's whole per-command path for every call. The
:class:`Coalescer` collects the calls made while the loop runs its current batch of ready
callbacks and sends them together as one pipeline once the loop gets to its next turn. A call
made alone is sent as it is, with no pipeline and no wait beyond that turn.

Each call still gets its own answer: a script's error reply fails only the call that made it,
and a failure of the whole pipeline (a dropped connection) fails every call in it, as it would
have failed each of them sent alone. Calls are written in the order they were made, so two
enqueues from one coroutine keep their order; pipelines in flight at once use separate pooled
connections.

On a plain (non-cluster) client the calls skip redis-py's generic command path: each call is
packed once by hiredis when it is made (the same bytes redis-py would send), and a batch is
written on one pooled connection and its replies read back. That path cost most of an
enqueue's CPU time (argument encoding, pool bookkeeping per command). A batch that fails on the
connection (a pooled connection the server closed, a restart) is sent once more on a fresh one,
as redis-py's own retry would: the calls coalesced here must be safe to resend, as enqueues are
(the same id and message bytes answer as the first call did and write nothing). Cluster
clients go through redis-py's cluster pipeline, which routes each call by its keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis import asyncio as redis_asyncio
from redis.exceptions import NoScriptError, ResponseError

from rq_sched import scripts
from rq_sched.scripts import RESEND_ON, AnyAsyncRedis, Arg, Script

MAX_BATCH = 1000
"""Most calls in one pipeline; more calls made in one turn of the loop go in several."""

_Pending = tuple[Script, Sequence[str], Sequence[Arg], bytes, "asyncio.Future[Any]"]


class Coalescer:
    """Runs script calls on ``redis``, coalescing those made in the same loop turn."""

    def __init__(self, redis: AnyAsyncRedis, *, max_batch: int = MAX_BATCH) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self._raw = isinstance(redis, redis_asyncio.Redis) and redis.connection is None
        self._pending: list[_Pending] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self.pipelines = 0
        """Pipelines sent (batches of two calls or more), for tests and measurements."""
        self.coalesced = 0
        """Calls sent as part of a pipeline."""

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run one script call; its reply, or the error it raised."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A client used from a new loop (asyncio.run again): what the old loop held is gone
            # with it; its callers were cancelled when it closed.
            self._loop, self._pending, self._flush_scheduled = loop, [], False
        future: asyncio.Future[Any] = loop.create_future()
        command: Any = ("EVALSHA", script.sha, len(keys), *keys, *args)  # hiredis's stub: 1-tuple
        packed = hiredis.pack_command(command)
        self._pending.append((script, keys, args, packed, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self.max_batch):
            batch = pending[start : start + self.max_batch]
            sending = asyncio.ensure_future(self._send(batch))
            self._sending.add(sending)  # keep a reference until it is done
            sending.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        live = [call for call in batch if not call[-1].done()]  # callers cancelled: not sent
        if not live:
            return
        try:
            replies = await self._replies(live)
        except asyncio.CancelledError:  # the loop is closing: so are its callers
            for *_, future in live:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every caller in the batch
            replies = [exc] * len(live)
        for (*_, future), reply in zip(live, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _replies(self, live: list[_Pending]) -> list[Any]:
        """Each call's reply, or the error reply of its script, in order."""
        if len(live) > 1:
            self.pipelines += 1
            self.coalesced += len(live)
        if not self._raw:
            if len(live) == 1:
                script, keys, args, *_ = live[0]
                return [await scripts.arun(self.redis, script, keys, args)]
            return await scripts.arun_pipeline(self.redis, [call[:3] for call in live])
        replies = await self._write_then_read(live)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # first use since a restart or SCRIPT FLUSH: those calls did nothing
            for script in {live[i][0] for i in missing}:
                await self.redis.script_load(script.source)
            again = await self._write_then_read([live[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _write_then_read(self, calls: list[_Pending]) -> list[Any]:
        try:
            return await self._on_one_connection(calls)
        except RESEND_ON:
            return await self._on_one_connection(calls)

    async def _on_one_connection(self, calls: list[_Pending]) -> list[Any]:
        assert isinstance(self.redis, redis_asyncio.Redis)
        pool = self.redis.connection_pool
        conn = await cast(Any, pool).get_connection()  # untyped in redis-py
        try:
            await conn.send_packed_command([call[3] for call in calls])
            replies: list[Any] = []
            for _ in calls:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # this call's own error reply
                    replies.append(exc)
        except BaseException:
            # Replies may be left unread: never hand this connection out again.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        return replies
