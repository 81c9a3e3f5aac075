"""Wait for a condition, not for a guessed time: poll it until it holds or a timeout passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], what: str, timeout: float = 10.0, interval: float = 0.02) -> T:
    """Call ``condition`` until it returns something true and return that; AssertionError naming
    ``what`` (the awaited condition, e.g. "the worker restarted") after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
