"""Schedule entries from TOML and from code, and reloading them (good and bad) without a restart:
in process, and through the ``rq-sched scheduler`` command with file changes and SIGHUP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from rq_sched import ManualClock
from rq_sched.cli.scheduler import EntrySource, Reloader, resolve_app
from rq_sched.errors import ValidationError
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.scheduler.entries import Entry, load_config, parse_config
from rq_sched.scheduler.scheduler import Scheduler
from tests.polling import wait_until

FULL = """
[[entry]]
name = "nightly report"
spec = "30 2 * * *"
type = "report:nightly"
payload = { format = "pdf", pages = [1, 2] }
queue = "reports"
timezone = "Europe/Berlin"
misfire = "run_once"
grace = "1h30m"
max_retry = 3
timeout = 600
deadline = "2h"
unique = "1h"
retention = 86400.5
headers = { team = "finance" }

[[entry]]
name = "beat"
spec = "@every 30s"
type = "beat"
payload = "hello"
"""


def entry_table(name: str, spec: str = "@every 1s", **extra: str) -> str:
    lines = [f'name = "{name}"', f'spec = "{spec}"', 'type = "t"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "[[entry]]\n" + "\n".join(lines) + "\n"


# -- parsing ----------------------------------------------------------------------------------


def test_every_key_of_an_entry_is_read() -> None:
    report, beat = parse_config(FULL)
    assert (report.name, report.id, report.spec, report.type) == (
        "nightly report", "nightly_report-262632d94f", "30 2 * * *", "report:nightly",
    )  # fmt: skip
    assert report.payload == {"format": "pdf", "pages": [1, 2]}
    assert (report.queue, report.timezone, report.misfire, report.grace) == (
        "reports", "Europe/Berlin", "run_once", 5400.0,
    )  # fmt: skip
    assert (report.max_retry, report.timeout, report.deadline) == (3, 600.0, 7200.0)
    assert (report.unique, report.retention, report.headers) == (
        3600.0,
        86400.5,
        {"team": "finance"},
    )
    assert (beat.id, beat.payload, beat.queue, beat.timezone, beat.misfire) == (
        "beat", "hello", "default", "UTC", "skip",
    )  # fmt: skip


def test_an_empty_file_has_no_entries() -> None:
    assert parse_config("") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (entry_table("a", max_retries="3"),
         r"entry 'a' \(cfg, entry #1\): unknown option 'max_retries'; did you mean 'max_retry'"),
        (entry_table("a") + entry_table("b", spec="61 * * * *"),
         r"schedule entry 'b' \(cfg, entry #2\): invalid cron spec"),
        (entry_table("a", timezone='"Europe/Atlantis"'), r"entry 'a' .*unknown time zone"),
        ('[[entry]]\nname = "a"\ntype = "t"\n',
         r"entry 'a' \(cfg, entry #1\): missing required key 'spec'"),
        (entry_table("a") + entry_table("a"), r"cfg: duplicate schedule entry 'a'"),
        (entry_table("a", payload="2025-01-01T00:00:00Z"), r"'a' .*payload cannot be encoded"),
        (entry_table("a", grace='"forever"'), r"entry 'a' .*grace: 'forever' is not a duration"),
        (entry_table("a") + "[server]\nx = 1\n", r"cfg: unknown top-level key 'server'"),
        ('[entry]\nname = "a"\n', r"cfg: 'entry' must be an array of tables"),
        ("[[entry]\n", r"cfg is not valid TOML"),
        # Issue #10 case 15: TOML spells inf and nan; neither is a duration.
        (entry_table("a", grace="inf"), r"entry 'a' .*grace must be a finite number of seconds"),
        (entry_table("a", timeout="nan"), r"entry 'a' .*timeout must be a finite number"),
        (entry_table("a", unique='"99999999999999d"'), r"entry 'a' .*unique is longer than"),
        (entry_table("a", max_retry="18446744073709551616"), r"'a' .*max_retry must be at most"),
    ],
)  # fmt: skip
def test_bad_config_is_refused_naming_file_and_entry(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_config(text, source="cfg")


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"cannot read schedule config .*nope\.toml"):
        load_config(tmp_path / "nope.toml")


# -- entries from code ------------------------------------------------------------------------


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"schedapp_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "from rq_sched.scheduler.scheduler import Scheduler\n"
        "from rq_sched.scheduler.entries import build_entry\n"
        "import redis\n"
        "calls = []\n"
        "def entries():\n"
        "    calls.append(1)\n"
        "    return [build_entry('code', '@every 1m', 'code'),\n"
        "            {'name': 'mapped', 'spec': '@hourly', 'type': 'm',\n"
        "             'queue': 'q%d' % len(calls)}]\n"
        "def broken():\n"
        "    return [{'name': 'x', 'spec': '@every 1m', 'type': 't', 'colour': 'red'}]\n"
        "scheduler = Scheduler(redis.Redis(), namespace='app')\n"
        "scheduler.add('from-code', '@daily', 'daily')\n"
        "not_callable = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_app_function_entries_are_loaded_and_called_at_each_load(app_module: str) -> None:
    scheduler, factory = resolve_app(f"{app_module}:entries")
    assert scheduler is None
    assert [(e.name, e.queue) for e in factory()] == [("code", "default"), ("mapped", "q1")]
    assert [e.queue for e in factory()][1] == "q2"


def test_app_scheduler_is_used_with_its_entries(app_module: str) -> None:
    scheduler, factory = resolve_app(f"{app_module}:scheduler")
    assert scheduler is not None
    assert scheduler.namespace == "app"
    assert [e.name for e in factory()] == ["from-code"]


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("not_callable", "expected a Scheduler or a function returning entries"),
        ("missing", "has no attribute 'missing'"),
        ("broken", r"entry 'x' \(--app .*:broken, entry #1\): unknown option 'colour'"),
    ],
)
def test_bad_app_targets_are_refused(app_module: str, attr: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        resolve_app(f"{app_module}:{attr}")[1]()


# -- reloading in process ---------------------------------------------------------------------


@pytest.fixture
def reloading(
    tmp_path: Path, r: redis.Redis, namespace: str, clock: ManualClock
) -> tuple[Path, Scheduler, Reloader]:
    path = tmp_path / "schedule.toml"
    path.write_text(entry_table("a") + entry_table("b"))
    scheduler = Scheduler(r, namespace=namespace, clock=clock)
    source = EntrySource(path, None)
    scheduler.replace(source.load())
    return path, scheduler, Reloader(scheduler, source)


def names(entries: list[Entry]) -> list[str]:
    return [e.name for e in entries]


def test_a_good_reload_adds_updates_and_removes_entries(
    reloading: tuple[Path, Scheduler, Reloader],
) -> None:
    path, scheduler, reloader = reloading
    path.write_text(entry_table("b", spec="@every 2s") + entry_table("c"))
    assert reloader.reload("test")
    assert names(scheduler.entries) == ["b", "c"]
    assert scheduler.entries[0].spec == "@every 2s"
    assert reloader.last_error is None


def test_a_bad_reload_keeps_the_last_good_entries_running(
    reloading: tuple[Path, Scheduler, Reloader], r: redis.Redis, namespace: str
) -> None:
    path, scheduler, reloader = reloading
    scheduler.tick(1_800_000_000)
    path.write_text(entry_table("a") + entry_table("c", spec="every second"))
    assert not reloader.reload("test")
    assert reloader.last_error is not None
    assert "schedule entry 'c'" in reloader.last_error
    assert names(scheduler.entries) == ["a", "b"]
    scheduler.tick(1_800_000_001)
    assert r.llen(QueueKeys(namespace, "default").pending) == 4  # a and b fired twice each


def test_the_file_is_reloaded_only_when_it_changed(
    reloading: tuple[Path, Scheduler, Reloader],
) -> None:
    path, scheduler, reloader = reloading
    assert not reloader.check_file()
    path.write_text(entry_table("a") + entry_table("b") + entry_table("c"))
    assert reloader.check_file()
    assert names(scheduler.entries) == ["a", "b", "c"]
    assert not reloader.check_file()


# -- the command ------------------------------------------------------------------------------

PAD = 600
"""Every config version is padded to the same size, so only its mtime can tell them apart."""


def write_config(path: Path, text: str, *, keep_mtime_of: Path | None = None) -> None:
    stat = keep_mtime_of.stat() if keep_mtime_of else None
    path.write_text(text + "#" * (PAD - len(text) - 1) + "\n")
    if stat is not None:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


CLI = [
    sys.executable,
    "-c",
    "import sys; from rq_sched.cli import main; sys.exit(main(sys.argv[1:]))",
]


def start_cli(*args: str, stderr: Path) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as err:
        return subprocess.Popen([*CLI, *args], stderr=err)


def test_command_reloads_on_change_and_sighup_and_survives_a_bad_config(
    tmp_path: Path, redis_url: str, r: redis.Redis, namespace: str
) -> None:
    config, log = tmp_path / "schedule.toml", tmp_path / "stderr.log"
    write_config(config, entry_table("a"))
    proc = start_cli(
        "scheduler", "--url", redis_url, "--namespace", namespace, "--config", str(config),
        stderr=log,
    )  # fmt: skip
    entries_key = GlobalKeys(namespace).scheduler_entries

    def published() -> set[str]:
        return {k.decode() if isinstance(k, bytes) else k for k in r.hkeys(entries_key)}

    try:
        wait_until(lambda: published() == {"a"}, what="entry a")
        write_config(config, entry_table("b"))
        wait_until(lambda: published() == {"b"}, what="reload on change")
        write_config(config, entry_table("c", spec="61 * * * *"))
        wait_until(
            lambda: "reload (config file changed) failed" in log.read_text(), what="error log"
        )
        assert "schedule entry 'c'" in log.read_text()
        pending = QueueKeys(namespace, "default").pending
        fired = r.llen(pending)
        wait_until(lambda: r.llen(pending) > fired, what="b still firing")
        write_config(config, entry_table("d"), keep_mtime_of=config)  # invisible to the mtime check
        # Rather than a bare sleep, wait for the process to show progress: two more ticks of b
        # (one a second) span a full file-check interval (1 s) of that process, which must not
        # have picked the change up without SIGHUP, even on a loaded machine.
        fired = r.llen(pending)
        wait_until(lambda: r.llen(pending) >= fired + 2, what="two more ticks of b")
        assert published() == {"b"}
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: published() == {"d"}, what="reload on SIGHUP")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert r.zcard(GlobalKeys(namespace).schedulers) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_command_refuses_a_bad_config_at_startup(tmp_path: Path) -> None:
    config = tmp_path / "schedule.toml"
    config.write_text(entry_table("a", misfire='"sometimes"'))
    result = subprocess.run(
        [*CLI, "scheduler", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "schedule entry 'a'" in result.stderr
    assert "misfire must be one of" in result.stderr


@pytest.mark.parametrize("name", ["bad\ud800name", "ring\x07bell", "title\x1b]0;x\x07"])
def test_an_entry_name_with_a_surrogate_or_control_character_is_refused(name: str) -> None:
    # Found by the adversarial review: a lone surrogate raised UnicodeEncodeError at the first
    # write to Redis, and control characters reached the operator's terminal through the CLI.
    with pytest.raises(ValidationError, match="lone surrogate or control character"):
        Entry(name=name, spec="@every 1m", type="t")
