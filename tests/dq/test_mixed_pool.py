"""Go and Python consumers on one tube (a mixed pool), with the Go consumer emulated command
by command (``tests/dq/go_emulation.py``).

By default a retry is the same beanstalkd job released with its dedup key marked as owned,
which a Go consumer that reserves it deletes and skips: lost. With ``mixed_pool=True`` a retry
(or repeat) is put as a fresh job whose body carries a new time, hence a new, free dedup key,
and the original's key is marked done: Go and Python consumers each run it only if they win
its key, so every job runs exactly once whichever consumer reserves what.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import redis

from rq_sched.dq import Consumer, Job, Outcome, Producer
from tests.dq.conftest import BeanstalkdServer, MakeConsumer, StartServers, nodes_of
from tests.dq.go_emulation import GoConsumer


@dataclass
class Fleet:
    """A Python consumer and one emulated Go consumer per node, and what each ran."""

    python: Consumer
    go: list[GoConsumer]
    fail_every: int
    runs: Counter[bytes] = field(default_factory=Counter)
    go_runs: int = 0
    failures: int = 0
    attempts: Counter[bytes] = field(default_factory=Counter)

    def python_handler(self, job: Job) -> None:
        self.attempts[job.body] += 1
        if (
            self.fail_every
            and int(job.body) % self.fail_every == 0
            and self.attempts[job.body] == 1
        ):
            self.failures += 1
            raise RuntimeError(f"injected failure of job {job.body!r}")
        self.runs[job.body] += 1

    def go_handler(self, body: bytes) -> None:
        self.go_runs += 1
        self.runs[body] += 1

    def round(self, *, python_first: bool) -> None:
        steps = [self.python.run_once, *(go.step for go in self.go)]
        for step in steps if python_first else [*steps[1:], steps[0]]:
            step()


MakeFleet = Callable[..., Fleet]


@pytest.fixture
def make_fleet(
    tube: str, r: redis.Redis, consumers: MakeConsumer
) -> Iterator[Callable[..., Fleet]]:
    """``make_fleet(servers, mixed_pool=..., fail_every=...)``; Go sockets closed after."""
    made: list[Fleet] = []

    def make(servers: list[BeanstalkdServer], *, mixed_pool: bool, fail_every: int = 0) -> Fleet:
        fleet = Fleet(python=None, go=[], fail_every=fail_every)  # type: ignore[arg-type]
        fleet.python = consumers(
            nodes_of(servers, tube),
            handler=fleet.python_handler,
            mixed_pool=mixed_pool,
            backoff=lambda n: 0,
        )
        fleet.go = [GoConsumer(s.port, tube, r, fleet.go_handler) for s in servers]
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        for go in fleet.go:
            go.close()


def _drain(fleet: Fleet, servers: list[BeanstalkdServer], tube: str, python_first: bool) -> None:
    for _ in range(500):
        if all(s.jobs_in(tube) == 0 for s in servers):
            return
        fleet.round(python_first=python_first)
    raise AssertionError(f"jobs left: {[s.tube_counts(tube) for s in servers]}")


def test_by_default_a_go_consumer_discards_a_python_retry(
    beanstalkds: StartServers, tube: str, make_fleet: MakeFleet
) -> None:
    # The documented limit of the default mode: the no-loss guarantee needs rq_sched
    # consumers only on a tube.
    servers = beanstalkds(1)
    fleet = make_fleet(servers, mixed_pool=False, fail_every=1)
    with Producer(nodes_of(beanstalkds(1) + servers, tube)) as producer:
        producer.delay(b"7", 0)
    assert fleet.python.run_once() == [Outcome.RETRY]
    assert fleet.go[0].step() == "skipped"  # deleted first, then found the key taken
    assert servers[0].jobs_in(tube) == 0
    assert fleet.runs[b"7"] == 0  # lost


def test_in_a_mixed_pool_a_go_consumer_runs_a_python_retry(
    beanstalkds: StartServers, tube: str, make_fleet: MakeFleet
) -> None:
    servers = beanstalkds(1)
    fleet = make_fleet(servers, mixed_pool=True, fail_every=1)
    with Producer(nodes_of(beanstalkds(1) + servers, tube)) as producer:
        producer.delay(b"7", 0)
    assert fleet.python.run_once() == [Outcome.RETRY]
    with servers[0].client(tube) as client:
        retry = client.peek_ready()
        assert client.stats_job(retry)["pri"] == 3  # the failure count travels in the priority
    assert fleet.go[0].step() == "ran"
    assert (fleet.runs[b"7"], servers[0].jobs_in(tube)) == (1, 0)


def test_in_a_mixed_pool_a_python_retry_still_runs_once_on_python(
    beanstalkds: StartServers, tube: str, make_fleet: MakeFleet
) -> None:
    servers = beanstalkds(2)
    fleet = make_fleet(servers, mixed_pool=True, fail_every=1)
    with Producer(nodes_of(servers, tube)) as producer:
        producer.delay(b"7", 0)
    assert sorted(o.value for o in fleet.python.run_once()) == ["duplicate", "retry"]
    assert fleet.python.run_once() == [Outcome.DONE]
    assert (fleet.runs[b"7"], fleet.failures) == (1, 1)
    assert all(s.jobs_in(tube) == 0 for s in servers)


@pytest.mark.parametrize(
    ("python_first", "fail_every"),
    list(itertools.product([True, False], [0, 3])),
    ids=str,
)
def test_in_a_mixed_pool_every_job_runs_exactly_once(
    beanstalkds: StartServers,
    tube: str,
    make_fleet: MakeFleet,
    python_first: bool,
    fail_every: int,
) -> None:
    servers = beanstalkds(2)
    fleet = make_fleet(servers, mixed_pool=True, fail_every=fail_every)
    jobs = [str(i).encode() for i in range(1, 31)]
    with Producer(nodes_of(servers, tube)) as producer:
        for body in jobs:
            producer.delay(body, 0)
    _drain(fleet, servers, tube, python_first)
    assert fleet.runs == Counter(dict.fromkeys(jobs, 1))
    assert (fleet.failures > 0) == bool(fail_every)  # only Python handlers fail
    assert 0 < fleet.go_runs < len(jobs)  # both sides ran jobs
