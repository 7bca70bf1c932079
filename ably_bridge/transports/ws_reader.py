"""The realtime transport's reading side: frames from the socket to the session.

This module owns :class:`FrameReading`, the part of
:class:`~.websocket.WebSocketTransport` that drains its connection (the
module docstring of :mod:`.websocket` tells the whole story): on a socket
websocket-client dialed, one ``recv`` of up to 64 KiB per wake-up, parsed by
:class:`~.wsframes.FrameReader` - from the shared reactor's callback
(:meth:`~FrameReading._on_readable`) or on a reader thread of its own that
waits in ``poll``; on the public path (the ``websocket.raw_socket`` shortcut
off) websocket-client's ``recv_frame``, a frame at a time; for any other
websocket object (a custom dialer's) its ``recv_data``. Every path answers
ping with pong and a close frame with a close frame, reassembles fragments,
bounds a frame by ``read_limit`` and hands every data frame of one read on as
one list.
"""

from __future__ import annotations

import enum
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import websocket

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.transports.outbound import Outbound
from ably_bridge.transports.reactor import Reactor
from ably_bridge.transports.wsframes import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    FrameError,
    FrameReader,
)

if TYPE_CHECKING:
    from ably_bridge.transports.websocket import WebSocketLike

__all__ = ["CLOSE_NORMAL", "Frame", "FrameReading", "OnFrames"]

Frame = bytes | str
OnFrames = Callable[[list[Frame]], None]

CLOSE_NORMAL = b"\x03\xe8"  # status 1000
# Bytes asked of the socket per read. Below glibc's mmap threshold (128 KiB) on
# purpose: a larger recv buffer is mmap'd and unmapped on every call, which
# costs more (two page faults) than the whole rest of a small frame's reading.
_READ_SIZE = 64 * 1024
_READS_PER_WAKE = 8  # reads of one socket per reactor call, before the others get a turn


class _Reading(enum.Enum):
    MORE = "more"  # _consume: the connection goes on


_MORE = _Reading.MORE


