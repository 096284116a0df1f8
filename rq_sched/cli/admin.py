"""Operations subcommands: look at queues, tasks, servers and cron entries, and act on them.
Human tables by default; ``--json`` prints the same data the dashboard's API returns, for
scripts. How each one runs is :mod:`rq_sched.cli.runner`; ``rq-sched enqueue`` is
:mod:`rq_sched.cli.enqueue`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rq_sched.cli.runner import _command, _confirmed
from rq_sched.cli.tables import ago, duration, render_table, when
from rq_sched.errors import RqSchedError, ValidationError
from rq_sched.inspector.actions import BULK_ACTIONS
from rq_sched.inspector.inspector import Inspector
from rq_sched.inspector.models import (
    QueueStats,
    jsonable,
    payload_text,
    result_text,
    task_json,
)
from rq_sched.models import ScheduleRecord, TaskInfo, TaskState, json_default

STATES = [s.value for s in TaskState]
TASK_ACTIONS = ("run", "delete", "archive", "cancel")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operations subcommands to the parser."""
    _command(sub, "queues", "list queues with counts per state", _queues)
    queue = _command(sub, "queue", "one queue: counts, latency, memory, daily history", _queue)
    queue.add_argument("name")
    queue.add_argument("--days", type=int, default=7, help="days of history (%(default)s)")
    queue.add_argument("--delete", action="store_true", help="delete the queue and its tasks")
    queue.add_argument("--force", action="store_true", help="with --delete: even if tasks run")
    queue.add_argument("--yes", action="store_true", help="with --delete: do it, no question")
    queue.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="store the queue as N sub-queues in different cluster slots (1: one queue); "
        "refused unless the queue is empty and no worker server serves it",
    )
    tasks = _command(sub, "tasks", "list a queue's tasks in one state", _tasks)
    tasks.add_argument("queue")
    tasks.add_argument("state", choices=STATES)
    tasks.add_argument("--page", type=int, default=1)
    tasks.add_argument("--size", type=int, default=20)
    tasks.add_argument(
        "--bulk", choices=sorted(BULK_ACTIONS), help="apply this action to every task instead"
    )
    tasks.add_argument("--yes", action="store_true", help="with --bulk: do it, no question")
    tasks.add_argument("--type", dest="task_type", help="only tasks of this type")
    task = _command(sub, "task", "show one task, or run/delete/archive/cancel it", _task)
    task.add_argument("queue")
    task.add_argument("id")
    task.add_argument("action", nargs="?", choices=TASK_ACTIONS)
    waiting = _command(sub, "waiting", "tasks waiting for their parents (workflows)", _waiting)
    waiting.add_argument("queue")
    waiting.add_argument("--limit", type=int, default=100)
    for name, verb in (("pause", "stop"), ("unpause", "resume")):
        paused = _command(sub, name, f"{verb} processing a queue", _pause)
        paused.add_argument("queue")
    _command(sub, "servers", "live worker servers and the tasks they run", _servers)
    cron = _command(sub, "cron", "periodic scheduler entries and recent fires", _cron)
    cron.add_argument("--history", type=int, default=5, help="fires per entry (%(default)s)")
    cron.add_argument(
        "action", nargs="?", choices=("pause", "resume"), help="pause or resume ENTRY"
    )
    cron.add_argument("entry", nargs="?", help="with pause/resume: the entry's id or name")
    stats = _command(sub, "stats", "totals over all queues, daily history, Redis", _stats)
    stats.add_argument("--days", type=int, default=7, help="days of history (%(default)s)")


def _queues(inspector: Inspector, args: argparse.Namespace) -> Any:
    stats = inspector.all_queue_stats()
    if args.json:
        return stats
    if not stats:
        return "no queues yet (a queue appears when its first task is enqueued)"
    headers = [
        "QUEUE",
        "STATE",
        *(s.upper() for s in STATES),
        "LATENCY",
        "DONE TODAY",
        "FAILED TODAY",
    ]
    return render_table(headers, [_queue_row(s) for s in stats])


def _queue_row(stats: QueueStats) -> list[str]:
    i = stats.info
    counts = [i.pending, i.active, i.scheduled, i.retry, i.archived, i.completed]
    state = "paused" if i.paused else "running"
    today = [str(i.processed_today), str(i.failed_today)]
    return [i.queue, state, *(str(c) for c in counts), duration(stats.latency), *today]


