"""The worker server: dequeues tasks from weighted queues and runs their handlers.

One component per module: :mod:`~rq_sched.worker.server` wires them together;
:mod:`~rq_sched.worker.fetcher` takes tasks from the queues while there are free slots;
:mod:`~rq_sched.worker.processor` runs and settles them through
:mod:`~rq_sched.worker.runners`, acknowledging successes in batches through
:mod:`~rq_sched.worker.acks` and writing failures through :mod:`~rq_sched.worker.failures`;
:mod:`~rq_sched.worker.supervisor` runs every long-running loop,
restarting a failed one and turning the server unhealthy when one keeps failing; the
background components (:mod:`~rq_sched.worker.forwarder`,
:mod:`~rq_sched.worker.recoverer`, :mod:`~rq_sched.worker.janitor`,
:mod:`~rq_sched.worker.heartbeat`, :mod:`~rq_sched.worker.wakeup`,
:mod:`~rq_sched.worker.cancellation`) share the base in :mod:`~rq_sched.worker.component`.
The worker imports the store (client side modules at the top of the package) and never the
inspector or the scheduler.
"""

from rq_sched.worker.config import ServerConfig
from rq_sched.worker.server import Server

__all__ = ["Server", "ServerConfig"]
