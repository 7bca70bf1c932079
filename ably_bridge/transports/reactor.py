"""The shared reader: one thread that waits on every websocket of the process.

A :class:`Reactor` owns a selector (epoll on Linux) and one daemon thread. A
transport registers its socket with a callback; when the socket has data, the
reactor thread calls the callback, which reads what is there without blocking
(the socket is non-blocking) and returns. Fifty connections then cost one
waiting thread instead of fifty: a message wakes that one thread, and when
several sockets have data one wake-up serves them all, where fifty reader
threads each woke on their own and competed for the GIL.

Callbacks run one after the other, so each must be quick: it reads a bounded
amount, hands the frames on and returns; it never waits for anything but the
session lock of its client (:mod:`ably_bridge.realtime.loop`). An exception in
a callback is logged and its socket unregistered; the reactor goes on.

Writes: :meth:`Reactor.want_write` asks for a second callback when a socket
has room in its kernel buffer, for a transport holding a backlog
(:mod:`.outbound`); a socket read by a thread of its own may be watched for
writing only. :attr:`Reactor.write_waits` counts those requests: how often a
write found a peer not keeping up (diagnostics and tests).

``register``, ``want_write`` and ``unregister`` may be called from any thread.
A callback may still run once for a socket unregistered while the reactor was
collecting events; callbacks check that their transport is still open.

There is one reactor per process (:func:`shared_reactor`), started with the
first registration; a child made by ``fork`` starts its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import NamedTuple

__all__ = ["Reactor", "shared_reactor"]

log = logging.getLogger(__name__)

Callback = Callable[[], None]
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class _Handlers(NamedTuple):
    """What a watched socket calls: on data to read, on room to write."""

    read: Callback | None
    write: Callback | None


class Reactor:
    """A selector and the thread that serves it; see the module docstring."""

    def __init__(self, name: str = "ably-reactor") -> None:
        self._name = name
        # Entered around each round (one wait and the callbacks it calls for);
        # the realtime client sets it to defer callback-pool wake-ups to the end
        # of the round (ably_bridge.realtime.callback_pool.deferred_wakes).
        self.round_context: Callable[[], AbstractContextManager[None]] | None = None
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.write_waits = 0  # want_write calls with a callback: backlogs waiting for room
        # A socket pair to wake the selector, for selectors that do not see
        # registrations made while they wait (epoll does; others may not).
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)

    def register(self, sock: socket.socket, callback: Callback) -> None:
        """Call ``callback()`` on the reactor thread whenever ``sock`` is readable."""
        self._set(sock, callback, reading=True)

    def want_write(self, sock: socket.socket, callback: Callback | None) -> None:
        """Call ``callback()`` whenever ``sock`` has room to write (None: stop)."""
        self._set(sock, callback, reading=False)

    def unregister(self, sock: socket.socket) -> None:
        """Stop watching ``sock`` (before it is closed); a no-op if it is not registered."""
        with self._lock, contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(sock)

    def _set(self, sock: socket.socket, callback: Callback | None, *, reading: bool) -> None:
        with self._lock:
            try:
                key = self._selector.get_key(sock)
            except KeyError:
                handlers = _Handlers(None, None)
            else:
                handlers = key.data
            if reading:
                handlers = _Handlers(callback, handlers.write)
            else:
                handlers = _Handlers(handlers.read, callback)
                if callback is not None:
                    self.write_waits += 1
            events = (selectors.EVENT_READ if handlers.read is not None else 0) | (
                selectors.EVENT_WRITE if handlers.write is not None else 0
            )
            if not events:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(sock)
                return
            try:
                self._selector.modify(sock, events, handlers)
            except KeyError:
                self._selector.register(sock, events, handlers)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            self._wake_w.send(b"\0")

    def on_reactor_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def watched(self) -> int:
        """Sockets registered now (the wake-up socket not counted)."""
        return len(self._selector.get_map()) - 1

    def _run(self) -> None:
        select = self._selector.select
        while True:
            hook = self.round_context
            with hook() if hook is not None else contextlib.nullcontext():
                for key, events in select():
                    handlers = key.data
                    if handlers is None:
                        self._drain_wakes()
                        continue
                    try:
                        if events & _WRITE and handlers.write is not None:
                            handlers.write()
                        if events & _READ and handlers.read is not None:
                            handlers.read()
                    except Exception:  # transports handle their own errors; this is a bug
                        log.exception("a reactor callback failed; its socket is dropped")
                        self.unregister(key.fileobj)  # type: ignore[arg-type]

    def _drain_wakes(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass


_shared: Reactor | None = None
_shared_lock = threading.Lock()


def shared_reactor(
    round_context: Callable[[], AbstractContextManager[None]] | None = None,
) -> Reactor:
    """The process's reactor, created on first use (with ``round_context``, if given)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Reactor()
        if round_context is not None:
            _shared.round_context = round_context
        return _shared


def _forget_in_child() -> None:
    # A forked child inherits the selector's file descriptor (shared with the
    # parent's epoll) but not its thread: it must start from a fresh reactor.
    global _shared, _shared_lock
    _shared = None
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
