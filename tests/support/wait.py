"""Waiting on an observable signal: poll until true, against a deadline.

Tests wait with :func:`eventually` instead of sleeping a fixed time: it returns
as soon as the condition holds and fails, naming what it waited for, when the
deadline passes. A generous default deadline costs nothing when the test passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    timeout: float = 20.0,
    what: object = "condition",
    interval: float = 0.02,
) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    Raises ``AssertionError`` naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
