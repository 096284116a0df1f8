"""Text for an operator's terminal: tables padded to their columns, and short durations and
times for their cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; control characters in cells shown escaped."""
    cells = [[_printable(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _printable(text: str) -> str:
    # Task data is user data: a payload must not move the operator's cursor or clear the screen.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def duration(seconds: float) -> str:
    """``3725.0`` -> ``1h2m``; short and rounded, for tables."""
    seconds = abs(seconds)
    if seconds < 1:
        return "0s" if seconds == 0 else f"{seconds * 1000:.0f}ms"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{int(count)}{unit}")
    return "".join(parts[:2])


def when(at: datetime | None, now: float | None) -> str:
    """A UTC time, with how far from ``now`` it is ("in 5m" / "5m ago") when now is given."""
    if at is None:
        return ""
    text = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if now is None:
        return text
    delta = at.timestamp() - now
    return f"{text} ({'in ' + duration(delta) if delta >= 0 else duration(delta) + ' ago'})"


def ago(at: datetime, now: float) -> str:
    """How long ago ``at`` was, e.g. ``5m3s``."""
    return duration(now - at.timestamp())
