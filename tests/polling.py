"""The one bounded wait of the test suite: poll a check until it holds, or fail saying what.

Use it for state another process or thread changes (Redis keys, a child's output); where the
test owns the thing that changes, wait on an event or drive a ManualClock instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.01


def wait_until(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy and return that; fail after ``timeout``.

    Raises:
        AssertionError: ``check`` did not hold within ``timeout`` seconds (the message names
            ``what``).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)
