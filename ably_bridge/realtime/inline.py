"""Inline listeners: run on the thread that read the event, not on the callback pool.

An inline listener's events (``subscribe(..., inline=True)``) are handed to
:data:`INLINE`, an :class:`InlineRunner`, instead of a
:class:`~.dispatcher.CallbackDispatcher`. The runner keeps them while the
reading thread steps the session and runs them, in order, right after it lets
go of the session lock and before it reads the sockets again
(:meth:`~.loop.SessionLoop.post_frames`). No thread is woken for them at all,
which makes them the cheapest way to receive messages, on the condition that
they are quick and never block: while one runs, no connection it shares a
reader with is read. Blocking client calls made from one raise at once
(:func:`in_inline_listener`, checked by ``SessionLoop.call``) instead of
waiting for a reply that only this thread could read.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType

__all__ = ["INLINE", "InlineRunner", "in_inline_listener"]

log = logging.getLogger(__name__)

Task = Callable[[], None]


class _Collecting:
    """The context of :meth:`InlineRunner.collecting` (a class: entered on every frame read)."""

    __slots__ = ("_local", "_outer")

    def __init__(self, local: threading.local) -> None:
        self._local = local
        self._outer = False

    def __enter__(self) -> None:
        local = self._local
        self._outer = getattr(local, "tasks", None) is None  # nested: the outer one runs them
        if self._outer:
            local.tasks = deque()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._outer:
            _run(self._local)


class InlineRunner:
    """Runs tasks on the submitting thread once it leaves the session; see the module docstring.

    Inside :meth:`collecting` (a thread stepping the session) submitted tasks are
    kept, and run in order when the block ends - including tasks they submit in
    turn (a drain that continues). Outside it they run at once.
    """

    def __init__(self) -> None:
        self._local = threading.local()  # .tasks: deque while collecting; .running: bool

    def submit(self, fn: Task) -> None:
        local = self._local
        tasks: deque[Task] | None = getattr(local, "tasks", None)
        if tasks is not None:
            tasks.append(fn)
            return
        local.tasks = deque([fn])
        _run(local)

    def collecting(self) -> _Collecting:
        """Keep this thread's inline tasks until the block ends, then run them."""
        return _Collecting(self._local)

    def running(self) -> bool:
        """True on a thread that is running inline listeners now."""
        return bool(getattr(self._local, "running", False))


def _run(local: threading.local) -> None:
    tasks: deque[Task] = local.tasks
    local.running = True
    try:
        while tasks:
            task = tasks.popleft()
            try:
                task()
            except Exception:
                log.exception("inline task %r raised", task)
    finally:
        local.running = False
        local.tasks = None


INLINE = InlineRunner()


def in_inline_listener() -> bool:
    """Whether the calling thread is running an inline listener (blocking calls must not)."""
    return INLINE.running()
