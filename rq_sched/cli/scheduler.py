"""``rq-sched scheduler``: run the periodic scheduler with entries from a TOML file and/or code.

The config file is reloaded when it changes (its modification time and size are checked every
second) and on SIGHUP, without a restart; a bad reload is logged and the last good set of entries
keeps running. SIGTERM and SIGINT stop the scheduler cleanly. ``--app module:attr`` names either a
:class:`~rq_sched.scheduler.Scheduler` holding entries added in code (it is run as it is, on its
own connection) or a function returning entries (``Entry`` objects or mappings with the config
keys), which is called again at every reload.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

from rq_sched.cli.common import add_redis_options, import_object
from rq_sched.errors import RedisUnavailableError, ValidationError
from rq_sched.scheduler.cron import zone
from rq_sched.scheduler.entries import Entry, check_unique_names, entry_from_mapping, load_config
from rq_sched.scheduler.scheduler import Scheduler

log = logging.getLogger("rq_sched.cli.scheduler")

WATCH_INTERVAL_S = 1.0
"""How often the config file's modification time is checked."""
EXIT_USAGE = 2
_SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}

EntryFactory = Callable[[], list[Entry]]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rq-sched scheduler`` to the parser."""
    parser = sub.add_parser(
        "scheduler",
        help="run the periodic scheduler (cron entries to tasks, once per tick)",
        description="Enqueue a task for every tick of every entry. Run as many copies as you "
        "like for high availability: each tick is still enqueued exactly once.",
    )
    add_redis_options(parser)
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML file of [[entry]] tables (reloaded)"
    )
    parser.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="a Scheduler, or a function returning entries, e.g. myapp.schedule:scheduler",
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the entries, print their next fires, exit"
    )
    parser.set_defaults(handler=run)


class EntrySource:
    """Where the entries come from; :meth:`load` reads them all again."""

    def __init__(self, config: Path | None, app_entries: EntryFactory | None) -> None:
        self.config = config
        self.app_entries = app_entries

    def load(self) -> list[Entry]:
        """Every entry from the app and the config file.

        Raises:
            ValidationError: an entry is invalid, or two share a name.
        """
        entries = list(self.app_entries()) if self.app_entries else []
        if self.config is not None:
            entries += load_config(self.config)
        return check_unique_names(entries)

    def stamp(self) -> tuple[int, int] | None:
        """What identifies the config file's current version (None when absent)."""
        if self.config is None:
            return None
        try:
            stat = self.config.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size


class Reloader:
    """Reloads entries into a scheduler, keeping the last good set when a reload fails."""

    def __init__(self, scheduler: Scheduler, source: EntrySource) -> None:
        self.scheduler = scheduler
        self.source = source
        self._stamp = source.stamp()
        self.last_error: str | None = None

    def reload(self, reason: str) -> bool:
        """Load and apply the entries now; on failure log the error and change nothing."""
        self._stamp = self.source.stamp()
        try:
            entries = self.source.load()
            self.scheduler.replace(entries)
        except ValidationError as exc:
            self.last_error = str(exc)
            log.error(
                "reload (%s) failed; still running the last good %d entries: %s",
                reason,
                len(self.scheduler.entries),
                exc,
            )
            return False
        self.last_error = None
        log.info("reloaded (%s): %d entries", reason, len(entries))
        return True

    def check_file(self) -> bool:
        """Reload if the config file changed since the last load; True if a reload happened."""
        if self.source.config is None or self.source.stamp() == self._stamp:
            return False
        self.reload("config file changed")
        return True


def resolve_app(spec: str) -> tuple[Scheduler | None, EntryFactory]:
    """Import ``module:attr``; return its Scheduler (if it is one) and a function giving entries.

    Raises:
        ValidationError: the module or attribute cannot be found, or is of the wrong kind.
    """
    try:
        target = import_object(spec)
    except ValidationError as exc:
        raise ValidationError(f"--app {spec}: {exc}") from None
    if isinstance(target, Scheduler):
        fixed = target.entries
        return target, lambda: list(fixed)
    if callable(target):
        factory = target
        return None, lambda: _as_entries(factory(), spec)
    raise ValidationError(
        f"--app {spec}: expected a Scheduler or a function returning entries, got {target!r}"
    )


def _as_entries(result: object, spec: str) -> list[Entry]:
    if not isinstance(result, Iterable) or isinstance(result, str | bytes | Mapping):
        raise ValidationError(f"--app {spec}: the function must return a list of entries")
    entries = []
    for number, item in enumerate(result, start=1):
        if isinstance(item, Entry):
            entries.append(item)
        elif isinstance(item, Mapping):
            entries.append(entry_from_mapping(item, where=f"--app {spec}, entry #{number}"))
        else:
            raise ValidationError(
                f"--app {spec}: entry #{number} is neither an Entry nor a mapping"
            )
    return entries


def run(args: argparse.Namespace) -> int:
    """Handler of ``rq-sched scheduler``; returns the exit code."""
    if args.config is None and args.app is None:
        print("rq-sched scheduler: give --config FILE and/or --app MODULE:ATTR", file=sys.stderr)
        return EXIT_USAGE
    try:
        app_scheduler, factory = resolve_app(args.app) if args.app else (None, None)
        source = EntrySource(args.config, factory)
        entries = source.load()
    except ValidationError as exc:
        print(f"rq-sched scheduler: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        _print_entries(entries)
        return 0
    if app_scheduler is not None:
        log.info("running the Scheduler from --app %s (its own connection and namespace)", args.app)
    scheduler = app_scheduler or Scheduler.from_url(
        args.url, cluster=args.cluster, namespace=args.namespace
    )
    scheduler.replace(entries)
    log.info("scheduler %s: %d entries", scheduler.instance_id, len(entries))
    return _serve(scheduler, Reloader(scheduler, source))


def _serve(scheduler: Scheduler, reloader: Reloader) -> int:
    # Block the signals before the scheduler thread starts (it inherits the mask), so that only
    # sigtimedwait below receives them: no handler ever runs inside the scheduler's locks.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        scheduler.start()
        while scheduler.running:
            info = signal.sigtimedwait(_SIGNALS, WATCH_INTERVAL_S)
            if info is None:
                reloader.check_file()
            elif info.si_signo == signal.SIGHUP:
                reloader.reload("SIGHUP")
            else:
                log.info("received %s; stopping", signal.Signals(info.si_signo).name)
                return 0
        log.error("the scheduler thread ended unexpectedly")
        return 1
    finally:
        try:
            scheduler.close()
        except RedisUnavailableError as exc:
            log.warning("closing: %s", exc)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


def _print_entries(entries: list[Entry], count: int = 3) -> None:
    for entry in entries:
        fires, after = [], round(datetime.now().timestamp() * 1000)
        for _ in range(count):
            after = entry.schedule.next_after(after)
            fires.append(datetime.fromtimestamp(after / 1000, zone(entry.timezone)).isoformat())
        print(
            f"{entry.name} [{entry.id}] {entry.spec!r} ({entry.timezone}) -> {entry.type} "
            f"on {entry.queue}; next: {', '.join(fires)}"
        )
    print(f"{len(entries)} entries OK")
