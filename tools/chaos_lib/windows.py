"""Debounce and throttle in the soak: the bursts of calls producers make, and the ledger lines
that say what each call answered. The audit's side is ``windows_audit.py``.

Now and then a producer makes a *burst*: 1-5 calls of one kind under one of a handful of
dedup keys, each key with its own window (0.2-2 s), spaced so that a window usually covers
several calls (debounce calls then replace the waiting task's message, throttle calls are
dropped) and sometimes runs out between two. Every call has an id of its own (``task_id``,
``db:<producer>:<n>`` or ``th:<producer>:<n>``, also in its payload as ``c``), so the audit
knows which call's payload a run carries, and can account for a task whose call lost its reply.
A call that fails with ``RedisUnavailableError`` is made again with the same id, up to three
times, as the error's advice says. The bursts roll on a generator of their own, so the other
rolls of a producer stay the same per seed.

Each attempt writes an ``enq`` line (mode ``debounce`` or ``throttle``): ``id`` is the task the
answer names (a debounce's waiting task, a throttle's kept task; the call's own id when the
reply was lost), ``own`` the call's id, ``dk`` the dedup key, ``win`` its window, ``t0`` when the
attempt was sent, and ``replaced`` / ``dropped`` as answered.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import redis

from chaos_lib import handlers
from chaos_lib.ledger import Ledger
from rq_sched import AsyncClient, Client, Debounced, RqSchedError, Throttled
from rq_sched.keys import QueueKeys

DEBOUNCE_WINDOWS = {"deb:0": 0.2, "deb:1": 0.5, "deb:2": 1.0, "deb:3": 2.0}
"""Debounce keys and their windows (seconds): few keys, so producers' bursts collide."""
THROTTLE_WINDOWS = {"thr:0": 0.2, "thr:1": 0.5, "thr:2": 1.0, "thr:3": 2.0}
"""Throttle keys and their windows (seconds)."""
KINDS = ("debounce", "throttle")
ID_PREFIX = {"debounce": "db:", "throttle": "th:"}
"""How a call's own id starts (a generated id never holds a ``:``)."""
QUEUE = "chaos"
SHARE = 0.15
"""Share of a producer's steps that are a burst (about 3 calls, about 1 task)."""
MAX_GAP = 0.4
"""Longest pause between two calls of a burst (shorter for short windows)."""
_TYPES = ((handlers.ASYNC, 60), (handlers.THREAD, 30), (handlers.PROCESS, 10))


def window_of(kind: str, key: str) -> float:
    """The window of a dedup key of the soak."""
    return (DEBOUNCE_WINDOWS if kind == "debounce" else THROTTLE_WINDOWS)[key]


def is_window_id(task_id: str) -> bool:
    """Whether ``task_id`` is the own id of a debounce or throttle call of the soak."""
    return task_id.startswith(tuple(ID_PREFIX.values()))


@dataclass(frozen=True)
class WindowCall:
    """One debounce or throttle call, as planned."""

    kind: str
    key: str
    task_id: str
    type: str
    payload: dict[str, Any]

    @property
    def window(self) -> float:
        return window_of(self.kind, self.key)

    def options(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "window": self.window,
            "queue": QUEUE,
            "task_id": self.task_id,
            "max_retry": 3,
            "retention": 3600,  # a done task stays visible to the audit
        }


Burst = list[tuple[float, WindowCall]]
"""(pause before the call, the call) pairs."""


