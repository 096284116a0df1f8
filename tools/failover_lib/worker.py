"""One worker process of a failover run: a :class:`Server` whose handler writes one line per run
(task id, queue, wall time) to its own file, so the runs are counted outside Redis.

``python -m failover_lib.worker URL NAMESPACE QUEUES OUT [--cluster]``; it writes ``ready``
when the server has started and stops gracefully on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from rq_sched import Router, Server, Task

TASK_TYPE = "failover:t"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="failover_lib.worker")
    parser.add_argument("url")
    parser.add_argument("namespace")
    parser.add_argument("queues", help="comma-separated")
    parser.add_argument("out")
    parser.add_argument("--cluster", action="store_true")
    args = parser.parse_args(argv)
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    router = Router()

    @router.task(TASK_TYPE)
    async def record(task: Task) -> None:
        # One write(2) per run on an O_APPEND file: whole lines, even with many workers.
        os.write(fd, f"{task.id} {task.queue} {time.time():.6f}\n".encode())

    server = Server.from_url(
        args.url,
        cluster=args.cluster,
        namespace=args.namespace,
        queues=dict.fromkeys(args.queues.split(","), 1),
        concurrency=10,
        lease_duration=2.0,
        recover_interval=0.5,
        heartbeat_interval=0.5,
        shutdown_timeout=2.0,
    )

    def announce() -> None:
        server.started.wait()
        os.write(fd, b"ready\n")

    threading.Thread(target=announce, daemon=True).start()
    server.run(router)
    return 0


if __name__ == "__main__":
    sys.exit(main())
