"""Waiting for something asynchronous to hold, with a deadline generous enough for a loaded 2-core machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout_s: float = 60.0, interval_s: float = 0.2, what: str = "") -> T:
    """Poll until `check()` returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what or check}; last={last!r}")