def _queue(inspector: Inspector, args: argparse.Namespace) -> Any:
    if args.delete:
        inspector.require_queue(args.name, leftovers=True)
        _confirmed(args, f"delete queue {args.name!r} and every task in it")
        deleted = inspector.delete_queue(args.name, force=args.force)
        return {"deleted_keys": deleted} if args.json else f"deleted queue {args.name!r}"
    if args.shards is not None:
        change = inspector.set_shards(args.name, args.shards)
        if args.json:
            return change
        return f"queue {args.name!r}: {change.before} -> {change.after} shard(s): " + ", ".join(
            change.sub_queues
        )
    if not inspector.has_queue(args.name):
        raise RqSchedError(f"no queue {args.name!r}; `rq-sched queues` lists them")
    stats = inspector.queue_stats(args.name, memory=True)
    history = inspector.history(args.name, days=args.days)
    if args.json:
        return {"stats": jsonable(stats), "history": jsonable(history)}
    info = stats.info
    lines = [
        f"queue      {info.queue} ({'paused' if info.paused else 'running'})",
        f"size       {info.size} unfinished; latency {duration(stats.latency)}",
        f"memory     ~{(stats.memory_bytes or 0) / 1024:.1f} KiB",
        f"processed  {info.processed_today} today, {info.processed} total",
        f"failed     {info.failed_today} today, {info.failed} total",
        f"trimmed    {info.trimmed} archived task(s) deleted by the archive's limits, in all",
        "",
        render_table(STATES, [[str(getattr(info, s)) for s in STATES]]),
        "",
        render_table(
            ["DAY", "PROCESSED", "FAILED"],
            [[d.day, str(d.processed), str(d.failed)] for d in history],
        ),
    ]
    if stats.shards:
        rows = [[s.info.queue, *(str(getattr(s.info, n)) for n in STATES)] for s in stats.shards]
        lines += ["", render_table(["SHARD", *STATES], rows)]
    return "\n".join(lines)


def _tasks(inspector: Inspector, args: argparse.Namespace) -> Any:
    inspector.require_queue(args.queue)
    if args.bulk:
        _confirmed(args, f"{args.bulk} every {args.state} task of queue {args.queue!r}")
        result = inspector.bulk(args.queue, args.state, args.bulk)
        if args.json:
            return result
        return f"{args.bulk}: {result.done} {args.state} task(s); {result.skipped} skipped"
    page = inspector.list_tasks(
        args.queue, args.state, page=args.page, size=args.size, task_type=args.task_type
    )
    if args.json:
        return page
    now = inspector.clock.now()
    rows = [
        [
            t.id,
            t.type,
            t.payload_preview[:40],
            f"{t.retried}/{t.max_retry}",
            when(t.next_process_at or t.score_at, now),
            (t.last_error or "")[:50],
        ]
        for t in page.tasks
    ]
    headers = ["ID", "TYPE", "PAYLOAD", "RETRIED", "TIME", "LAST ERROR"]
    footer = f"page {page.page}/{page.pages} of {page.total} {page.state.value} task(s)"
    if page.task_type is not None:
        scope = "" if page.complete else f" among the first {page.scanned}"
        footer += f" of type {page.task_type}{scope}"
    return render_table(headers, rows) + "\n" + footer


def _task(inspector: Inspector, args: argparse.Namespace) -> Any:
    queue, task_id = args.queue, args.id
    if args.action == "cancel":
        heard = inspector.cancel_task(queue, task_id)
        if args.json:
            return {"cancelled": task_id, "servers_notified": heard}
        return f"cancel of {task_id} sent to {heard} server(s)"
    if args.action:
        action = {
            "run": inspector.run_task,
            "delete": inspector.delete_task,
            "archive": inspector.archive_task,
        }[args.action]
        action(queue, task_id)
        return {args.action: task_id} if args.json else f"{args.action}: done for {task_id}"
    info = inspector.get_task(queue, task_id)
    return task_json(info) if args.json else _describe(info, inspector.clock.now())


def _waiting(inspector: Inspector, args: argparse.Namespace) -> Any:
    found = inspector.waiting(args.queue, args.limit)
    if args.json:
        return jsonable(found)
    if not found:
        return f"no task of {args.queue} waits for its parents"
    lines = []
    for task in found:
        failed = f"; {task.failed}" if task.failed else ""
        lines.append(
            f"{task.id}  {task.type}  {task.reported}/{len(task.parents)} parents final "
            f"(on failure: {task.policy}{failed}): {', '.join(task.parents)}"
        )
    return "\n".join(lines)


