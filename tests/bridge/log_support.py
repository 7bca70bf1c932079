"""Tests that call ``configure_logging`` leave the root logger as they found it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["root_logging_restored"]


@contextmanager
def root_logging_restored() -> Iterator[None]:
    """Restore the root logger's level and handlers (``configure_logging`` replaces both)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
