"""The producer side of every scenario, run in the benchmarked system's own interpreter.

``python -m bench_lib.producer MODULE ACTION JSON`` imports ``bench_lib.adapters.MODULE``, whose
``make_producer(url)`` returns a :class:`Producer`, runs ``ACTION`` with the JSON parameters and
prints one JSON line with the result. Depends on redis-py only (plus the system under test).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis

from bench_lib.probe import DONE, STAMPS

CHUNK = 1000
"""Tasks per call of a bulk API."""


class Producer(Protocol):
    """What an adapter's ``make_producer(url)`` returns."""

    bulk: bool
    """``enqueue_many`` exists."""
    delayed: bool
    """``enqueue_at`` exists."""
    bulk_delayed: bool
    """``enqueue_many_at`` exists."""

    async def enqueue(self, arg: Any) -> None: ...
    async def enqueue_many(self, args: list[Any]) -> None: ...
    async def enqueue_at(self, arg: Any, due: float) -> None: ...
    async def enqueue_many_at(self, items: list[tuple[Any, float]]) -> None: ...
    async def close(self) -> None: ...


async def fill(p: Producer, r: redis.Redis, params: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``n`` tasks (one by one or in bulk); with ``backlog``, all due in 1-2 days."""
    n, backlog = int(params["n"]), bool(params.get("backlog"))
    bulk = bool(params.get("bulk")) and (p.bulk_delayed if backlog else p.bulk)
    arg: Any = params.get("payload") or 0
    start = time.perf_counter()
    if backlog:
        base = time.time() + 86400
        if bulk:
            for i in range(0, n, CHUNK):
                items = [(arg, base + random.uniform(0, 86400)) for _ in range(min(CHUNK, n - i))]
                await p.enqueue_many_at(items)
        else:
            for _ in range(n):
                await p.enqueue_at(arg, base + random.uniform(0, 86400))
    elif bulk:
        for i in range(0, n, CHUNK):
            await p.enqueue_many([arg] * min(CHUNK, n - i))
    else:
        for _ in range(n):
            await p.enqueue(arg)
    seconds = time.perf_counter() - start
    return {"n": n, "seconds": seconds, "rate": n / seconds, "bulk": bulk}


async def fill_concurrent(p: Producer, r: redis.Redis, params: dict[str, Any]) -> dict[str, Any]:
    """``n`` tasks from ``producers`` coroutines at once in this one process, each awaiting its
    own enqueue: an asyncio client's enqueues overlap (or are coalesced); a sync client's
    calls just take turns."""
    n, producers = int(params["n"]), int(params.get("producers", 100))
    enqueue = getattr(p, "enqueue_async", p.enqueue)
    per = n // producers

    async def one() -> None:
        for _ in range(per):
            await enqueue(0)

    await enqueue(0)  # connections and scripts ready before the clock starts
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(producers)))
    seconds = time.perf_counter() - start
    concurrent = bool(getattr(p, "concurrent", False))
    return {"n": per * producers, "seconds": seconds, "rate": per * producers / seconds,
            "concurrent": concurrent}  # fmt: skip


async def pickup(p: Producer, r: redis.Redis, params: dict[str, Any]) -> dict[str, Any]:
    """One task at a time into an idle worker: enqueue -> handler start, in milliseconds."""
    n, warm = int(params["n"]), int(params.get("warm", 3))
    budget = float(params.get("budget", 3600))
    gap = (float(params.get("gap_min", 0.02)), float(params.get("gap_max", 0.1)))
    out: list[float] = []
    deadline = 0.0
    for i in range(warm + n):
        if i == warm:
            deadline = time.monotonic() + budget
        elif i > warm and time.monotonic() > deadline:
            break  # a slow (polling) worker: fewer samples rather than an unbounded run
        await asyncio.sleep(random.uniform(*gap))
        await p.enqueue(time.time())
        reply = r.blpop([STAMPS], timeout=30 if i < warm else 10)
        if reply is None:
            return {"error": f"no handler start within the timeout (task {i})", "latencies_ms": out}
        sent, started = (float(x) for x in reply[1].split())
        if i >= warm:
            out.append((started - sent) * 1000)
    return {"latencies_ms": out}


async def lateness(p: Producer, r: redis.Redis, params: dict[str, Any]) -> dict[str, Any]:
    """``n`` tasks due 0.5-3 s from now: handler start - due time, in milliseconds."""
    n, lo, hi = int(params["n"]), float(params["min_delay"]), float(params["max_delay"])
    await warm_up(p, r, stamp=True)
    for _ in range(n):
        due = time.time() + random.uniform(lo, hi)
        await p.enqueue_at(due, due)
    out: list[float] = []
    deadline = time.monotonic() + hi + 10
    while len(out) < n and time.monotonic() < deadline:
        reply = r.blpop([STAMPS], timeout=1)
        if reply is not None:
            due, started = (float(x) for x in reply[1].split())
            out.append((started - due) * 1000)
    return {"late_ms": out, "missing": n - len(out)}


async def memory(p: Producer, r: redis.Redis, params: dict[str, Any]) -> dict[str, Any]:
    """used_memory growth per pending task, every task with ``payload`` as its argument."""
    n, payload = int(params["n"]), params["payload"]
    for _ in range(100):  # queue keys, scripts and connections exist before the baseline
        await p.enqueue(payload)
    before = int(r.info("memory")["used_memory"])
    if p.bulk:
        for i in range(0, n, CHUNK):
            await p.enqueue_many([payload] * min(CHUNK, n - i))
    else:
        for _ in range(n):
            await p.enqueue(payload)
    after = int(r.info("memory")["used_memory"])
    return {"n": n, "bytes_per_task": (after - before) / n}


async def warm_up(p: Producer, r: redis.Redis, *, stamp: bool = False) -> None:
    """One task through the worker, so it is running and connected before timing starts."""
    await p.enqueue(time.time() if stamp else 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if stamp:
            if r.blpop([STAMPS], timeout=1) is not None:
                return
        elif int(r.get(DONE) or 0) >= 1:
            return
        else:
            await asyncio.sleep(0.01)
    raise TimeoutError("the worker did not run a warm-up task within 60 s")


async def caps(p: Producer, r: redis.Redis, params: dict[str, Any]) -> dict[str, Any]:
    return {"bulk": p.bulk, "delayed": p.delayed, "bulk_delayed": p.bulk_delayed}


async def warm(p: Producer, r: redis.Redis, params: dict[str, Any]) -> dict[str, Any]:
    await warm_up(p, r, stamp=bool(params.get("stamp")))
    return {"ok": True}


ACTIONS: dict[str, Callable[[Producer, redis.Redis, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "fill": fill,
    "fill_concurrent": fill_concurrent,
    "pickup": pickup,
    "lateness": lateness,
    "memory": memory,
    "warm": warm,
    "caps": caps,
}


async def run(module: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
    url = os.environ["BENCH_REDIS_URL"]
    adapter = importlib.import_module(f"bench_lib.adapters.{module}")
    producer: Producer = await adapter.make_producer(url)
    r = redis.Redis.from_url(url)
    try:
        return await ACTIONS[action](producer, r, params)
    finally:
        await producer.close()
        r.close()


def main(argv: list[str]) -> int:
    module, action, raw = argv
    result = asyncio.run(run(module, action, json.loads(raw)))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
