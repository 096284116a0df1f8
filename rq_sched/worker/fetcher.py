"""Taking tasks: decide when and from which queue to lease, and hand what is leased over.

The fetch loop leases tasks in batches (one script call leases up to ``batch_size``) while the
worker has free slots, asking the queues by weighted or strict priority, and sleeps until woken
when there is nothing to take. It also plans the dequeue the marker watcher sends ahead of a
wake-up (:mod:`~rq_sched.worker.prefetch`), with the slots that dequeue may fill reserved, and
keeps the two from ever leasing more tasks than the worker has slots. A queue whose dequeue
Redis refused is skipped for a while; a flow limit's hold sets one timer that looks again when
the next task may start.

What it leases goes to the processor (:mod:`~rq_sched.worker.processor`), which runs and
settles it; the fetcher only counts the slots the processor reports busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import NoScriptError, RedisError, ResponseError

from rq_sched import flow, ops, scripts
from rq_sched.errors import RqSchedError
from rq_sched.keys import QueueKeys
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.config import ServerConfig
from rq_sched.worker.prefetch import Prefetch
from rq_sched.worker.supervisor import retry_pause

log = logging.getLogger("rq_sched")

REFUSED_PAUSE = 1.0
"""Seconds before a queue whose dequeue Redis refused (WRONGTYPE: someone else's data under its
keys) is tried again; doubled for each refusal in a row, up to REFUSED_PAUSE_MAX."""
REFUSED_PAUSE_MAX = 60.0
SETTLE_WAIT = 1.0
"""Seconds the marker watcher waits for a busy fetch loop before it waits without a dequeue."""


class Fetcher:
    """Leases tasks for one worker server while it has free slots (the marker watcher's
    :class:`~rq_sched.worker.prefetch.Prefetcher`)."""

    def __init__(
        self,
        redis: AnyAsyncRedis,
        *,
        config: ServerConfig,
        keys: dict[str, QueueKeys],
        busy: Callable[[], int],
        start: Callable[[str, ops.Leased, float], None],
    ) -> None:
        self.redis = redis
        self.config = config
        self.keys = keys
        self.busy = busy
        """Slots in use (the processor's count)."""
        self.start = start
        """Called with (queue, leased task, monotonic time the read that leased it was sent);
        must not raise."""
        self.stopping = False
        """A shutdown began: nothing more is leased, and a fetch in flight is left to end."""
        self._work = asyncio.Event()
        self._slot = asyncio.Event()
        self._fetch_idle = asyncio.Event()
        self._fetch_idle.set()
        self._weights = {q: float(w) for q, w in config.queues.items()}
        self._strict = sorted(config.queues, key=lambda q: -config.queues[q])
        self._tied = len(set(config.queues.values())) < len(config.queues)
        """Queues share a priority (the shards of a sharded queue do): strict order shuffles
        them, or under a backlog the first would always be served and the others starve."""
        self._refused: dict[str, tuple[float, float]] = {}
        """Queues whose dequeue Redis refused: queue -> (try again at, monotonic; pause)."""
        self._timer: asyncio.TimerHandle | None = None
        """Wakes the fetch loop when a flow limit lets the next task start (see :mod:`flow`)."""
        self._timer_at = math.inf
        self._held_only = False
        self.flow_holds = 0
        """Dequeues that a flow limit held back (rate or concurrency cap)."""
        self._reserved = 0
        """Slots set aside for a dequeue the marker watcher sent ahead (see :mod:`prefetch`)."""
        self._prefetching = False
        self._prefetch_idle = asyncio.Event()
        self._prefetch_idle.set()
        self._look_after = False
        """The fetch loop looks once the dequeue sent ahead answers (a look came meanwhile)."""
        self._quiet = asyncio.Event()
        """Set while the fetch loop sleeps with nothing to ask (cleared whenever it is woken)."""
        self.kick: Callable[[], None] = lambda: None
        """Makes a dequeue sent ahead run now (the server connects it to its marker watcher)."""

    # -- taking tasks -----------------------------------------------------------------------

    def notify_work(self) -> None:
        """Tasks may be ready: the fetch loop looks again. While a dequeue sent ahead waits on
        the markers, the marker that made them ready runs it (or wakes another worker)."""
        if not self._prefetching:
            self._wake_fetch()

    def _wake_fetch(self) -> None:
        self._quiet.clear()
        self._work.set()

    def _look_now(self) -> None:
        """Look at every queue now: wake the fetch loop, first ending the wait of a dequeue
        sent ahead (its slots are reserved, and nothing else might end it for long)."""
        if self._prefetching:
            self._look_after = True  # once the slots it holds are back
            self.kick()
        else:
            self._wake_fetch()

    def slot_freed(self) -> None:
        """A slot was freed: a fetch loop short of slots counts again."""
        self._slot.set()

    async def run(self) -> None:
        """Take tasks while there are free slots; sleep until woken when the queues are empty."""
        await self._apply_flow()
        failures = 0
        while not self.stopping:
            free = self.config.concurrency - self.busy() - self._reserved
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            self._work.clear()
            try:
                taken = await self.fetch(free)
                failures = 0
            except (RedisError, OSError, RqSchedError) as exc:
                failures += 1
                pause = retry_pause(failures)
                log.warning("fetching tasks failed: %s (retrying in %.2fs)", exc, pause)
                await asyncio.sleep(pause)
                continue
            if (not taken or self._held_only) and not self.stopping:
                if not self._work.is_set():
                    self._quiet.set()
                await self._work.wait()

    async def fetch(self, free: int) -> int:
        """Lease up to ``free`` tasks from the first queue (in weighted order) that has some.

        A fetch in flight when a shutdown begins runs to its end (the processor's drain waits
        for it through :meth:`fetches_done`), and what it leased is handed back rather than
        started: cancelling it could leave Redis having leased tasks to nobody."""
        lease_ms = int(self.config.lease_duration * 1000)
        self._fetch_idle.clear()
        self._held_only = False
        taken = 0
        try:
            for queue in self.queue_order():
                count = min(free - taken, self.config.batch_size)
                if count <= 0:
                    break
                refused = self._refused.get(queue)
                if refused is not None and refused[0] > time.monotonic():
                    continue
                script, keys, args = ops.dequeue(self.keys[queue], lease_ms, count)
                sent = time.monotonic()
                try:
                    reply = await scripts.arun(self.redis, script, keys, args)
                except ResponseError as exc:  # this queue's own keys: the others are fine
                    self._refuse(queue, exc)
                    continue
                if refused is not None:
                    del self._refused[queue]
                    log.warning("queue %r is served again", queue)
                leased, hold = self._take(queue, reply, sent)
                taken += leased
                if leased and hold is None:
                    return taken
            # Only flow-held queues gave tasks (or none did): asking again at once would only
            # be held again; the timer the script asked for, or the marker, wakes the loop.
            self._held_only = taken > 0
            return taken
        finally:
            self._fetch_idle.set()

    def _take(self, queue: str, reply: Any, sent: float) -> tuple[int, flow.Hold | None]:
        """Start what a dequeue of ``queue`` sent at ``sent`` leased; returns how many, and the
        flow hold that came with them (its timer set)."""
        leased = ops.parse_dequeue(reply)
        hold = flow.dequeue_hold(reply)
        if hold is not None:
            self.flow_holds += 1
            if hold.wait_s is not None:
                self._wake_in(hold.wait_s)
        for task in leased:
            self.start(queue, task, sent)
        return len(leased), hold

    # -- a dequeue sent ahead with the marker wait (see :mod:`rq_sched.worker.prefetch`) ----

    async def settle(self) -> None:
        """Return once the fetch loop is neither asking nor about to ask (waiting at most
        :data:`SETTLE_WAIT`), so that a dequeue sent ahead can be planned."""
        if self.stopping:
            return
        free = self.config.concurrency - self.busy() - self._reserved
        if not self._fetch_idle.is_set() or (self._work.is_set() and free > 0):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), SETTLE_WAIT)

    def plan_prefetch(self) -> Prefetch | None:
        """A dequeue for the marker watcher to send behind its wait, its slots reserved; None
        while stopping, while the fetch loop is asking or about to ask (it must never find its
        slots reserved for a wait that nothing will end), with no free slot, or while a rate
        limit's timer runs (the fetch loop asks when it fires: ending a wait for each token
        would cost a new wait per token)."""
        if (
            self.stopping
            or self._prefetching
            or self._timer is not None
            or self._work.is_set()
            or not self._fetch_idle.is_set()
        ):
            return None
        count = min(self.config.concurrency - self.busy() - self._reserved, self.config.batch_size)
        if count <= 0:
            return None
        now = time.monotonic()
        for queue in self.queue_order():
            refused = self._refused.get(queue)
            if refused is None or refused[0] <= now:
                break
        else:
            return None
        lease_ms = int(self.config.lease_duration * 1000)
        self._prefetching = True
        self._prefetch_idle.clear()
        self._reserved += count
        return Prefetch(queue, count, ops.dequeue(self.keys[queue], lease_ms, count))

    def prefetched(self, plan: Prefetch, reply: Any, confirmed_at: float) -> None:
        """The dequeue sent ahead answered: start what it leased (confirmed at
        ``confirmed_at``); look again at once only if it may have left tasks behind."""
        self._end_prefetch(plan)
        if plan.queue in self._refused:
            del self._refused[plan.queue]
            log.warning("queue %r is served again", plan.queue)
        leased, hold = self._take(plan.queue, reply, confirmed_at)
        if hold is None and leased >= plan.count:
            self._wake_fetch()

    def prefetch_failed(self, plan: Prefetch, error: BaseException) -> None:
        """The dequeue sent ahead gave no tasks: Redis refused the queue, or the wait failed
        (then the fetch loop asks in the usual way, reloading a flushed script)."""
        self._end_prefetch(plan)
        if isinstance(error, ResponseError) and not isinstance(error, NoScriptError):
            self._refuse(plan.queue, error)
        else:
            self._wake_fetch()

    def _end_prefetch(self, plan: Prefetch) -> None:
        self._reserved -= plan.count
        self._prefetching = False
        self._prefetch_idle.set()
        self._slot.set()  # a fetch loop short of slots counts again
        if self._look_after:
            self._look_after = False
            self._wake_fetch()

    # -- which queue: order, refused queues, flow holds -------------------------------------

    def _refuse(self, queue: str, exc: ResponseError) -> None:
        """Redis refused to dequeue from ``queue``: skip it for a while, serve the others."""
        _, pause = self._refused.get(queue, (0.0, REFUSED_PAUSE / 2))
        pause = min(pause * 2, REFUSED_PAUSE_MAX)
        self._refused[queue] = (time.monotonic() + pause, pause)
        log.error(
            "queue %r cannot be served: Redis refused to take tasks from it (%s). Its keys "
            "(%s:*) probably hold data rq_sched did not write; inspect and remove it. The other "
            "queues are served meanwhile; this one is tried again in %.0fs",
            queue, str(exc).split(" script:")[0], self.keys[queue].prefix, pause,
        )  # fmt: skip
        asyncio.get_running_loop().call_later(pause, self._look_now)

    def _wake_in(self, seconds: float) -> None:
        """Look at the queues again in ``seconds`` (a flow limit said when), unless a timer
        already set fires sooner: one timer per worker, whatever the number of holds."""
        at = time.monotonic() + seconds
        if self._timer is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_later(seconds, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._look_now()

    async def _apply_flow(self) -> None:
        """Store the flow limits of this server's config before taking any task (retrying
        through Redis outages), so they are in force from the first dequeue."""
        failures = 0
        for queue, limits in self.config.flow.items():
            call = flow.set_flow(self.keys[queue], limits)
            while not self.stopping:
                try:
                    await scripts.arun(self.redis, *call)
                    break
                except (RedisError, OSError) as exc:
                    failures += 1
                    pause = retry_pause(failures)
                    log.warning("storing the flow limits of %s failed: %s", queue, exc)
                    await asyncio.sleep(pause)

    def queue_order(self) -> list[str]:
        """Queues in the order to ask them: by priority, or a weighted random permutation."""
        if self.config.strict_priority or len(self._strict) == 1:
            if self._tied and self.config.strict_priority:
                queues = self.config.queues
                return sorted(self._strict, key=lambda q: (-queues[q], random.random()))
            return self._strict
        weights = self._weights
        return sorted(weights, key=lambda q: random.random() ** (1.0 / weights[q]), reverse=True)

    # -- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Lease nothing more: end the flow timer and wake the fetch loop so that it returns."""
        self.stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake_fetch()
        self._slot.set()

    async def fetches_done(self, timeout: float) -> None:
        """Wait for the dequeues in flight (a fetch, a dequeue sent ahead, made to run now):
        the processor registers what they lease, never starts it, and its drain hands it back."""
        if self._prefetching:
            self.kick()
        for idle in (self._fetch_idle, self._prefetch_idle):
            try:
                await asyncio.wait_for(idle.wait(), timeout)
            except TimeoutError:
                log.warning("a fetch was still in flight at shutdown; its tasks run again later")