def _describe(info: TaskInfo, now: float) -> str:
    fields = [
        ("id", info.id),
        ("queue", info.queue),
        ("type", info.type),
        ("state", info.state.value),
        ("retried", f"{info.retry_count} of {info.max_retry}"),
        ("enqueued", when(info.enqueued_at, now)),
        ("next run", when(info.next_process_at, now)),
        ("lease ends", when(info.lease_expires_at, now)),
        ("kept until", when(info.expires_at, now)),
        ("last failed", when(info.last_failed_at, now)),
        ("lost", str(info.lost_count) if info.lost_count else ""),
    ]
    lines = [f"{name:<12}{value}" for name, value in fields if value]
    lines += ["", "payload:", payload_text(info.payload)]
    if len(info.errors) > 1:
        lines += ["", f"errors of the last {len(info.errors)} failed attempts (oldest first):"]
        for e in info.errors[:-1]:
            lines += [f"-- attempt {e.attempt}, failed {when(e.failed_at, now)}", e.error]
    if info.last_error:
        lines += ["", "last error:", info.last_error]
    if info.parents:
        lines += ["", f"waited for {len(info.parents)} task(s):"]
        for parent in info.parents:
            error = f": {parent.error.splitlines()[0]}" if parent.error else ""
            lines.append(f"  {parent.queue}/{parent.id} {parent.outcome}{error}")
    if info.progress is not None:
        progress = info.progress
        shown = json.dumps(progress.value, ensure_ascii=False, default=json_default)
        note = f" - {progress.message}" if progress.message else ""
        lines += ["", f"progress: {shown}{note} (reported {when(progress.reported_at, now)})"]
    if info.result is not None:
        lines += ["", "result:", result_text(info.result)]
    return "\n".join(lines)


def _pause(inspector: Inspector, args: argparse.Namespace) -> Any:
    pause = args.command == "pause"
    inspector.require_queue(args.queue)
    changed = inspector.pause(args.queue) if pause else inspector.unpause(args.queue)
    if args.json:
        return {"queue": args.queue, "paused": pause, "changed": changed}
    state = "paused" if pause else "running"
    return f"queue {args.queue} {'is now' if changed else 'was already'} {state}"


def _servers(inspector: Inspector, args: argparse.Namespace) -> Any:
    servers = inspector.servers()
    if args.json:
        return servers
    if not servers:
        return "no live worker servers"
    now = inspector.clock.now()
    blocks = []
    for s in servers:
        i = s.info
        queues = ",".join(f"{q}={w}" for q, w in i.queues.items())
        head = (
            f"{i.id}  {i.host} pid {i.pid}  {i.status}  queues {queues}  "
            f"{i.active}/{i.concurrency} busy  up {ago(i.started_at, now)}"
        )
        rows = [[w.task_id, w.task_type, w.queue, ago(w.started_at, now)] for w in s.workers]
        table = render_table(["TASK", "TYPE", "QUEUE", "RUNNING"], rows) if rows else "  idle"
        blocks.append(head + "\n" + table)
    return "\n\n".join(blocks)


def _cron(inspector: Inspector, args: argparse.Namespace) -> Any:
    if args.action:
        return _pause_entry(inspector, args)
    status = inspector.scheduler(history=args.history)
    if args.json:
        return status
    if not status.entries:
        return "no periodic entries (is `rq-sched scheduler` running?)"
    now = inspector.clock.now()
    rows = [
        [
            e.info.name + (" (paused)" if e.paused else ""),
            e.info.spec,
            e.info.type,
            e.info.queue,
            when(e.info.next_fire, now),
            when(e.info.prev_fire, now),
            ", ".join(_fire_text(h) for h in e.history),
        ]
        for e in status.entries
    ]
    headers = ["NAME", "SPEC", "TYPE", "QUEUE", "NEXT", "PREVIOUS", "RECENT TASKS"]
    live = f"{len(status.instances)} scheduler instance(s) live"
    return render_table(headers, rows) + "\n" + live


def _fire_text(fire: ScheduleRecord) -> str:
    if fire.skipped:
        return "skipped (paused)"
    return ("error: " + fire.error) if fire.error else fire.task_id


def _pause_entry(inspector: Inspector, args: argparse.Namespace) -> Any:
    if not args.entry:
        raise ValidationError(f"`rq-sched cron {args.action}` needs the entry's id or name")
    pause = args.action == "pause"
    flip = inspector.pause_entry if pause else inspector.resume_entry
    changed = flip(args.entry)
    if args.json:
        return {"entry": args.entry, "paused": pause, "changed": changed}
    state = "paused (its ticks are skipped)" if pause else "running"
    return f"entry {args.entry} {'is now' if changed else 'was already'} {state}"


def _stats(inspector: Inspector, args: argparse.Namespace) -> Any:
    stats = inspector.all_queue_stats()
    history = inspector.history(days=args.days)
    nodes = inspector.redis_info()
    totals = {s: sum(getattr(q.info, s) for q in stats) for s in STATES}
    if args.json:
        return {
            "queues": len(stats),
            "totals": totals,
            "history": jsonable(history),
            "redis": jsonable(nodes),
        }
    days = [[d.day, str(d.processed), str(d.failed)] for d in history]
    redis_rows = [
        [n.address, n.info.get("redis_version", "?"), n.info.get("used_memory_human", "?")]
        for n in nodes
    ]
    return "\n\n".join(
        [
            f"{len(stats)} queue(s)",
            render_table([s.upper() for s in STATES], [[str(totals[s]) for s in STATES]]),
            render_table(["DAY", "PROCESSED", "FAILED"], days),
            render_table(["REDIS", "VERSION", "MEMORY"], redis_rows),
        ]
    )
