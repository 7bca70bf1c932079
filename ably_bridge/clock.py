"""Time, behind a seam: the ``Clock`` protocol, the real clock, and ``FakeClock``.

Library code never calls ``time.time()`` or ``time.sleep()`` directly; it asks
the clock it was given (``ClientOptions.clock``). Tests, ours and users', pass a
:class:`FakeClock` and move time by hand with :meth:`FakeClock.advance`, so
nothing waits on a real timer. The sans-I/O core reads no clock at all: its
inputs carry ``now`` and its outputs name the next deadline.

Two readings are offered: ``monotonic()`` for durations and deadlines, and
``time()`` / ``time_ms()`` for wall-clock timestamps (token expiry, Ably
timestamps), which can jump and may be offset from the server's (RSA10k).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock", "Timer"]


@runtime_checkable
class Timer(Protocol):
    """A scheduled callback that can be cancelled before it fires."""

    def cancel(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """What the library needs from time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch."""
        ...

    def time_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch (Ably's timestamp unit)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once, ``delay`` seconds from now, off the caller's thread."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``threading.Timer``."""

    def monotonic(self) -> float:
        return _time.monotonic()

    def time(self) -> float:
        return _time.time()

    def time_ms(self) -> int:
        return int(_time.time() * 1000)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            _time.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = threading.Timer(max(0.0, delay), callback)
        timer.daemon = True
        timer.start()
        return timer

    def __repr__(self) -> str:
        return "SystemClock()"


@dataclass(order=True)
class _FakeTimer:
    due: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told to.

    ``advance(seconds)`` moves both readings forward and runs, on the calling
    thread and in due order, every timer that falls due. ``sleep`` advances the
    clock instead of blocking, so code under test that sleeps finishes at once.
    Safe to share between threads.
    """

    def __init__(self, start: float = 1_700_000_000.0, monotonic_start: float = 1000.0) -> None:
        self._wall = float(start)
        self._mono = float(monotonic_start)
        self._timers: list[_FakeTimer] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def time(self) -> float:
        with self._lock:
            return self._wall

    def time_ms(self) -> int:
        with self._lock:
            return round(self._wall * 1000)

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        with self._lock:
            timer = _FakeTimer(self._mono + max(0.0, delay), next(self._seq), callback)
            heapq.heappush(self._timers, timer)
            return timer

    @property
    def pending(self) -> list[float]:
        """Due times (monotonic seconds) of the timers not yet fired or cancelled."""
        with self._lock:
            return sorted(t.due for t in self._timers if not t.cancelled)

    def set_wall_time(self, seconds: float) -> None:
        """Jump the wall clock (not the monotonic one), as NTP or a user might."""
        with self._lock:
            self._wall = float(seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing due timers in order."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            target = self._mono + seconds
        while True:
            with self._lock:
                if self._timers and self._timers[0].due <= target:
                    timer = heapq.heappop(self._timers)
                    self._wall += timer.due - self._mono
                    self._mono = max(self._mono, timer.due)
                else:
                    self._wall += target - self._mono
                    self._mono = target
                    return
            if not timer.cancelled:
                timer.callback()

    def __repr__(self) -> str:
        return f"FakeClock(time={self._wall:.3f}, pending={len(self.pending)})"
