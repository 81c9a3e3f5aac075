"""Wait for a condition, not for a guessed time: poll it until it holds or a timeout passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], what: str | Callable[[], str], timeout: float = 10.0,
          interval: float = 0.02) -> T:
    """Call ``condition`` until it returns something true and return that. After ``timeout``
    seconds, AssertionError naming ``what`` was awaited (e.g. "the worker to restart"; a
    function is called then, so the message can show the state at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what if isinstance(what, str) else what()}")
        time.sleep(interval)
