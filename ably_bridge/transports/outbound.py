"""Writing to a non-blocking socket without ever waiting: a bounded backlog.

This module owns :class:`Outbound`, the write side of a websocket transport
(and :class:`ThreadedOutbound`, its stand-in on the library's public path).
:meth:`Outbound.write` puts what the kernel takes at once on the wire and keeps
the rest, in order, in a backlog that the process's reactor flushes when the
socket has room again (:meth:`~.reactor.Reactor.want_write`). No caller waits
for the peer, which matters because the callers hold a realtime session's lock
(the loop thread performing a ``SendFrame``) or are the reactor itself
(answering a ping): a peer that stops reading - a stalled network path, a
proxy that stopped forwarding - used to block that thread in ``send``, and with
it the session's timers (so RTN23's idle timeout never fired) and, through the
session lock, every other connection the reactor serves.

The backlog is bounded (``limit`` bytes): a write that would take it past the
bound raises :class:`~ably_bridge.errors.AblyException` 80003, the transport
ends, and the protocol core resumes on a new one (RTN15), re-sending the
publishes not acknowledged yet (RTN19a). A write error found while flushing is
reported through ``on_error``.

TLS: a non-blocking ``SSLSocket.send`` may need to *read* first (a TLS 1.3
key update); the backlog then waits for the next read, whose caller calls
:meth:`Outbound.after_read`, rather than for room to write.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.transports.reactor import Reactor

__all__ = ["SEND_BACKLOG_LIMIT", "Outbound", "ThreadedOutbound"]

SEND_BACKLOG_LIMIT = 16 * 1024 * 1024  # bytes queued behind a socket that does not drain
_FLUSH_CHUNK = 256 * 1024  # backlog bytes offered to the socket per send
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantWriteError)


class Outbound:
    """The unsent bytes of one non-blocking socket; see the module docstring."""

    def __init__(
        self,
        sock: socket.socket,
        reactor: Callable[[], Reactor],
        on_error: Callable[[BaseException], None],
        limit: int = SEND_BACKLOG_LIMIT,
    ) -> None:
        self._sock = sock
        self._reactor = reactor  # called when a backlog first needs watching
        self._on_error = on_error
        self.limit = limit
        self._lock = threading.Lock()
        self._backlog = bytearray()
        self._watched: Reactor | None = None  # the reactor watching for room, if any
        self._needs_read = False  # TLS must read before it can write again
        self._closed = False

    @property
    def backlog(self) -> int:
        """Bytes written but not yet taken by the socket."""
        return len(self._backlog)

    def write(self, data: bytes) -> None:
        """Send ``data`` after everything before it; never waits for the peer.

        Raises ``OSError`` when the socket fails, and :class:`AblyException`
        80003 when the backlog would pass ``limit``.
        """
        with self._lock:
            if self._closed:
                raise OSError("socket closed")
            if self._backlog:
                self._queue(data)
                return
            sent = self._send(data)
            if sent < len(data):
                self._queue(data[sent:])
                self._watch()

    def after_read(self) -> None:
        """The socket was read: flush a backlog that TLS held until then."""
        if self._needs_read:
            self._flush()

    def close(self) -> None:
        """Drop the backlog and stop watching (the socket is being closed)."""
        with self._lock:
            self._closed = True
            self._backlog.clear()
            self._unwatch()

    # -- internals -------------------------------------------------------------------
    def _queue(self, data: bytes) -> None:
        if len(self._backlog) + len(data) > self.limit:
            raise AblyException(
                f"outbound data is not draining: {len(self._backlog) + len(data)} bytes "
                f"would be queued (limit {self.limit})",
                ErrorCode.CONNECTION_DISCONNECTED,
                400,
            )
        self._backlog += data

    def _send(self, data: bytes) -> int:
        """Write what the socket takes now; the number of bytes written."""
        view = memoryview(data)
        sent = 0
        self._needs_read = False
        while sent < len(view):
            try:
                n = self._sock.send(view[sent:])
            except _WOULD_BLOCK:
                break
            except ssl.SSLWantReadError:
                self._needs_read = True
                break
            sent += n
        return sent

    def _flush(self) -> None:
        """Write as much of the backlog as the socket takes (the reactor, or after a read)."""
        try:
            with self._lock:
                if self._closed or not self._backlog:
                    return
                while self._backlog:  # a copy of the head: the backlog stays resizable
                    head = bytes(self._backlog[:_FLUSH_CHUNK])
                    sent = self._send(head)
                    del self._backlog[:sent]
                    if sent < len(head):
                        break
                if not self._backlog:
                    self._unwatch()
                elif self._needs_read:
                    self._unwatch()  # room to write will not help: wait for the next read
                else:
                    self._watch()
        except Exception as exc:  # the socket failed: the transport ends
            with self._lock:
                self._closed = True
                self._backlog.clear()
                self._unwatch()
            self._on_error(exc)

    def _watch(self) -> None:
        if self._needs_read or self._watched is not None:
            return
        reactor = self._reactor()
        reactor.want_write(self._sock, self._flush)
        self._watched = reactor

    def _unwatch(self) -> None:
        reactor, self._watched = self._watched, None
        if reactor is not None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                reactor.want_write(self._sock, None)


class ThreadedOutbound:
    """The write side of a websocket used through its library's public ``send``.

    When the ``websocket.raw_socket`` shortcut is off (:mod:`ably_bridge.shortcuts`),
    the transport cannot write the socket itself, and ``WebSocket.send`` blocks
    while the peer does not read. Frames are therefore handed to a writer thread
    of their own, in order, and a caller never waits: as with :class:`Outbound`,
    a write that would take the frames waiting past ``limit`` bytes raises
    :class:`~ably_bridge.errors.AblyException` 80003, and a failed send is
    reported through ``on_error``.
    """

    def __init__(
        self,
        send: Callable[[bytes | str, int], object],
        on_error: Callable[[BaseException], None],
        limit: int = SEND_BACKLOG_LIMIT,
        name: str = "ably-ws-writer",
    ) -> None:
        self._send = send
        self._on_error = on_error
        self.limit = limit
        self._ready = threading.Condition()
        self._frames: deque[tuple[bytes | str, int]] = deque()
        self._waiting = 0  # bytes queued or being sent
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Bytes written but not yet taken by the library's ``send``."""
        return self._waiting

    def write(self, payload: bytes | str, opcode: int) -> None:
        """Queue one frame's payload after everything before it; never waits."""
        size = len(payload)
        with self._ready:
            if self._closed:
                raise OSError("socket closed")
            if self._waiting and self._waiting + size > self.limit:
                raise AblyException(
                    f"outbound data is not draining: {self._waiting + size} bytes "
                    f"would be queued (limit {self.limit})",
                    ErrorCode.CONNECTION_DISCONNECTED,
                    400,
                )
            self._frames.append((payload, opcode))
            self._waiting += size
            self._ready.notify_all()

    def after_read(self) -> None:
        """(Nothing waits for a read here; the library handles TLS.)"""

    def drain(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until what was queued is sent; True if it was."""
        with self._ready:
            return self._ready.wait_for(lambda: self._closed or not self._waiting, timeout)

    def close(self) -> None:
        """Drop what is queued; the thread ends (a send under way ends with the socket)."""
        with self._ready:
            self._closed = True
            self._frames.clear()
            self._waiting = 0
            self._ready.notify_all()

    def _stop(self) -> bool:
        """Close after a failed send; False if it was closed already (nothing to report)."""
        with self._ready:
            was_open = not self._closed
            self._closed = True
            self._frames.clear()
            self._waiting = 0
            self._ready.notify_all()
        return was_open

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._frames and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                payload, opcode = self._frames.popleft()
            try:
                self._send(payload, opcode)
            except Exception as exc:  # the socket failed: the transport ends
                if self._stop():
                    self._on_error(exc)
                return
            with self._ready:
                self._waiting = max(0, self._waiting - len(payload))
                self._ready.notify_all()
