"""Inline listeners: run on the thread that read the event, not on the callback pool.

An inline listener's events (``subscribe(..., inline=True)``) are handed to
:data:`INLINE`, an :class:`InlineRunner`, instead of a
:class:`~.dispatcher.CallbackPool`. The runner keeps them while the
reading thread steps the session and runs them, in order, right after it lets
go of the session lock and before it reads the sockets again
(:meth:`~.loop.SessionLoop.post_frames`). No thread is woken for them at all,
which makes them the cheapest way to receive messages, on the condition that
they are quick and never block: while one runs, no connection it shares a
reader with is read. Blocking client calls made from one raise at once
(:func:`in_inline_listener`, checked by ``SessionLoop.call``) instead of
waiting for a reply that only this thread could read.

A listener that breaks the rule is named: an inline task that runs
:data:`SLOW_INLINE` seconds or longer is logged as a warning (once a minute per
listener at most) and counted in :attr:`InlineRunner.slow_runs`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

__all__ = ["INLINE", "SLOW_INLINE", "InlineRunner", "in_inline_listener"]

log = logging.getLogger(__name__)

Task = Callable[[], None]
SLOW_INLINE = 0.1  # seconds: an inline task this long held up every socket its thread reads
_REPORT_EVERY = 60.0  # seconds between two warnings about the same listener


class _Collecting:
    """The context of :meth:`InlineRunner.collecting` (a class: entered on every frame read)."""

    __slots__ = ("_local", "_outer", "_runner")

    def __init__(self, runner: InlineRunner) -> None:
        self._runner = runner
        self._local = runner._local
        self._outer = False

    def __enter__(self) -> None:
        local = self._local
        if getattr(local, "tasks", None) is None:  # nested: the outer one runs them
            self._outer = True
            local.tasks = deque()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._outer:
            if self._local.tasks:
                self._runner._run()
            else:
                self._local.tasks = None  # nothing was submitted (a frame nobody listens to)


class InlineRunner:
    """Runs tasks on the submitting thread once it leaves the session; see the module docstring.

    Inside :meth:`collecting` (a thread stepping the session) submitted tasks are
    kept, and run in order when the block ends - including tasks they submit in
    turn (a drain that continues). Outside it they run at once.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._local = threading.local()  # .tasks: deque while collecting; .running: bool
        self._clock = clock
        self.slow_runs = 0  # inline tasks that ran SLOW_INLINE or longer
        self._reported: dict[str, float] = {}  # listener -> when it was last reported

    def submit(self, fn: Task) -> None:
        local = self._local
        tasks: deque[Task] | None = getattr(local, "tasks", None)
        if tasks is not None:
            tasks.append(fn)
            return
        local.tasks = deque([fn])
        self._run()

    def collecting(self) -> _Collecting:
        """Keep this thread's inline tasks until the block ends, then run them."""
        return _Collecting(self)

    def running(self) -> bool:
        """True on a thread that is running inline listeners now."""
        return bool(getattr(self._local, "running", False))

    def _run(self) -> None:
        local = self._local
        tasks: deque[Task] = local.tasks
        clock = self._clock
        local.running = True
        try:
            started = clock()
            while tasks:
                task = tasks.popleft()
                try:
                    task()
                except Exception:
                    log.exception("inline task %r raised", task)
                ended = clock()  # (one reading per task: its end is the next one's start)
                if ended - started >= SLOW_INLINE:
                    self._slow(task, ended - started)
                started = ended
        finally:
            local.running = False
            local.tasks = None

    def _slow(self, task: Task, took: float) -> None:
        self.slow_runs += 1
        # A listener's drain is a bound method of its queue, which knows the listener.
        listener = getattr(getattr(task, "__self__", None), "listener", task)
        name = getattr(listener, "__qualname__", None) or repr(listener)
        now = self._clock()
        last = self._reported.get(name)
        if last is not None and now - last < _REPORT_EVERY:
            return
        if len(self._reported) >= 1024:
            self._reported.clear()
        self._reported[name] = now
        log.warning(
            "inline listener %s ran for %.0f ms on the reading thread: no socket that thread "
            "reads was read meanwhile; hand slow work to a queue, or subscribe without inline",
            name,
            took * 1000,
        )


INLINE = InlineRunner()


def in_inline_listener() -> bool:
    """Whether the calling thread is running an inline listener (blocking calls must not)."""
    return INLINE.running()
