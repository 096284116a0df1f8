"""Waking with the dequeue already sent: one round trip from a marker to a leased task.

An idle worker blocks on its queues' marker set (``BZPOPMIN``). Asking for tasks only after the
wake-up's reply arrives costs a second round trip. Instead the watcher writes the dequeue right
behind the blocking call on the same connection, so Redis runs it the moment the wait ends (a
blocked client's later commands wait in its input buffer): the marker and the leased tasks come
back together.

Two things make this safe:

- **Slots are reserved** for the dequeue while it waits (:class:`Prefetch`), so the fetcher
  never leases more tasks than the worker has slots. When the fetcher needs the dequeue to run now
  (a flow limit's timer fired, a refused queue may be served again, a shutdown began), the
  watcher's wait is ended with ``CLIENT UNBLOCK`` from another connection (:meth:`kick`); the
  dequeue then runs at once.
- **The read's time is known.** A handler starts only within ``START_WINDOW`` of sending a read
  that confirmed its lease (docs/core.md). The dequeue here was sent long before it ran, so its
  send time would force a renewal before every start. Two ``TIME`` calls bracket the wait (one
  written before the block, one right after the dequeue): the dequeue ran at least their
  difference after this side sent the batch, capped by the time this side itself saw pass, so
  ``sent + min(redis elapsed, local elapsed)`` is never later than the read — except across a
  forward step of the Redis host's wall clock during the wait, which docs/core.md names.

Only plain (non-cluster) clients prefetch, with one watcher per server; in a cluster each queue
has its own watcher and the fetcher asks after the wake-up, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis.exceptions import RedisError, ResponseError

from rq_sched.scripts import AnyAsyncRedis, Call

log = logging.getLogger("rq_sched")


UNBLOCK_TRIES = 200
UNBLOCK_PAUSE = 0.005
"""A kick tries ``CLIENT UNBLOCK`` for up to 1 s while its wait is not blocked yet in Redis."""


@dataclass(frozen=True, slots=True)
class Prefetch:
    """A dequeue sent ahead of a wake-up, with the slots reserved for what it leases."""

    queue: str
    count: int
    call: Call


class Prefetcher(Protocol):
    """What the watcher needs from the fetcher (:class:`~rq_sched.worker.fetcher.Fetcher`)."""

    async def settle(self) -> None:
        """Return once the fetcher is not asking for tasks itself (bounded)."""

    def plan_prefetch(self) -> Prefetch | None:
        """A dequeue to send with the next wait (its slots reserved), or None."""

    def prefetched(self, plan: Prefetch, reply: Any, confirmed_at: float) -> None:
        """The dequeue ran: ``reply`` is its answer, read by Redis at or after ``confirmed_at``
        (monotonic); the reservation ends."""

    def prefetch_failed(self, plan: Prefetch, error: BaseException) -> None:
        """The dequeue gave no answer (or an error); the reservation ends."""


def redis_seconds(reply: Any) -> float:
    """A ``TIME`` reply as seconds."""
    seconds, micros = reply
    return int(seconds) + int(micros) / 1_000_000


class PrefetchingWait:
    """One connection's ``BZPOPMIN`` with a dequeue behind it, and the means to end it early.

    A kick must never be lost, whatever point of the wait it meets: before the connection's id
    is known it is kept and sent once it is; while blocked it is sent at once; after the wait
    ended (its dequeue may have run before the reason for the kick) it is reported through
    :attr:`kicked_late`, and the caller looks again."""

    def __init__(self, redis: AnyAsyncRedis, keys: list[str], prefetcher: Prefetcher) -> None:
        self.redis = redis
        self.keys = keys
        self.prefetcher = prefetcher
        self._phase = "idle"
        """idle, writing (sent; the connection's id unread), blocked, or answered."""
        self._client_id = 0
        self._kick_wanted = False
        self.kicked_late = False
        """A kick came after the last wait's dequeue had run."""
        self.kicked = False
        """The last wait was kicked (ended early, or asked to be)."""
        self._kicks: set[asyncio.Task[None]] = set()
        self._waits = 0
        """Waits begun so far: a kick's retries stop when the wait it was for has ended."""
        self.usable: bool | None = None
        """Whether this client may end a wait early (``CLIENT ID`` and ``CLIENT UNBLOCK``; an
        ACL user may lack them): None until checked. A wait that cannot be ended early must
        not carry a dequeue, since its reserved slots would wait for its timeout."""

    async def check(self) -> bool:
        """Whether waits may carry a dequeue (checked once: ``CLIENT UNBLOCK`` of this
        connection's own id, which is not blocked, answers 0 when allowed)."""
        if self.usable is None:
            pool = cast(Any, self.redis).connection_pool
            try:
                conn = await pool.get_connection()
                try:
                    await conn.send_command("CLIENT", "ID")
                    own_id = int(await conn.read_response())
                    await conn.send_command("CLIENT", "UNBLOCK", own_id)
                    await conn.read_response()
                finally:
                    await pool.release(conn)
            except ResponseError as exc:
                self._refused(exc)
            except (RedisError, OSError):
                return False  # the plain wait meets the outage; checked again after it
            else:
                self.usable = True
        return self.usable is True

    def _refused(self, exc: BaseException) -> None:
        if self.usable is not False:
            log.warning(
                "waits carry no dequeue (a wake-up costs two round trips): Redis refused "
                "CLIENT ID or CLIENT UNBLOCK (%s); allow them to this user to save one",
                exc,
            )
        self.usable = False

    def kick(self) -> None:
        """End the current wait now, so its dequeue runs (no-op when nothing waits)."""
        if self._phase in ("writing", "blocked"):
            self.kicked = True
        if self._phase == "writing":
            self._kick_wanted = True
        elif self._phase == "blocked":
            unblock = self._unblock(self._client_id, self._waits)
            task = asyncio.get_running_loop().create_task(unblock)
            self._kicks.add(task)
            task.add_done_callback(self._kicks.discard)
        elif self._phase == "answered":
            self.kicked_late = True

    async def _unblock(self, client_id: int, wait: int) -> None:
        """``CLIENT UNBLOCK`` the wait numbered ``wait``. It answers 0 when Redis has not
        blocked the client yet (a proxy may deliver the batch in pieces, so the id and the
        first TIME can be answered before the BZPOPMIN arrives): then it is sent again, while
        that wait is still the one blocked, for at most :data:`UNBLOCK_TRIES` tries."""
        for _ in range(UNBLOCK_TRIES):
            try:
                if await self.redis.execute_command("CLIENT", "UNBLOCK", client_id):
                    return
            except ResponseError as exc:  # not allowed: later waits carry no dequeue
                self._refused(exc)
                return
            except (RedisError, OSError) as exc:  # the wait ends on its own at its timeout
                log.debug("could not end a marker wait early: %s", exc)
                return
            await asyncio.sleep(UNBLOCK_PAUSE)
            if self._waits != wait or self._phase != "blocked":
                return  # it ended meanwhile (its reply was on the way)

    async def wait(self, plan: Prefetch, block: float, reply_grace: float) -> Any:
        """Block up to ``block`` seconds on the markers with ``plan``'s dequeue behind; hand
        the dequeue's answer (or failure) to the prefetcher and return the ``BZPOPMIN``
        reply. Raises what the connection raised, after telling the prefetcher."""
        self._phase = "writing"
        self._waits += 1
        self._kick_wanted = self.kicked_late = self.kicked = False
        try:
            woken, answer, confirmed_at = await self._round_trip(plan, block, reply_grace)
        except BaseException as exc:
            self._phase = "idle"
            self.prefetcher.prefetch_failed(plan, exc)
            raise
        self._phase = "idle"
        if isinstance(answer, ResponseError):
            self.prefetcher.prefetch_failed(plan, answer)
        else:
            self.prefetcher.prefetched(plan, answer, confirmed_at)
        if isinstance(woken, ResponseError):  # the dequeue ran all the same: handed over above
            raise woken
        return woken

    async def _round_trip(self, plan: Prefetch, block: float, grace: float) -> tuple[Any, ...]:
        """Write the batch, read its five replies: (BZPOPMIN reply, dequeue answer or its
        error, the monotonic time Redis read the queue at the earliest)."""
        pool = cast(Any, self.redis).connection_pool
        script, keys, args = plan.call
        conn = await pool.get_connection()
        try:
            sent = time.monotonic()
            await conn.send_packed_command(
                conn.pack_commands(
                    [
                        ("CLIENT", "ID"),
                        ("TIME",),
                        ("BZPOPMIN", *self.keys, block),
                        ("EVALSHA", script.sha, len(keys), *keys, *args),
                        ("TIME",),
                    ]
                )
            )
            async with asyncio.timeout(block + grace):
                # Redis runs every command of the batch whatever an earlier one answered (an
                # ACL may refuse CLIENT ID, a marker key may hold the wrong type): each error
                # reply is read like any other, so the dequeue's answer is never left unread.
                client_id = await _reply(conn)
                before = await _reply(conn)
                if isinstance(client_id, ResponseError):
                    self._refused(client_id)  # this wait cannot be ended early
                else:
                    self._client_id = int(client_id)
                    self._phase = "blocked"
                    if self._kick_wanted:
                        self.kick()
                woken = await _reply(conn, timeout=block + grace)
                self._phase = "answered"
                answer = await _reply(conn)  # its own error: NOSCRIPT, WRONGTYPE
                after = await _reply(conn)
            seen = time.monotonic() - sent
        except BaseException:
            await conn.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            await pool.release(conn)
        if isinstance(before, ResponseError) or isinstance(after, ResponseError):
            return woken, answer, sent  # undated: the send time is never later than the read
        waited = max(0.0, redis_seconds(after) - redis_seconds(before))
        return woken, answer, sent + min(waited, seen)


async def _reply(conn: Any, timeout: float | None = None) -> Any:
    """The next reply on ``conn``; an error reply is returned, not raised."""
    try:
        if timeout is None:
            return await conn.read_response()
        return await conn.read_response(timeout=timeout)
    except ResponseError as exc:
        return exc
