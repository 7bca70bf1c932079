"""A one-line progress bar on stderr for long exports (no dependency, throttled redraws).

:class:`Progress` draws ``label [#####.....]  42%  1234 items  3.1s`` on one
line, redrawn with a carriage return at most every ``interval`` seconds, and
ends the line on :meth:`Progress.close`. Without a known fraction (no total,
no time window) it shows the count and elapsed time only. A disabled
:class:`Progress` does nothing, so callers need no ``if``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Draws progress on ``stream`` when ``enabled``; ``update`` is cheap to call often."""

    def __init__(
        self,
        stream: TextIO,
        *,
        label: str,
        enabled: bool,
        unit: str = "items",
        width: int = 24,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._label = label
        self.enabled = enabled
        self._unit = unit
        self._width = width
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_draw: float | None = None
        self._count = 0
        self._fraction: float | None = None
        self._drawn = False

    def update(self, count: int, fraction: float | None = None, *, force: bool = False) -> None:
        """Record ``count`` items done and, when known, the ``fraction`` (0..1) of the work."""
        self._count = count
        if fraction is not None:
            self._fraction = min(max(fraction, 0.0), 1.0)
        if not self.enabled:
            return
        now = self._clock()
        if force or self._last_draw is None or now - self._last_draw >= self._interval:
            self._last_draw = now
            self._draw(now)

    def close(self, *, done: bool = True) -> None:
        """Draw the final state (100% when ``done``) and end the line."""
        if not self.enabled:
            return
        if done and self._fraction is not None:
            self._fraction = 1.0
        self._draw(self._clock())
        self._stream.write("\n")
        self._stream.flush()

    def render(self, now: float | None = None) -> str:
        """The current line (without the carriage return)."""
        elapsed = (self._clock() if now is None else now) - self._started
        tail = f"{self._count} {self._unit}  {elapsed:.1f}s"
        if self._fraction is None:
            return f"{self._label} {tail}"
        filled = round(self._fraction * self._width)
        bar = "#" * filled + "." * (self._width - filled)
        return f"{self._label} [{bar}] {self._fraction * 100:3.0f}%  {tail}"

    def _draw(self, now: float) -> None:
        self._stream.write("\r" + self.render(now) + "\x1b[K")
        self._stream.flush()
        self._drawn = True
