"""Typed task handles: the producer checks the payload's type, the handler gets it rebuilt,
data that does not match is archived without retries, and mypy rejects a wrong payload type.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import os
import pickle
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

import pydantic
import pytest
import redis

from rq_sched import (
    AsyncClient,
    Client,
    Inspector,
    NewTask,
    Router,
    Task,
    TaskInfo,
    TaskState,
    ValidationError,
)
from rq_sched.contrib.typed import EnqueueOptions, TaskHandle, TaskOptions
from tests.worker_support import Recorder, queue_state, running_server, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Address:
    city: str
    zip: str | None = None


@dataclass
class Signup:
    user_id: int
    email: str
    tags: list[str] = field(default_factory=list)
    address: Address | None = None
    plan: Literal["free", "pro"] = "free"


class Resize(TypedDict):
    image: bytes
    width: int
    height: NotRequired[int]


class Invoice(pydantic.BaseModel):
    number: int
    amount: float


signup = TaskHandle("user:signup", Signup)
resize = TaskHandle("image:resize", Resize, queue="images")
invoice = TaskHandle("billing:invoice", Invoice)
seen = Recorder()


def on_resize(payload: Resize, task: Task) -> None:
    """A module-level sync handler: its registered form must pickle (process handlers)."""
    seen.add(payload)


def test_handlers_receive_the_declared_types_rebuilt(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    got = Recorder()

    @signup.handler(router)
    async def on_signup(payload: Signup, task: Task) -> None:
        got.add(("signup", payload, task.type))

    @invoice.handler(router)
    def on_invoice(payload: Invoice, task: Task) -> None:  # a thread handler
        got.add(("invoice", payload, task.type))

    client = Client(r, namespace=namespace)
    sent = Signup(7, "a@example.com", ["x"], Address("Oslo"), "pro")
    signup.enqueue(client, sent)
    invoice.enqueue(client, Invoice(number=3, amount=9.5))
    with running_server(redis_url, router, namespace=namespace):
        items = sorted(got.wait_for(2), key=lambda item: str(item[0]))
    assert items == [
        ("invoice", Invoice(number=3, amount=9.5), "billing:invoice"),
        ("signup", sent, "user:signup"),
    ]
    assert isinstance(items[1][1].address, Address)


def test_a_wrong_payload_is_refused_before_it_reaches_redis(r: redis.Redis, namespace: str) -> None:
    client = Client(r, namespace=namespace)
    with pytest.raises(ValidationError, match=r"payload of 'user:signup': expected Signup"):
        signup.enqueue(client, {"user_id": 7, "email": "a@example.com"})  # type: ignore[arg-type]
    # A dataclass does not check its own fields: the handle does, field by field.
    with pytest.raises(ValidationError, match=r"\.user_id: expected int, got str '7'"):
        signup.enqueue(client, Signup("7", "a@example.com"))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"\.address\.city: expected str, got int 5"):
        signup.enqueue(client, Signup(7, "a@example.com", address=Address(5)))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"\.width: expected int, got bool"):
        resize.enqueue(client, {"image": b"...", "width": True})
    assert queue_state(r, namespace) == dict.fromkeys(queue_state(r, namespace), 0)
    assert r.keys(f"{namespace}:*") == []


def test_aenqueue_checks_and_uses_the_handles_queue(redis_url: str, namespace: str) -> None:
    async def produce() -> TaskInfo:
        async with AsyncClient.from_url(redis_url, namespace=namespace) as client:
            with pytest.raises(ValidationError, match=r"missing field\(s\) \['width'\]"):
                await resize.aenqueue(client, {"image": b"\x89PNG"})  # type: ignore[typeddict-item]
            return await resize.aenqueue(client, {"image": b"\x89PNG", "width": 64})

    info = asyncio.run(produce())
    assert info.queue == "images"
    task = Inspector.from_url(redis_url, namespace=namespace).get_task("images", info.id)
    assert task.payload == {"image": b"\x89PNG", "width": 64}


def test_data_that_does_not_match_is_archived_at_once_naming_the_field(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    ran = Recorder()

    @signup.handler(router)
    def on_signup(payload: Signup, task: Task) -> None:
        ran.add(payload)

    client = Client(r, namespace=namespace)
    info = client.enqueue("user:signup", {"user_id": "seven", "email": "a@example.com"})
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        wait_until(lambda: queue_state(r, namespace)["archived"] == 1, what="task archived")
    task = inspector.get_task("default", info.id)
    assert task.state is TaskState.ARCHIVED
    assert task.retry_count == 1  # the one attempt; SkipRetry archived it, no retry
    assert task.last_error is not None
    assert "payload of 'user:signup'.user_id: expected int, got str 'seven'" in task.last_error
    assert len(ran) == 0


def test_sync_handlers_stay_picklable_for_child_processes() -> None:
    router = Router()
    resize.handler(router, process=True)(on_resize)
    registered = router.routes["image:resize"]
    assert registered.kind == "process"
    copy = pickle.loads(pickle.dumps(registered.handler))
    task = Task(type="image:resize", payload={"image": b"x", "width": 1}, id="t1", queue="images")
    copy(task)
    assert seen.wait_for(1) == [{"image": b"x", "width": 1}]


def test_new_task_carries_the_encoded_payload_for_enqueue_many() -> None:
    task = signup.new_task(Signup(1, "e@example.com"), queue="critical", max_retry=2)
    assert (task.type, task.queue, task.max_retry) == ("user:signup", "critical", 2)
    assert task.payload == {
        "user_id": 1,
        "email": "e@example.com",
        "tags": [],
        "address": None,
        "plan": "free",
    }


def test_a_payload_type_that_cannot_be_stored_is_refused_when_declared() -> None:
    @dataclass
    class WithSet:
        items: set[int]

    with pytest.raises(ValidationError, match=r"payload of 'x'\.items: set\[int\] cannot be"):
        TaskHandle("x", WithSet)


def test_the_typed_options_are_exactly_the_clients_enqueue_options() -> None:
    # All but replicas=, which says how the write is confirmed, not what the task is (so it is
    # not a NewTask field either); typed producers pass it through the client's own replicas=.
    for method in (Client.enqueue, AsyncClient.enqueue):
        params = inspect.signature(method).parameters.values()
        keyword_only = {p.name for p in params if p.kind is p.KEYWORD_ONLY} - {"replicas"}
        assert keyword_only == set(EnqueueOptions.__annotations__), method


def test_the_typed_task_options_are_exactly_the_fields_of_new_task() -> None:
    # debounce= / throttle= / window= included: a typed handle makes enqueue_many items too.
    assert set(TaskOptions.__annotations__) == {f.name for f in fields(NewTask)} - {
        "type",
        "payload",
    }


MYPY_SNIPPET = """
from dataclasses import dataclass

