"""Injecting the faults of a schedule, and undoing them when their hold time is over.

Each ``begin_<kind>`` does the damage now and returns the undo action (or None), which the
orchestrator runs ``hold`` seconds later or, at the latest, when the chaos phase ends. Every
fault is written to the ledger with its wall start and end, the audit's evidence for extra runs.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgpack
import redis

from chaos_lib import handlers
from chaos_lib.plan import Fault
from rq_sched import Client, Inspector, RqSchedError
from rq_sched.keys import QueueKeys

if TYPE_CHECKING:
    from chaos_lib.procs import Proc
    from chaos_lib.run import Soak

Undo = Callable[[], None] | None


class Injector:
    """Applies faults to one soak's processes, proxy and Redis."""

    def __init__(self, soak: Soak) -> None:
        self.soak = soak
        self.rng = random.Random(f"inject:{soak.settings.seed}")
        self.count = 0

    def begin(self, fault: Fault) -> Undo:
        self.count += 1
        began = time.time()
        try:
            undo: Undo = getattr(self, "begin_" + fault.kind)(fault)
        except (OSError, redis.RedisError, RqSchedError) as exc:
            self.soak.ledger.write(
                "fault",
                kind=fault.kind,
                target=fault.target,
                t0=began,
                t1=time.time(),
                error=f"{type(exc).__name__}: {exc}",
            )
            return None
        book = self.soak.ledger
        if undo is None:
            book.write(
                "fault",
                kind=fault.kind,
                target=fault.target,
                t0=began,
                t1=time.time(),
                params=fault.params,
            )
            return None

        def finish() -> None:
            undo()
            book.write(
                "fault",
                kind=fault.kind,
                target=fault.target,
                t0=began,
                t1=time.time(),
                params=fault.params,
            )

        return finish

    # -- processes ---------------------------------------------------------------------------

    def _signal_and_hold(self, name: str, sig: int, kind: str) -> Undo:
        proc = self.soak.procs[name]
        proc.holds += 1
        stopped = proc.pid
        self.soak.ledger.write("kill", name=name, child=stopped, sig=int(sig), kind=kind)
        proc.signal(sig)

        def restart() -> None:
            try:
                if proc.pid != stopped and proc.alive():
                    return  # an overlapping fault's undo already started a new incarnation
                if not proc.wait(6.0):  # a graceful stop that takes too long becomes a kill
                    self.soak.ledger.write(
                        "kill",
                        name=name,
                        child=proc.pid,
                        sig=int(signal.SIGKILL),
                        kind=kind,
                        why="sigterm took longer than 6s",
                    )
                    proc.signal(signal.SIGKILL)
                    proc.wait(5.0)
                proc.start()
            finally:
                proc.holds -= 1

        return restart

    def begin_worker_kill9(self, fault: Fault) -> Undo:
        return self._signal_and_hold(fault.target, signal.SIGKILL, fault.kind)

    def begin_worker_term(self, fault: Fault) -> Undo:
        return self._signal_and_hold(fault.target, signal.SIGTERM, fault.kind)

    def begin_sched_kill9(self, fault: Fault) -> Undo:
        return self._signal_and_hold(fault.target, signal.SIGKILL, fault.kind)

    def begin_sched_term(self, fault: Fault) -> Undo:
        return self._signal_and_hold(fault.target, signal.SIGTERM, fault.kind)

    def begin_clock_skew(self, fault: Fault) -> Undo:
        """Restart a worker with its clock off by ``offset`` s; restart it right afterwards."""
        proc = self.soak.procs[fault.target]
        proc.holds += 1
        try:
            self._replace(proc, "skew_restart")
            normal = list(proc.argv)
            proc.argv = [*normal, "--skew", str(fault.params["offset"])]
            proc.start()
        finally:
            proc.holds -= 1

        def restore() -> None:
            proc.holds += 1
            try:
                self._replace(proc, "skew_restart")
                proc.argv = normal
                proc.start()
            finally:
                proc.holds -= 1

        return restore

    def _replace(self, proc: Proc, kind: str) -> None:
        """Stop ``proc`` gracefully (a kill after 6 s) so it can start again differently."""
        self.soak.ledger.write(
            "kill", name=proc.name, child=proc.pid, sig=int(signal.SIGTERM), kind=kind
        )
        proc.signal(signal.SIGTERM)
        if not proc.wait(6.0):
            self.soak.ledger.write(
                "kill", name=proc.name, child=proc.pid, sig=int(signal.SIGKILL), kind=kind
            )
            proc.signal(signal.SIGKILL)
            proc.wait(5.0)

    def begin_cancel_storm(self, fault: Fault) -> Undo:
        """kill -9 a worker, then cancel every task it was running (issue 10 case 17)."""
        proc = self.soak.procs[fault.target]
        running = []
        with contextlib.suppress(RqSchedError):
            for server in self.soak.inspector.servers():
                if server.info.pid == proc.pid:
                    running = [(w.queue, w.task_id) for w in server.workers]
        undo = self._signal_and_hold(fault.target, signal.SIGKILL, fault.kind)
        for queue, task_id in running:
            started = time.time()
            try:
                heard = self.soak.inspector.cancel_task(queue, task_id)
            except RqSchedError as exc:
                self.soak.ledger.write(
                    "op",
                    action="cancel",
                    id=task_id,
                    q=queue,
                    res="error",
                    err=type(exc).__name__,
                    t0=started,
                )
                continue
            self.soak.ledger.write(
                "op", action="cancel", id=task_id, q=queue, res="ok", heard=heard, t0=started
            )
        return undo

    # -- Redis and the network ---------------------------------------------------------------

    def begin_redis_pause(self, fault: Fault) -> Undo:
        if not self.soak.redis_up():
            raise redis.ConnectionError("redis-server is down (killed by an earlier fault)")
        self.soak.direct.client_pause(int(fault.hold * 1000), all=True)
        return None  # Redis ends the pause by itself

    def begin_redis_kill(self, fault: Fault) -> Undo:
        if not self.soak.redis_up():
            return None  # already down: the fault that killed it starts it again
        self.soak.redis.stop(kill=True)
        self.soak.ledger.write("redis_down", t=time.time(), aof=self.soak.settings.aof)
        return self.soak.restart_redis

    def begin_proxy_drop(self, fault: Fault) -> Undo:
        dropped = self.soak.proxy.drop()
        self.soak.ledger.write("proxy", action="drop", connections=dropped)
        return None

    def begin_proxy_stall(self, fault: Fault) -> Undo:
        self.soak.proxy.stall(True)
        return lambda: self.soak.proxy.stall(False)

    def begin_proxy_slow(self, fault: Fault) -> Undo:
        self.soak.proxy.slow(float(fault.params["delay"]))
        return lambda: self.soak.proxy.slow(0.0)

    def begin_proxy_blackhole(self, fault: Fault) -> Undo:
        frozen = self.soak.proxy.blackhole()
        self.soak.ledger.write("proxy", action="blackhole", connections=frozen)
        return None

    # -- tasks that hurt ---------------------------------------------------------------------

    def _enqueue(self, task_type: str, payload: object, mode: str) -> None:
        client = Client(self.soak.direct, namespace=self.soak.namespace)
        info = client.enqueue(task_type, payload, queue="chaos", max_retry=3, retention=3600)
        self.soak.ledger.write(
            "enq", id=info.id, q="chaos", mode=mode, res="ok", due=0.0, type=task_type, ret=True
        )

    def begin_loop_stall(self, fault: Fault) -> Undo:
        self._enqueue(handlers.STALL, {"s": fault.hold}, "stall")
        return None

    def begin_bad_outcome(self, fault: Fault) -> Undo:
        self._enqueue(handlers.BAD, {"how": fault.params["how"]}, "bad")
        return None

    def begin_poison_bytes(self, fault: Fault) -> Undo:
        how = fault.params["how"]
        data = b"\xc1\xc1 not msgpack" if how == "not_msgpack" else msgpack.packb([99, "x", None])
        self._poison(data, how)
        return None

    def begin_poison_types(self, fault: Fault) -> Undo:
        how = fault.params["how"]
        fields: list[object] = [1, handlers.ASYNC, {"b": "ok"}, int(time.time() * 1000)]
        if how == "str_max_retry":
            fields += ["three"]
        elif how == "str_retried":
            fields += [3, "0"]
        else:  # a map with a list key inside the payload: msgpack decodes, Python cannot hash
            data = b"\x94\x01\xab" + handlers.ASYNC.encode() + b"\x81\x91\x01\x01\x00"
            self._poison(data, how)
            return None
        self._poison(msgpack.packb(fields), how)
        return None

    def _poison(self, data: bytes, how: str) -> None:
        keys = QueueKeys(self.soak.namespace, "chaos")
        task_id = f"poison-{self.count}-{how}"
        pipe = self.soak.direct.pipeline(transaction=True)
        pipe.hset(keys.msg, task_id, data)
        pipe.lpush(keys.pending, task_id)
        pipe.zadd(keys.marker, {"r": 0})
        pipe.execute()
        self.soak.ledger.write(
            "enq", id=task_id, q="chaos", mode="poison", res="ok", due=0.0, type="poison:" + how
        )


def unpause_all(inspector: Inspector, queues: list[str]) -> None:
    for queue in queues:
        inspector.unpause(queue)
