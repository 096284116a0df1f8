"""Every Redis key and channel name rq_sched uses, built in this one module.

Per-queue keys share the hash tag ``{<queue>}`` so a queue lives in one Redis Cluster slot and
every Lua script runs on one shard. Global keys (the queue registry, servers, scheduler state)
sit outside any queue tag and are never passed to a script together with queue keys.

Layout of one queue (``ns`` is the namespace, ``rqs`` by default)::

    ns:{q}:msg          hash   task id -> encoded task message (every live or kept task)
    ns:{q}:pending      list   ids ready to run (LPUSH in, RPOP out: FIFO)
    ns:{q}:lease        zset   active ids -> lease expiry (Redis TIME ms); active = in lease
    ns:{q}:token        hash   active id -> fencing token of its current lease (set with lease)
    ns:{q}:seq          string counter issuing fencing tokens (INCR per lease)
    ns:{q}:cancel       hash   id -> uniqueness digest ("" if none): a recorded cancel request
    ns:{q}:scheduled    zset   ids -> due time (ms)
    ns:{q}:retry        zset   ids -> next attempt (ms)
    ns:{q}:archived     zset   ids -> archived at (ms)
    ns:{q}:completed    zset   ids -> expiry of the kept record (ms)
    ns:{q}:result       hash   id -> result bytes written by the handler (sparse)
    ns:{q}:lost         hash   id -> times its lease expired with no ack (sparse)
    ns:{q}:waiters      hash   id -> clients waiting for its final state (``wait_result``;
                               sparse; consumed by the script that makes the task final)
    ns:{q}:progress     hash   active id -> msgpack [lease token, value, message, at ms]
                               reported by its handler (sparse; cleared when it settles)
    ns:{q}:held         hash   id -> message of a task waiting for its parents (not yet in
                               ``msg``; see docs/workflows.md)
    ns:{q}:deps         hash   held id -> msgpack {policy, n, got, failed}
    ns:{q}:depparents   hash   "<index>:<held id>" -> the parent expected there, "queue/id"
                               (apart from the counter: a report costs O(1) whatever the number
                               of parents, and one from another parent is ignored)
    ns:{q}:reports      hash   "<index>:<held id>" -> a parent's outcome delivered to it
    ns:{q}:children     hash   id -> 1 while it has dependants (what a settling script checks)
    ns:{q}:dependants:<id> list  its dependants, anywhere: msgpack [child queue, child id,
                               index] each (appended: a fan-out costs O(1) per link)
    ns:{q}:outbox       hash   id -> msgpack [outcome, data]: its final outcome, recorded
                               for its dependants in the step that made it final
    ns:{q}:outbox_at    zset   id -> when that outcome was recorded (ms); the sweep delivers
                               what stays undelivered past a grace period
    ns:{q}:agg:<g>      list   aggregation group <g>: msgpack [id, message] entries, oldest first
    ns:{q}:aggs         zset   group -> when it is due to be aggregated (ms)
    ns:{q}:aggfirst     hash   group -> when its oldest entry was added (ms)
    ns:{q}:aggconf      hash   the aggregators' limits: grace_ms, max_delay_ms, max_size
    ns:{q}:marker       zset   "r" -> 0 when tasks are ready; "d" -> next due time (ms)
    ns:{q}:paused       string present while the queue is paused
    ns:{q}:flow         hash   the queue's flow limits, set by an operator or a server's config:
                               interval (ms per task start), burst, max_active; and their
                               state, written by dequeue: tat (GCRA), timer, held
                               (see ``lua/includes/flow.lua`` and docs/flow.md)
    ns:{q}:kready       zset   keyed ready tasks (``enqueue(key=...)``), every score 0, members
                               "<key digest><seq><id>" in each key's order (ZRANGEBYLEX)
    ns:{q}:kring        zset   key digest -> virtual time of its next turn, for keys that may
                               start a task now (round robin across keys)
    ns:{q}:kwait        zset   key digest -> ms when a key held by its rate limit may go on
    ns:{q}:kstate       hash   per-key counts and limit state, and keyed task id -> its
                               kready member (see ``lua/includes/keyed.lua``, docs/flow.md)
    ns:{q}:limits       hash   the queue's archive limits in force: max_size, max_age_ms;
                               trimmed: archived tasks those limits have deleted, all time
    ns:{q}:unique:<d>   string id holding the uniqueness lock for digest <d> (with TTL)
    ns:{q}:debounce:<h> string id of the task waiting under debounce key hash <h> (with TTL)
    ns:{q}:throttle:<h> string id of the task kept in the throttle window of key hash <h> (TTL)
    ns:{q}:guard:<g>    string last fire time claimed for guard <g> (scheduler ticks)
    ns:{q}:processed    string total processed; ns:{q}:processed:<yyyy-mm-dd> per day
    ns:{q}:failed       string total failed;    ns:{q}:failed:<yyyy-mm-dd> per day
    ns:{q}:minutes      hash   minute start (ms) -> JSON sample for the dashboard's per-minute
                               charts (totals, size, latency); the last 24 h, written by
                               ``rq_sched.inspector.minutes``

Channel ``ns:{q}:final:<id>`` (pub/sub, not a key) announces that task ``<id>`` reached a
final state ("completed", "archived" or "deleted"); a script publishes on it only when
``waiters`` holds the id (see ``rq_sched.results``).

Sharded queues. A queue declared with ``shards=N`` (the global hash ``ns:shards``: queue -> N,
read by producers every 2 s and by worker servers when they start) is stored as N ordinary queues
with the layout above, named ``<queue>~<i>of<N>-<salt>``: the salt is the smallest that puts
sub-queue ``i``'s slot (CRC16 of its name) in the ``i``-th of N equal slot ranges, so the shards
sit on different cluster masters where the masters' ranges allow. A task id lives in shard
``crc32(id) % N``. New queue names may not end like that (``options.check_queue``), so a
sub-queue never collides with a user's queue. See ``rq_sched.shards`` and docs/scaling.md.

A lease is the pair (``lease`` entry, ``token`` entry): dequeue sets both, and every script that
ends a lease removes both. Settling and extending scripts take (id, token) and act only when the
token is the current one, so a worker that stalled past its lease can never settle a task that
was recovered and leased again (see docs/core.md, "Guarantees").

A namespace is checked by :func:`check_namespace` wherever one enters (Client, ServerConfig,
Scheduler, Inspector): it may not contain the key syntax (``{ } :``), glob characters or
whitespace, so no namespace's keys or SCAN patterns can reach into another's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from rq_sched.errors import ValidationError

DEFAULT_NAMESPACE = "rqs"
NO_UNIQUE_DIGEST = "-"
"""Digest used for the unique-lock key of tasks that are not unique; that key is never set."""


_FORBIDDEN = frozenset("{}*?[]:\\")


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` if it is a usable key namespace.

    Raises:
        ValidationError: not a non-empty string, or it contains ``{ } * ? [ ] : \\``,
            whitespace or control characters (they would change the key layout or match
            another namespace's keys in a SCAN pattern).
    """
    if not isinstance(namespace, str) or not namespace:
        raise ValidationError(f"namespace must be non-empty, such as 'rqs'; got {namespace!r}")
    bad = {ch for ch in namespace if ch in _FORBIDDEN or ch.isspace() or not ch.isprintable()}
    if bad:
        raise ValidationError(
            f"namespace {namespace!r} contains {''.join(sorted(bad))!r}: it must be brace-free, "
            "without ':', glob characters or whitespace; use letters, digits, '-', '_' or '.'"
        )
    return namespace


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue. Cheap to build; clients cache one per queue name."""

    namespace: str
    queue: str

    @cached_property
    def prefix(self) -> str:
        return f"{self.namespace}:{{{self.queue}}}"

    @cached_property
    def msg(self) -> str:
        return f"{self.prefix}:msg"

    @cached_property
    def pending(self) -> str:
        return f"{self.prefix}:pending"

    @cached_property
    def lease(self) -> str:
        return f"{self.prefix}:lease"

    @cached_property
    def scheduled(self) -> str:
        return f"{self.prefix}:scheduled"

    @cached_property
    def retry(self) -> str:
        return f"{self.prefix}:retry"

    @cached_property
    def archived(self) -> str:
        return f"{self.prefix}:archived"

    @cached_property
    def completed(self) -> str:
        return f"{self.prefix}:completed"

    @cached_property
    def result(self) -> str:
        return f"{self.prefix}:result"

    @cached_property
    def lost(self) -> str:
        return f"{self.prefix}:lost"

    @cached_property
    def waiters(self) -> str:
        return f"{self.prefix}:waiters"

    @cached_property
    def progress(self) -> str:
        return f"{self.prefix}:progress"

    @cached_property
    def final_prefix(self) -> str:
        """Prefix of the per-task pub/sub channels announcing a final state."""
        return f"{self.prefix}:final:"

    def final_channel(self, task_id: str) -> str:
        """The channel on which task ``task_id``'s final state is announced to waiters."""
        return f"{self.final_prefix}{task_id}"

    @cached_property
    def held(self) -> str:
        return f"{self.prefix}:held"

    @cached_property
    def deps(self) -> str:
        return f"{self.prefix}:deps"

    @cached_property
    def dep_parents(self) -> str:
        return f"{self.prefix}:depparents"

    @cached_property
    def reports(self) -> str:
        return f"{self.prefix}:reports"

    @cached_property
    def children(self) -> str:
        return f"{self.prefix}:children"

    @cached_property
    def outbox(self) -> str:
        return f"{self.prefix}:outbox"

    @cached_property
    def outbox_at(self) -> str:
        return f"{self.prefix}:outbox_at"

    @cached_property
    def keyed(self) -> tuple[str, str, str, str]:
        """The four keys of the queue's keyed tasks, in script order: kready, kring, kwait,
        kstate (``lua/includes/keyed.lua``)."""
        return (
            f"{self.prefix}:kready",
            f"{self.prefix}:kring",
            f"{self.prefix}:kwait",
            f"{self.prefix}:kstate",
        )

    @cached_property
    def outbox_keys(self) -> tuple[str, str, str]:
        """children, outbox, outbox_at: the keys a settling script records an outcome with."""
        return (self.children, self.outbox, self.outbox_at)

    def dependants(self, task_id: str) -> str:
        """The dependants of ``task_id`` (see ``lua/dep_link.lua``)."""
        return f"{self.prefix}:dependants:{task_id}"

    def agg_group(self, group: str) -> str:
        """The entries of aggregation group ``group``."""
        return f"{self.prefix}:agg:{group}"

    @cached_property
    def agg_groups(self) -> str:
        return f"{self.prefix}:aggs"

    @cached_property
    def agg_first(self) -> str:
        return f"{self.prefix}:aggfirst"

    @cached_property
    def agg_conf(self) -> str:
        return f"{self.prefix}:aggconf"

    @cached_property
    def token(self) -> str:
        return f"{self.prefix}:token"

    @cached_property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    @cached_property
    def cancel(self) -> str:
        return f"{self.prefix}:cancel"

    @cached_property
    def limits(self) -> str:
        return f"{self.prefix}:limits"

    @cached_property
    def flow(self) -> str:
        """Flow limits of the queue (rate limit, concurrency cap) and their state."""
        return f"{self.prefix}:flow"

    @cached_property
    def marker(self) -> str:
        return f"{self.prefix}:marker"

    @cached_property
    def paused(self) -> str:
        return f"{self.prefix}:paused"

    @cached_property
    def processed(self) -> str:
        return f"{self.prefix}:processed"

    @cached_property
    def failed(self) -> str:
        return f"{self.prefix}:failed"

    def processed_on(self, day: str) -> str:
        """Daily processed counter; ``day`` is ``YYYY-MM-DD`` in UTC."""
        return f"{self.prefix}:processed:{day}"

    def failed_on(self, day: str) -> str:
        """Daily failed counter; ``day`` is ``YYYY-MM-DD`` in UTC."""
        return f"{self.prefix}:failed:{day}"

    def unique(self, digest: str | None) -> str:
        """The uniqueness lock for ``digest`` (a never-set key when the task is not unique)."""
        return f"{self.prefix}:unique:{digest or NO_UNIQUE_DIGEST}"

    def debounce(self, key: str) -> str:
        """Id of the task waiting under a debounce key (see ``rq_sched.dedup``)."""
        return f"{self.prefix}:debounce:{_key_hash(key)}"

    def throttle(self, key: str) -> str:
        """Id of the task kept in a throttle window (see ``rq_sched.dedup``)."""
        return f"{self.prefix}:throttle:{_key_hash(key)}"

    @cached_property
    def minutes(self) -> str:
        """Per-minute samples for the dashboard's charts (see ``inspector.minutes``)."""
        return f"{self.prefix}:minutes"

    def guard(self, name: str) -> str:
        """A monotonic guard (the scheduler's per-entry last fire time)."""
        return f"{self.prefix}:guard:{name}"

    @cached_property
    def state_keys(self) -> tuple[str, ...]:
        """msg, pending, lease, scheduled, retry, archived, completed: the order the scripts'
        KEYS start with whenever they need to find a task's state."""
        return (
            self.msg,
            self.pending,
            self.lease,
            self.scheduled,
            self.retry,
            self.archived,
            self.completed,
        )

    def all_fixed(self) -> tuple[str, ...]:
        """Every fixed key of the queue (for deleting a queue; pattern keys are scanned)."""
        return (
            *self.state_keys,
            self.result,
            self.lost,
            self.waiters,
            self.progress,
            self.held,
            self.deps,
            self.dep_parents,
            self.reports,
            self.children,
            self.outbox,
            self.outbox_at,
            self.agg_groups,
            self.agg_first,
            self.agg_conf,
            self.token,
            self.seq,
            self.cancel,
            self.limits,
            self.flow,
            *self.keyed,
            self.marker,
            self.paused,
            self.processed,
            self.failed,
        )

    def pattern(self) -> str:
        """SCAN pattern matching every key of this queue."""
        return f"{_glob_escape(self.namespace)}:{{{_glob_escape(self.queue)}}}:*"