from rq_sched import AsyncClient, Client
from rq_sched.contrib.typed import EnqueueOptions, TaskHandle


@dataclass
class Signup:
    user_id: int


@dataclass
class Login:
    user_id: int


signup = TaskHandle("user:signup", Signup)


def produce(client: Client) -> None:
    signup.enqueue(client, Signup(user_id=1), queue="critical")  # fine
    signup.enqueue(client, Login(user_id=1))  # line 22: the wrong payload type


async def produce_async(client: AsyncClient) -> None:
    await signup.aenqueue(client, Login(user_id=1))  # line 26: the wrong payload type
    await signup.aenqueue(client, Signup(user_id=1), max_retry="3")  # line 27: a wrong option
"""


def test_mypy_rejects_a_wrong_payload_type_before_anything_runs(tmp_path: Path) -> None:
    # A module name of its own: mypy's cache is keyed by module, and a cached "producer" from
    # another run would be reported under that run's path.
    snippet = tmp_path / f"producer_{uuid.uuid4().hex}.py"
    snippet.write_text(textwrap.dedent(MYPY_SNIPPET).lstrip("\n"))
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(snippet)],
        check=False,
        cwd=ROOT,  # the project's config and its warm cache
        env=env,
        capture_output=True,
        text=True,
        timeout=110,  # under the per-test timeout; a cold mypy cache takes ~30 s
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(errors) == 3, done.stdout
    assert errors[0].startswith(f"{snippet}:22:")
    assert 'Argument 2 to "enqueue" of "TaskHandle" has incompatible type "Login"' in errors[0]
    assert 'expected "Signup"' in errors[0]
    assert errors[1].startswith(f"{snippet}:26:")
    assert 'Argument 2 to "aenqueue" of "TaskHandle" has incompatible type "Login"' in errors[1]
    assert errors[2].startswith(f"{snippet}:27:")
    assert '"max_retry"' in errors[2]


# --- found by review: each crashed, or handed the handler the wrong value, before its fix ----


@dataclass
class Node:
    children: list[Node]


@dataclass
class Wide:
    x: int
    y: int = 0


@dataclass
class Narrow:
    x: int


class Colour(enum.StrEnum):
    RED = "red"


@dataclass
class Painted:
    colour: Literal[Colour.RED]


@dataclass
class Measured:
    value: float


@pytest.mark.parametrize(
    ("payload_type", "error"),
    [
        (Node, "refers to itself; recursive payload types are not supported"),
        (Wide | Narrow, r"a union of several dataclasses, TypedDicts or models \(Wide, Narrow\)"),
        (Painted, r"Literal value <Colour.RED: 'red'> cannot be a typed payload"),
    ],
)
def test_payload_types_that_cannot_round_trip_are_refused_when_declared(
    payload_type: object, error: str
) -> None:
    with pytest.raises(ValidationError, match=error):
        TaskHandle("x", payload_type)  # type: ignore[arg-type]


def test_an_int_too_large_for_a_float_field_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"payload of 'x'\.value: expected a float"):
        TaskHandle("x", Measured).encode(Measured(10**400))


def test_a_handle_refuses_a_bad_queue_when_declared() -> None:
    with pytest.raises(ValidationError, match="queue"):
        TaskHandle("x", Measured, queue="a\nb")
