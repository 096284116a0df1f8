"""Module-level handlers for the worker runtime tests (process handlers are pickled by
reference, so they live at module level)."""

from __future__ import annotations

from rq_sched import Task


def proc_deadline(task: Task) -> str:
    """Returns the deadline the child process saw (kept as the result)."""
    return "none" if task.deadline is None else task.deadline.isoformat()
