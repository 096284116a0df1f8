"""The consumer's Redis side: claiming a job by go-queue dq's dedup key, and letting go of it.

The key is exactly go-queue's (hex MD5 of the wrapped body, no prefix, set NX with PX
3600500), so Go and Python consumers on the same tubes run each job once. Unlike dq, the value
says what state the job is in, which is how rq_sched's consumer loses nothing: a crashed
consumer's hold lapses (its lease is renewed while the handler runs) and the job's next copy
takes over; a failed or repeating job is handed to the one replica that will run it again.
The logic lives in ``lua/dq_claim.lua``, ``lua/dq_renew.lua`` and ``lua/dq_handover.lua``.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

import redis.exceptions

from rq_sched import scripts
from rq_sched.dq import wire
from rq_sched.dq.errors import RedisDownError as RedisDownError  # noqa: PLC0414 - re-export
from rq_sched.keys import dq_dedup
from rq_sched.scripts import SyncRedis

DONE = "rqsdq:done"


def owned_by(ref: wire.JobRef) -> str:
    """The key's value while replica ``ref`` alone may run the job again."""
    return f"rqsdq:own:{ref}"


class Claim(enum.IntEnum):
    """What :meth:`Dedup.claim` found."""

    NEW = 1
    """First sight of this job: run it."""
    OWN_TURN = 2
    """This replica's retry or repeat: run it."""
    TAKEN_OVER = 3
    """The previous holder's lease lapsed (it died): run it."""
    DUPLICATE = 0
    """Another replica ran or owns the job: delete this copy."""
    BUSY = 4
    """Another consumer is running the job now: look again later."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A claim's outcome; ``token`` identifies the hold for renew and handover."""

    claim: Claim
    key: str
    token: str
    busy_ms: int = 0


class Dedup:
    """Claims, renews and hands over jobs' dedup keys in one Redis.

    Args:
        redis: a sync Redis (or Redis Cluster) client.
        lease_ms: how long a hold lasts without renewal; a consumer that dies is replaced
            this long after its last renewal.
    """

    def __init__(self, redis: SyncRedis, *, lease_ms: int) -> None:
        self.redis = redis
        self.lease_ms = lease_ms

    def key(self, wrapped: bytes) -> str:
        """The dedup key of a job: hex MD5 of the whole stored body, as every go-queue
        version computes it (before unwrapping)."""
        return dq_dedup(wrapped)

    def exists(self, key: str) -> bool:
        """Whether a dedup key is set (by any consumer, Go or Python).

        Raises:
            RedisDownError: Redis could not be asked.
        """
        try:
            return bool(self.redis.exists(key))
        except redis.exceptions.RedisError as exc:
            raise RedisDownError(f"Redis unavailable for the dq dedup key ({exc})") from exc

    def claim(self, key: str, ref: wire.JobRef) -> Hold:
        """Try to take the job for this consumer.

        Raises:
            RedisDownError: Redis could not be asked.
        """
        token = secrets.token_hex(8)
        args = (token, self.lease_ms, wire.DEDUP_TTL_MS, str(ref))
        reply = self._run("dq_claim", key, args)
        assert isinstance(reply, list)  # dq_claim answers {outcome, busy ms}
        outcome, busy_ms = int(reply[0]), int(reply[1])
        if outcome == Claim.BUSY:
            return Hold(Claim.BUSY, key, token, busy_ms=busy_ms)
        return Hold(Claim(outcome), key, token)

    def renew(self, hold: Hold) -> bool:
        """Extend the hold by a lease; False if it lapsed and someone else took the job.

        Raises:
            RedisDownError: Redis could not be asked.
        """
        return bool(self._run("dq_renew", hold.key, (hold.token, self.lease_ms)))

    def finish(self, hold: Hold) -> bool:
        """Mark the job done (other copies are deleted when seen); the key keeps its TTL.

        Raises:
            RedisDownError: Redis could not be asked.
        """
        return self._handover(hold, DONE, 0)

    def hand_to(self, hold: Hold, ref: wire.JobRef, ttl_ms: int = wire.DEDUP_TTL_MS) -> bool:
        """Let only replica ``ref`` run the job again (its retry, repeat, or kick from buried).

        Raises:
            RedisDownError: Redis could not be asked.
        """
        return self._handover(hold, owned_by(ref), max(ttl_ms, wire.DEDUP_TTL_MS))

    def _handover(self, hold: Hold, value: str, ttl_ms: int) -> bool:
        return bool(self._run("dq_handover", hold.key, (hold.token, value, ttl_ms)))

    def _run(self, name: str, key: str, args: tuple[str | int, ...]) -> object:
        try:
            return scripts.run(self.redis, scripts.load(name), [key], args)
        except redis.exceptions.RedisError as exc:
            raise RedisDownError(f"Redis unavailable for the dq dedup key ({exc})") from exc
