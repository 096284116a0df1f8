"""The one message an integration raises when its optional package is missing.

Integrations import their package at module level, inside ``try``, and re-raise with this
message, so the import stays visible to type checkers::

    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ImportError(missing("opentelemetry-api", extra="otel", feature="...")) from exc
"""

from __future__ import annotations


def missing(package: str, *, extra: str, feature: str) -> str:
    """The text of the ImportError: what is missing, for what, and the command to install it."""
    return f"{feature} needs the {package!r} package: pip install 'rq_sched[{extra}]'"
