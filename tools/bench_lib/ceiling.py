"""The ceiling of the one-call drain: the handler body alone, in a bare loop.

``python -m bench_lib.ceiling N CONCURRENCY`` runs ``CONCURRENCY`` coroutines in one process,
each awaiting the one-call body (:data:`bench_lib.probe.CALL`, ``INCR`` on one redis-py
asyncio client) in a loop until ``N`` calls are done, and prints one JSON line: calls per
second and this process's CPU time per call. No queue can run that handler faster with the
same concurrency in one process, so a worker's one-call drain reads as a share of it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench_lib.probe import CALL


async def ceiling(n: int, concurrency: int) -> dict[str, float]:
    """``n`` calls of the body from ``concurrency`` coroutines; rate and CPU µs per call."""
    await CALL.run()  # connection and loop ready before the clock starts
    left = n

    async def one() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await CALL.run()

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return {"n": n, "seconds": seconds, "per_s": n / seconds, "cpu_us": cpu / n * 1e6}


def main(argv: list[str]) -> int:
    n, concurrency = int(argv[0]), int(argv[1])
    print(json.dumps(asyncio.run(ceiling(n, concurrency))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