class WindowPlanner:
    """Decides a producer's bursts, on a generator of its own."""

    def __init__(self, seed: int, prefix: str) -> None:
        self.rng = random.Random(f"{prefix}:windows:{seed}")
        self.prefix = prefix
        self.count = 0

    def burst(self) -> Burst:
        """The next burst, or none (most steps)."""
        rng = self.rng
        if rng.random() >= SHARE:
            return []
        kind = rng.choice(KINDS)
        key = rng.choice(sorted(DEBOUNCE_WINDOWS if kind == "debounce" else THROTTLE_WINDOWS))
        gap = min(MAX_GAP, window_of(kind, key) * 0.8)
        calls: Burst = []
        for i in range(rng.randint(1, 5)):
            self.count += 1
            task_id = f"{ID_PREFIX[kind]}{self.prefix}:{self.count}"
            behaviour = "fail" if rng.random() < 0.15 else "ok"  # "fail": once, then retried
            payload = {"c": task_id, "b": behaviour, "d": round(rng.uniform(0, 0.2), 3)}
            task_type = rng.choices([t for t, _ in _TYPES], weights=[w for _, w in _TYPES])[0]
            pause = rng.uniform(0, gap) if i else 0.0
            calls.append((pause, WindowCall(kind, key, task_id, task_type, payload)))
        return calls


def record(
    book: Ledger,
    call: WindowCall,
    attempt: int,
    t0: float,
    outcome: Debounced | Throttled | BaseException,
) -> bool:
    """Write what one attempt answered; True when the call should be made again."""
    line: dict[str, Any] = {
        "q": QUEUE,
        "mode": call.kind,
        "own": call.task_id,
        "dk": call.key,
        "win": call.window,
        "t0": t0,
        "attempt": attempt,
        "type": call.type,
        "ret": True,
    }
    if isinstance(outcome, Debounced):
        book.write("enq", id=outcome.id, res="ok", replaced=outcome.replaced, **line)
        return False
    if isinstance(outcome, Throttled):
        book.write("enq", id=outcome.id, res="ok", dropped=outcome.dropped, **line)
        return False
    name = type(outcome).__name__
    unknown = name in ("RedisUnavailableError", "RqSchedError")
    book.write(
        "enq",
        id=call.task_id,
        res="unknown" if unknown else "refused",
        err=name,
        msg=str(outcome)[:200],
        **line,
    )
    return name == "RedisUnavailableError"


def call_burst(client: Client, book: Ledger, burst: Burst) -> None:
    """Make the calls of ``burst`` with ``client``, recording each answer."""
    for pause, call in burst:
        time.sleep(pause)
        for attempt in range(3):
            method = client.debounce if call.kind == "debounce" else client.throttle
            t0 = time.time()
            outcome: Debounced | Throttled | BaseException
            try:
                outcome = method(call.type, call.payload, **call.options())
            except RqSchedError as exc:
                outcome = exc
            if not record(book, call, attempt, t0, outcome):
                break
            time.sleep(0.5)


async def acall_burst(client: AsyncClient, book: Ledger, burst: Burst) -> None:
    """:func:`call_burst` with an ``AsyncClient``."""
    for pause, call in burst:
        await asyncio.sleep(pause)
        for attempt in range(3):
            method = client.debounce if call.kind == "debounce" else client.throttle
            t0 = time.time()
            outcome: Debounced | Throttled | BaseException
            try:
                outcome = await method(call.type, call.payload, **call.options())
            except RqSchedError as exc:
                outcome = exc
            if not record(book, call, attempt, t0, outcome):
                break
            await asyncio.sleep(0.5)


def read_keys(direct: redis.Redis, namespace: str) -> dict[str, dict[str, Any]]:
    """The dedup keys of the soak left in Redis (for the snapshot): per dedup key its kind,
    window, the task id it holds and its TTL in ms (-1: none, which would keep it for ever)."""
    keys = QueueKeys(namespace, QUEUE)
    names = [("debounce", k, keys.debounce(k)) for k in DEBOUNCE_WINDOWS]
    names += [("throttle", k, keys.throttle(k)) for k in THROTTLE_WINDOWS]
    pipe = direct.pipeline(transaction=False)
    for _, _, name in names:
        pipe.get(name)
        pipe.pttl(name)
    replies = pipe.execute()
    found: dict[str, dict[str, Any]] = {}
    for i, (kind, key, _) in enumerate(names):
        value, ttl = replies[2 * i], replies[2 * i + 1]
        if value is not None and ttl != -2:  # -2: expired between the GET and the PTTL
            found[key] = {"kind": kind, "id": value.decode(), "pttl": int(ttl)}
    return found