class FrameReading:
    """Part of :class:`~.websocket.WebSocketTransport` (see the module docstring)."""

    _on_frame: Callable[[Frame], None]
    _on_frames: OnFrames
    _ws: WebSocketLike | None
    _raw: bool
    _closed: bool
    _outbound: Outbound | None
    _sock: socket.socket | None
    _read_ws: WebSocketLike | None
    _reactor: Reactor | None
    _read_done: threading.Event
    _frame_reader: FrameReader
    close_answered: bool
    read_limit: int | None

    if TYPE_CHECKING:  # (defined by WebSocketTransport)

        def _shutdown(self, error: AblyException | None) -> None: ...

        def _translate(self, exc: BaseException, what: str) -> AblyException: ...

        def _send_control(self, ws: WebSocketLike, payload: bytes, opcode: int) -> None: ...

    def _each_frame(self, frames: list[Frame]) -> None:
        for frame in frames:
            self._on_frame(frame)

    def _read_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        error: AblyException | None = None
        try:
            sock = self._raw_socket(ws)
            if sock is not None:
                error = self._read_socket(ws, sock)
            elif isinstance(ws, websocket.WebSocket):
                error = self._read_library(ws)
            else:
                error = self._read_frames(ws)
        except Exception as exc:
            error = self._read_error(exc)
        self._shutdown(error)

    def _raw_socket(self, ws: WebSocketLike) -> socket.socket | None:
        """The socket of a websocket-client connection, when the shortcut may use it."""
        if not self._raw or not isinstance(ws, websocket.WebSocket):
            return None
        return getattr(ws, "sock", None)

    def _read_error(self, exc: Exception) -> AblyException | None:
        """How a read that raised ``exc`` ends the connection (None during a local close)."""
        if self._closed:
            return None
        if isinstance(exc, FrameError):
            return AblyException(str(exc), ErrorCode.CONNECTION_DISCONNECTED, 400)
        return self._translate(exc, "websocket connection lost")

    def _read_socket(self, ws: WebSocketLike, sock: socket.socket) -> AblyException | None:
        """Read a socket websocket-client dialed: many frames per ``recv`` (module docstring).

        The socket is non-blocking (for the writes); this thread waits in ``poll``.
        """
        recv = sock.recv
        consume = self._consume
        outbound = self._outbound
        readable = select.poll()
        readable.register(sock, select.POLLIN)
        while True:
            try:
                chunk = recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                readable.poll()  # a local close shuts the socket down, which ends this
                continue
            except ssl.SSLWantWriteError:  # TLS must write first: wait for room (briefly)
                select.select([], [sock], [], 1.0)
                continue
            if not chunk:
                raise websocket.WebSocketConnectionClosedException("socket closed by the peer")
            end = consume(ws, chunk)
            if end is not _MORE:
                return end
            if outbound is not None:
                outbound.after_read()

    def _on_readable(self) -> None:
        """The reactor's callback: read what the non-blocking socket has, without waiting."""
        sock = self._sock
        ws = self._read_ws  # kept through a local close, which clears self._ws first
        if sock is None or ws is None or self._read_done.is_set():
            if self._reactor is not None and sock is not None:
                self._reactor.unregister(sock)  # level-triggered: never call again
            return
        error: AblyException | None = None
        try:
            reads = 0
            while True:
                try:
                    chunk = sock.recv(_READ_SIZE)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    return  # drained, or half a TLS record: the selector calls again
                if not chunk:
                    raise websocket.WebSocketConnectionClosedException("socket closed by the peer")
                end = self._consume(ws, chunk)
                if end is not _MORE:
                    error = end
                    break
                if self._outbound is not None:
                    self._outbound.after_read()
                reads += 1
                if _tls_pending(sock):
                    continue  # decrypted bytes the selector cannot see: read them now
                if len(chunk) < _READ_SIZE or reads >= _READS_PER_WAKE:
                    return  # drained, or the others' turn: more data calls again
        except Exception as exc:
            error = self._read_error(exc)
        self._read_done.set()
        self._shutdown(error)

    def _consume(self, ws: WebSocketLike, chunk: bytes) -> AblyException | _Reading | None:
        """Hand on the frames in ``chunk``; :data:`_MORE` to read on, else how reading ended.

        Raises :class:`FrameError` (after handing on the frames before the fault).
        """
        fault: FrameError | None = None
        try:
            messages = self._frame_reader.feed(chunk, self.read_limit)
        except FrameError as exc:  # deliver what came before it, then end
            messages, fault = exc.frames, exc
        return self._hand_on(ws, messages, fault)

    def _hand_on(
        self, ws: WebSocketLike, messages: list[tuple[int, bytes]], fault: FrameError | None
    ) -> AblyException | _Reading | None:
        """:meth:`_consume` after the parsing: answer, hand on, or end."""
        frames: list[Frame] = []
        closing = False
        for opcode, payload in messages:
            if opcode == OPCODE_TEXT:
                frames.append(payload.decode("utf-8"))
            elif opcode == OPCODE_BINARY:
                frames.append(payload)
            elif opcode == OPCODE_PING:
                self._send_control(ws, payload, OPCODE_PONG)
            elif opcode == OPCODE_CLOSE:
                closing = True
                break
        if self._closed:  # a local close is under way: wait for the close frame only
            if closing:
                self.close_answered = True
            return None if closing or fault is not None else _MORE
        if frames:
            self._on_frames(frames)
        if fault is not None:
            raise fault
        if closing:
            self._send_control(ws, CLOSE_NORMAL, OPCODE_CLOSE)  # answer (RFC 6455 5.5.1)
            return _closed_by_server()
        return _MORE

    def _read_library(self, ws: websocket.WebSocket) -> AblyException | None:
        """Read a websocket-client connection through its public ``recv_frame``, a frame
        at a time (the ``websocket.raw_socket`` shortcut is off), answering as
        :meth:`_consume` does: the same frames go out either way."""
        assemble = self._frame_reader.assemble
        while True:
            got = ws.recv_frame()  # type: ignore[no-untyped-call]
            messages = assemble(got.opcode, bool(got.fin), bytes(got.data), self.read_limit)
            end = self._hand_on(ws, messages, None)
            if end is not _MORE:
                return end

    def _read_frames(self, ws: WebSocketLike) -> AblyException | None:
        """Read any other websocket object (a custom dialer's) a frame at a time."""
        while not self._closed:
            opcode, data = ws.recv_data()
            limit = self.read_limit
            if limit is not None and len(data) > limit:
                raise FrameError(
                    f"inbound frame of {len(data)} bytes exceeds the read limit of {limit}"
                )
            if opcode == OPCODE_TEXT:
                self._on_frames([data.decode("utf-8") if isinstance(data, bytes) else data])
            elif opcode == OPCODE_BINARY:
                self._on_frames([bytes(data)])
            elif opcode == OPCODE_CLOSE:
                return _closed_by_server()
        return None


def _tls_pending(sock: socket.socket) -> int:
    # Decrypted bytes a TLS socket holds beyond the last read (the selector cannot see them).
    pending = getattr(sock, "pending", None)
    return int(pending()) if pending is not None else 0


def _closed_by_server() -> AblyException:
    return AblyException("websocket closed by the server", ErrorCode.CONNECTION_DISCONNECTED, 400)
