"""go-queue's dq consumer, emulated command by command from its source (``dq/consumer.go``,
``dq/consumernode.go``) and go-zero's ``RedisLock``, so tests can put a "Go" consumer on the
same tubes and Redis as rq_sched's.

Per job, Go does exactly this: reserve; ``delete`` the job at once (before anything else);
key = hex MD5 of the whole stored body; unwrap (``/`` within the first len(now ns)+2 bytes,
base-10 int64 before it) and discard the job when its time plus 30 minutes is before now;
then go-zero's lock: a fresh random 16-letter value and ``SET key value NX PX 3600500``
(3600 s expiration * 1000 + 500 ms tolerance). The lock script first checks ``GET key ==
value``, which cannot hold for a value just drawn, so ``SET NX PX`` is the whole effect.
The handler runs only when the SET succeeded; it has no error return, so Go never retries.
"""

from __future__ import annotations

import hashlib
import random
import string
import time
from collections.abc import Callable

import greenstalk
import redis

_LETTERS = string.ascii_lowercase + string.ascii_uppercase + string.digits  # stringx.letterBytes
_TOLERANCE_NS = 30 * 60 * 1_000_000_000


class GoConsumer:
    """One Go consumer node: one tube on one beanstalkd, plus the shared Redis."""

    def __init__(
        self,
        port: int,
        tube: str,
        r: redis.Redis,
        handler: Callable[[bytes], None],
    ) -> None:
        self.client = greenstalk.Client(("127.0.0.1", port), encoding=None, use=tube, watch=tube)
        self.redis = r
        self.handler = handler
        self.seen: list[str] = []
        """What became of each reserved job: ran, skipped (lock taken) or discarded."""

    def step(self, timeout: int = 0) -> str | None:
        """Reserve and handle one job, as ``consumeEvents`` and ``guardedConsume`` do."""
        try:
            job = self.client.reserve(timeout=timeout)
        except greenstalk.TimedOutError:
            return None
        self.client.delete(job)  # consumernode.go: conn.Delete(id) before consume(body)
        outcome = self._guarded(job.body)
        self.seen.append(outcome)
        return outcome

    def _guarded(self, body: bytes) -> str:
        key = hashlib.md5(body).hexdigest()  # hash.Md5Hex(body), before unwrap
        task = _unwrap(body)
        if task is None:
            return "discarded"
        value = "".join(random.choice(_LETTERS) for _ in range(16))  # stringx.Randn(16)
        if not self.redis.set(key, value, nx=True, px=3_600_500):
            return "skipped"
        self.handler(task)
        return "ran"

    def close(self) -> None:
        self.client.close()


def _unwrap(body: bytes) -> bytes | None:
    max_check = len(str(time.time_ns())) + 2
    pos = body.find(b"/", 0, max_check)
    if pos < 0:
        return None
    try:
        at_ns = int(body[:pos].decode("ascii"), 10)  # strconv.ParseInt(s, 10, 64)
    except ValueError:
        return None
    if not -(2**63) <= at_ns < 2**63 or at_ns + _TOLERANCE_NS < time.time_ns():
        return None
    return body[pos + 1 :]
