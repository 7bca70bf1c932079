"""Event emitters whose listeners never run on the loop or reader thread.

The realtime client's loop thread emits events (connection and channel state
changes, messages, presence) and must never wait for user code. Each listener
gets its own ordered queue, drained on the threads of a
:class:`~.dispatcher.CallbackPool` (by default the one pool all clients
in the process share):

* one listener sees its events one at a time and in emit order (the Go SDK's
  event-emitter contract);
* different listeners may run concurrently, so a slow Celery or Redis call in
  one handler delays neither heartbeats nor other channels;
* an exception in a listener is logged and never reaches the emitter.

A listener's queue holds a drain task in the dispatcher only while it has
events, so ten thousand idle listeners cost ten thousand small objects, not
threads; a drain runs the events queued when it starts (up to 64), then yields.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

from ably_bridge.realtime.callback_pool import CallbackPool
from ably_bridge.realtime.inline import INLINE, InlineRunner

__all__ = ["CallbackPool", "EventEmitter", "Listener", "OrderedQueue"]

_module_log = logging.getLogger(__name__)

T = TypeVar("T")
Listener = Callable[[T], Any]

_DRAIN_BATCH = 64  # events one drain task runs before yielding its worker


class OrderedQueue:
    """The ordered queue of one listener; at most one drain task runs at a time.

    Also used on its own for completion callbacks that must run in order.

    No lock round per event: the deque's ``append`` and ``popleft`` are atomic,
    and ``_running`` (a lock taken without waiting, and let go by whichever
    thread's drain finds the queue empty) says whether a drain task is queued or
    running. A push that finds it taken leaves its event to that drain, which
    looks at the queue again after letting go of it, so no event is left behind.
    """

    __slots__ = ("_dispatcher", "_log", "_pending", "_running", "listener")

    def __init__(
        self,
        listener: Callable[[Any], Any],
        dispatcher: CallbackPool | InlineRunner,
        log: logging.Logger = _module_log,
    ) -> None:
        self.listener = listener
        self._log = log
        self._dispatcher = dispatcher
        self._pending: deque[Any] = deque()
        self._running = threading.Lock()  # held while a drain task is queued or running

    def push(self, payload: Any) -> None:
        self._pending.append(payload)
        if self._running.acquire(False):
            self._dispatcher.submit(self._drain)

    def push_many(self, payloads: Iterable[Any]) -> None:
        """Queue several events in order (together: no other push comes between them),
        with at most one submit."""
        items = payloads if type(payloads) is list else list(payloads)
        if not items:
            return
        self._pending.extend(items)  # (one C call over a list: atomic)
        if self._running.acquire(False):
            self._dispatcher.submit(self._drain)

    def _drain(self) -> None:
        # Run the events queued now (up to _DRAIN_BATCH), then either stop (nothing
        # left) or yield the worker to other listeners (events that came meanwhile go
        # after what was submitted to the pool before them). Only the drain takes events.
        pending = self._pending
        listener = self.listener
        for _ in range(min(len(pending), _DRAIN_BATCH)):
            payload = pending.popleft()
            try:
                listener(payload)
            except Exception:
                self._log.exception("listener %r raised; the event is dropped for it", listener)
        if pending:
            self._dispatcher.submit(self._drain)  # carry on (still "running")
            return
        self._running.release()
        # A push between the last look and the release left its event to this drain.
        if pending and self._running.acquire(False):
            self._dispatcher.submit(self._drain)


class EventEmitter(Generic[T]):
    """``on``/``once``/``off`` by event name, or for all events; thread-safe.

    ``on`` returns a callable that removes the listener again, so
    ``unsubscribe = channel.subscribe(handler)`` reads naturally.
    """

    def __init__(self, dispatcher: CallbackPool, log: logging.Logger = _module_log) -> None:
        self._dispatcher = dispatcher
        self._log = log  # the client's logger: for listeners that raise
        self._lock = threading.Lock()
        # Entries: (event or None for "all events", queue, once)
        self._entries: list[tuple[Hashable | None, OrderedQueue, bool]] = []

    def on(
        self,
        event: Hashable | Iterable[Hashable] | None,
        listener: Listener[T],
        *,
        inline: bool = False,
    ) -> Callable[[], None]:
        """Call ``listener`` for ``event`` (a name, several names, or None for all).

        ``inline``: on the thread that received the event instead of the callback
        pool (:class:`~.inline.InlineRunner`); the listener must be quick and
        must not block.
        """
        return self._add(event, listener, once=False, inline=inline)

    def once(
        self, event: Hashable | Iterable[Hashable] | None, listener: Listener[T]
    ) -> Callable[[], None]:
        """Like :meth:`on`, but only for the first matching event."""
        return self._add(event, listener, once=True)

    def off(
        self,
        event: Hashable | Iterable[Hashable] | None = None,
        listener: Listener[T] | None = None,
    ) -> None:
        """Remove listeners: all, all for ``event`` (a name or several), or ``listener``.

        With events and a listener, only that listener's registrations for those
        events go; listeners registered for all events stay unless ``event`` is None.
        """
        events = _event_set(event)
        with self._lock:
            self._entries = [
                entry
                for entry in self._entries
                if not (
                    (listener is None or entry[1].listener == listener)
                    and (events is None or entry[0] in events)
                )
            ]

    def emit(self, event: Hashable, payload: T) -> None:
        """Queue ``payload`` for every listener of ``event`` and of all events."""
        entries = self._entries
        if len(entries) == 1 and not entries[0][2]:
            # The common case (one listener, not `once`): no bookkeeping, as in emit_many.
            wanted, only, _once = entries[0]
            if wanted is None or wanted == event:
                only.push(payload)
            return
        with self._lock:
            matched = [entry for entry in self._entries if entry[0] is None or entry[0] == event]
            if any(entry[2] for entry in matched):
                # `once` listeners are removed here, so they see exactly one event.
                once_ids = {id(entry) for entry in matched if entry[2]}
                self._entries = [e for e in self._entries if id(e) not in once_ids]
        for _event, lq, _once in matched:
            lq.push(payload)

    def emit_many(self, events: Iterable[tuple[Hashable, T]]) -> None:
        """Like :meth:`emit` for each ``(event, payload)`` in order, with one lock round.

        Each listener gets its events in order through one
        :meth:`OrderedQueue.push_many` (at most one submit), not one push each.
        """
        entries = self._entries
        if not entries:
            return
        if len(entries) == 1 and not entries[0][2]:
            # The common case (one channel, one subscriber): no bookkeeping. Like the
            # general path, it reads the listeners once and pushes outside the lock.
            wanted, only, _once = entries[0]
            if wanted is None:
                only.push_many([payload for _event, payload in events])
            else:
                only.push_many([payload for event, payload in events if event == wanted])
            return
        batches: dict[int, tuple[OrderedQueue, list[T]]] = {}
        with self._lock:
            entries = self._entries
            live = list(entries)
            removed: set[int] = set()
            for event, payload in events:
                for entry in live:
                    if entry[0] is not None and entry[0] != event:
                        continue
                    if entry[2]:
                        if id(entry) in removed:
                            continue
                        removed.add(id(entry))  # a `once` entry sees exactly one event
                    lq = entry[1]
                    found = batches.get(id(lq))
                    if found is None:
                        batches[id(lq)] = (lq, [payload])
                    else:
                        found[1].append(payload)
            if removed:
                self._entries = [e for e in entries if id(e) not in removed]
        for lq, payloads in batches.values():
            lq.push_many(payloads)

    def has_listeners(self) -> bool:
        """Whether any listener is registered (a lock-free hint for the emitting thread)."""
        return bool(self._entries)

    def listener_count(self, event: Hashable | None = None) -> int:
        with self._lock:
            if event is None:
                return len(self._entries)
            return sum(1 for entry in self._entries if entry[0] in (None, event))

    def _add(
        self,
        event: Hashable | Iterable[Hashable] | None,
        listener: Listener[T],
        *,
        once: bool,
        inline: bool = False,
    ) -> Callable[[], None]:
        if not callable(listener):
            raise TypeError("listener must be callable")
        events: list[Hashable | None]
        if event is None or isinstance(event, str) or not isinstance(event, Iterable):
            events = [event]
        else:
            events = list(event)
        lq = OrderedQueue(listener, INLINE if inline else self._dispatcher, self._log)
        added = [(ev, lq, once) for ev in events]
        with self._lock:
            self._entries.extend(added)

        def remove() -> None:
            with self._lock:
                self._entries = [e for e in self._entries if e[1] is not lq]

        return remove


def _event_set(event: Hashable | Iterable[Hashable] | None) -> frozenset[Hashable] | None:
    """``None`` (every event), or the set of event names ``event`` stands for."""
    if event is None:
        return None
    if isinstance(event, str) or not isinstance(event, Iterable):
        return frozenset((event,))
    return frozenset(event)