@dataclass(frozen=True, slots=True)
class GlobalKeys:
    """Keys outside any queue tag."""

    namespace: str

    @property
    def queues(self) -> str:
        """Set of known queue names."""
        return f"{self.namespace}:queues"

    @property
    def shards(self) -> str:
        """Hash: sharded queue name -> its number of shards, 2..64 (see ``rq_sched.shards``)."""
        return f"{self.namespace}:shards"

    @property
    def servers(self) -> str:
        """Sorted set: server id -> expiry of its heartbeat (ms)."""
        return f"{self.namespace}:servers"

    def server(self, server_id: str) -> str:
        """Encoded server info, with a TTL."""
        return f"{self.namespace}:server:{server_id}"

    def workers(self, server_id: str) -> str:
        """Hash: task id -> encoded info about the worker running it, with a TTL."""
        return f"{self.namespace}:workers:{server_id}"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel on which task cancellations are announced to every server."""
        return f"{self.namespace}:cancel"

    @property
    def scheduler_entries(self) -> str:
        """Hash: entry id -> encoded entry (spec, type, queue, next and previous fire)."""
        return f"{self.namespace}:scheduler:entries"

    def scheduler_history(self, entry_id: str) -> str:
        """Capped list of recent enqueues of one entry."""
        return f"{self.namespace}:scheduler:history:{entry_id}"

    @property
    def scheduler_paused(self) -> str:
        """Set of paused periodic entry ids (skipped at their ticks by every scheduler)."""
        return f"{self.namespace}:scheduler:paused"

    @property
    def schedulers(self) -> str:
        """Sorted set: scheduler instance id -> expiry of its heartbeat (ms)."""
        return f"{self.namespace}:schedulers"


def dq_dedup(wrapped: bytes) -> str:
    """go-queue dq's consumer dedup key: the hex MD5 of a job body, with no namespace.

    Kept outside the namespace on purpose: Go dq consumers compute the same key, so Go and
    Python consumers sharing tubes run each job once (see ``rq_sched.dq``).
    """
    return hashlib.md5(wrapped, usedforsecurity=False).hexdigest()


def _key_hash(key: str) -> str:
    """A user's debounce or throttle key as a short, brace-free key part."""
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:32]


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
