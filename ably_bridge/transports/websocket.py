"""The realtime transport: one WebSocket, and the reading that drains it.

This is the only module that touches ``websocket-client``. A
:class:`WebSocketTransport` dials a URL, then has its socket read - by the
process's shared reader thread (a :class:`~.reactor.Reactor`, given
``reactor=``) or by a daemon reader thread of its own - and hands every data
frame (``str`` for JSON, ``bytes`` for msgpack) to ``on_frame`` - or, given
``on_frames``, every frame of one socket read as one list - and reports the end
of the connection exactly once through ``on_close``. Sending is thread-safe.
Timeouts and errors from the library are translated here, once, into
:class:`~ably_bridge.errors.AblyException` with Ably's connection codes (80000
connection failed, 80003 disconnected).

Reading (:class:`~.ws_reader.FrameReading`, in :mod:`.ws_reader`):
``websocket-client`` dials and handshakes, but on a socket it dialed the
reading is ours, which parses frames itself (:class:`~.wsframes.FrameReader`,
RFC 6455 section 5): one ``recv`` of up to 64 KiB per wake-up instead of two or
three small ones per frame, each of which gives up and retakes the GIL. With
many connections in one process that is most of the reader's cost. Ping is
answered with pong, fragments are reassembled, a close frame is answered and
ends the connection. A local :meth:`~WebSocketTransport.close` sends a close
frame and lets the reader see the server's reply (3 s at most) before the
socket is shut.
Other objects (a custom dialer's) are read through their ``recv_data``, always
by a thread of their own. Reading and writing ``WebSocket.sock`` is the
``websocket.raw_socket`` shortcut (:mod:`ably_bridge.shortcuts`): when it is
off, a websocket-client socket is used through its public API - ``recv_frame``
on a reader thread of its own (answered as above), ``send`` on a writer thread
(:class:`~.outbound.ThreadedOutbound`, with the same bound) - and the same
frames go out.

The socket is non-blocking. With a reactor, the reactor calls
:meth:`~WebSocketTransport._on_readable` when data is there, which reads until
the socket is drained (or a TLS record is incomplete) and returns; a reader
thread of its own waits in ``poll`` between reads. Frames are written through
an :class:`~.outbound.Outbound`, which never waits for the peer: what the
kernel does not take at once is kept, in order, and flushed by the reactor when
the socket has room (a peer that stops reading ends the transport with 80003
once the backlog passes its bound, instead of blocking the session's thread).

``read_limit`` (settable at any time) bounds the size of an inbound frame, like
ably-go's ``SetReadLimit``: a larger frame ends the connection with 80003.

Liveness (RTN23) is not judged here: the protocol core owns the idle deadline
and the driver calls :meth:`close` when it passes.

A custom dialer (``ClientOptions.websocket_dialer``) can replace the real
library, e.g. for a test double: ``dialer(url, headers=..., timeout=...)`` must
return an object with ``send(data, opcode)``, ``recv_data() -> (opcode, data)``
and ``close()``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import websocket

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.shortcuts import enabled as shortcut_enabled
from ably_bridge.transports.failures import describe_failure, origin_of
from ably_bridge.transports.outbound import SEND_BACKLOG_LIMIT, Outbound, ThreadedOutbound
from ably_bridge.transports.reactor import Reactor, shared_reactor
from ably_bridge.transports.ws_reader import CLOSE_NORMAL, Frame, FrameReading, OnFrames
from ably_bridge.transports.wsframes import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_TEXT,
    FrameReader,
)

__all__ = ["Frame", "WebSocketLike", "WebSocketTransport", "redact_url"]

_module_log = logging.getLogger(__name__)


_CLOSE_TIMEOUT = 3.0  # seconds a local close waits for the server's close frame
_DRAIN_TIMEOUT = 1.0  # seconds the public path's writer gets to send what is queued at the end

_SECRET_PARAMS = ("key", "accessToken", "access_token", "resume", "recover")


class WebSocketLike(Protocol):
    """What the transport needs from a websocket object."""

    def send(self, payload: bytes | str, opcode: int = ...) -> int: ...

    def recv_data(self, control_frame: bool = ...) -> tuple[int, Any]: ...

    def close(self, status: int = ..., reason: bytes = ..., timeout: float = ...) -> None: ...


Dialer = Callable[..., WebSocketLike]


def redact_url(url: str) -> str:
    """The URL with credential and connection-key parameters replaced by ``<redacted>``."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    shown = []
    for pair in parts.query.split("&"):
        name, _, _value = pair.partition("=")
        shown.append(f"{name}=<redacted>" if name in _SECRET_PARAMS else pair)
    return parts._replace(query="&".join(shown)).geturl()


def _default_dialer(url: str, *, headers: Mapping[str, str], timeout: float) -> WebSocketLike:
    ws = websocket.create_connection(
        url,
        timeout=timeout,
        header=[f"{name}: {value}" for name, value in headers.items()],
        enable_multithread=True,
        skip_utf8_validation=True,  # JSON frames are validated by the codec
    )
    ws.settimeout(None)  # reads block; the core's idle deadline decides liveness
    return ws


class WebSocketTransport(FrameReading):
    """A websocket connection with a reader thread; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        on_frame: Callable[[Frame], None],
        on_close: Callable[[AblyException | None], None],
        on_frames: OnFrames | None = None,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        dialer: Dialer | None = None,
        name: str = "ably-ws",
        read_limit: int | None = None,
        reactor: Reactor | None = None,
        send_limit: int = SEND_BACKLOG_LIMIT,
        log: logging.Logger | None = None,
    ) -> None:
        self._url = url
        self._log = log or _module_log  # the owning client's logger
        self._headers = dict(headers or {})
        self._on_frame = on_frame
        # Every frame of one socket read at once (one hand-over to the loop thread).
        self._on_frames: OnFrames = on_frames or self._each_frame
        self._on_close = on_close
        self._connect_timeout = connect_timeout
        self._dialer: Dialer = dialer or _default_dialer
        self._name = name
        self._ws: WebSocketLike | None = None
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._closed = False
        self._close_reported = False
        self._reader: threading.Thread | None = None
        self._reactor = reactor
        self._sock: socket.socket | None = None  # set when the reactor reads it
        self._outbound: Outbound | None = None  # the write side of a socket we dialed
        self._writer: ThreadedOutbound | None = None  # the same, on the public path
        self._raw = shortcut_enabled("websocket.raw_socket")
        self._send_limit = send_limit
        self._read_ws: WebSocketLike | None = None  # the websocket the reactor reads
        self.close_answered = False  # a local close saw the server's close frame
        self._frame_reader = FrameReader()
        self._read_done = threading.Event()  # the reactor has stopped reading this socket
        # Largest inbound frame accepted (bytes); a bigger one ends the transport.
        self.read_limit = read_limit

    # -- lifecycle ------------------------------------------------------------
    def open(self) -> None:
        """Dial (blocking, up to ``connect_timeout``) and start the reader thread."""
        try:
            ws = self._dialer(self._url, headers=self._headers, timeout=self._connect_timeout)
        except Exception as exc:
            raise self._translate(exc, "unable to open websocket") from exc
        with self._state_lock:
            if self._closed:
                _quiet_close(ws)
                raise AblyException(
                    "transport closed while connecting", ErrorCode.CONNECTION_FAILED, 400
                )
            self._ws = ws
            sock = self._raw_socket(ws)
            if sock is None and isinstance(ws, websocket.WebSocket):
                self._writer = ThreadedOutbound(
                    ws.send, self._write_failed, self._send_limit, self._name + "-writer"
                )
            if sock is not None:
                # Writes never wait for the peer (module docstring), nor do the
                # reactor's reads: the socket is non-blocking.
                sock.setblocking(False)
                self._outbound = Outbound(
                    sock, self._write_reactor, self._write_failed, self._send_limit
                )
            if self._reactor is not None and sock is not None:
                self._sock = sock
                self._read_ws = ws
                self._reactor.register(sock, self._on_readable)
                return
        self._reader = threading.Thread(target=self._read_loop, name=self._name, daemon=True)
        self._reader.start()

    def send(self, frame: Frame) -> None:
        """Send one frame (text for ``str``, binary for ``bytes``); thread-safe."""
        ws = self._ws
        if ws is None or self._closed:
            raise AblyException("transport is not open", ErrorCode.CONNECTION_DISCONNECTED, 400)
        opcode = OPCODE_TEXT if isinstance(frame, str) else OPCODE_BINARY
        try:
            self._write(ws, frame, opcode)
        except Exception as exc:
            error = self._translate(exc, "websocket send failed")
            self._shutdown(error)
            raise error from exc

    def close(self) -> None:
        """Close the socket; the reader thread ends and ``on_close(None)`` is reported."""
        self._shutdown(None)

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self._closed

    def join(self, timeout: float | None = None) -> None:
        """Wait for reading to end (tests and orderly shutdown)."""
        if self._sock is not None:
            self._read_done.wait(timeout)
            return
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)

    # -- internals ------------------------------------------------------------
    def _send_control(self, ws: WebSocketLike, payload: bytes, opcode: int) -> None:
        # A control frame from the reader; a failure shows up as a read error.
        with contextlib.suppress(Exception):
            self._write(ws, payload, opcode)

    def _write(self, ws: WebSocketLike, payload: Frame, opcode: int) -> None:
        """One frame out: through the backlog of a socket we dialed, else the object's send."""
        outbound = self._outbound
        if outbound is not None:
            outbound.write(websocket.ABNF.create_frame(payload, opcode).format())
        elif self._writer is not None:
            self._writer.write(payload, opcode)
        else:
            with self._send_lock:  # (a custom dialer's object may not be thread-safe)
                ws.send(payload, opcode)

    def _drop_outbound(self) -> None:
        # Before the descriptor is closed: a backlog's watch must not outlive it.
        if self._outbound is not None:
            self._outbound.close()
        if self._writer is not None:
            self._writer.close()

    def _write_reactor(self) -> Reactor:
        # The reactor that flushes a backlog: the one reading us, else the process's.
        return self._reactor or shared_reactor()

    def _write_failed(self, exc: BaseException) -> None:
        # Flushing a backlog failed (on the reactor thread): the connection is over.
        self._shutdown(None if self._closed else self._translate(exc, "websocket send failed"))

    def _shutdown(self, error: AblyException | None) -> None:
        with self._state_lock:
            self._closed = True
            ws, self._ws = self._ws, None
            report = not self._close_reported
            self._close_reported = True
        sock = self._sock
        reactor = self._reactor
        if sock is not None and reactor is not None and isinstance(ws, websocket.WebSocket):
            if error is None and not reactor.on_reactor_thread():
                # A local close: send ours, let the reactor see the server's (RFC 6455 7.1.2).
                self._send_control(ws, CLOSE_NORMAL, OPCODE_CLOSE)
                self._read_done.wait(_CLOSE_TIMEOUT)
            self._read_done.set()
            reactor.unregister(sock)  # before the descriptor is closed (and reused)
            self._drop_outbound()
            _abort(ws)
        elif isinstance(ws, websocket.WebSocket):  # read by _read_socket
            reader = self._reader
            if error is None and reader is not None and reader is not threading.current_thread():
                # A local close: send ours, let the reader see the server's (RFC 6455 7.1.2).
                self._send_control(ws, CLOSE_NORMAL, OPCODE_CLOSE)
                reader.join(_CLOSE_TIMEOUT)
            if self._writer is not None:  # (a close frame just answered is still queued)
                self._writer.drain(_DRAIN_TIMEOUT)
            self._drop_outbound()
            _abort(ws, raw=self._raw)
        elif ws is not None:
            _quiet_close(ws)
        if report:
            if error is not None:
                self._log.debug("transport to %s ended: %s", redact_url(self._url), error.message)
            self._on_close(error)

    def _translate(self, exc: BaseException, what: str) -> AblyException:
        if isinstance(exc, AblyException):
            return exc
        if isinstance(exc, websocket.WebSocketBadStatusException):
            status = int(getattr(exc, "status_code", 0) or 0)
            return AblyException(
                f"{what}: HTTP {status} from {redact_url(self._url)}",
                ErrorCode.CONNECTION_FAILED,
                status or 400,
                cause=None,
            )
        code = (
            ErrorCode.CONNECTION_DISCONNECTED
            if self._ws is not None
            else ErrorCode.CONNECTION_FAILED
        )
        kind = exc.__class__.__name__
        if isinstance(exc, websocket.WebSocketTimeoutException | TimeoutError):
            code = ErrorCode.CONNECTION_TIMED_OUT
        if self._ws is None:  # dialing: say where to, and the likely cause
            where = origin_of(self._url)
            return AblyException(f"{what} to {where}: {describe_failure(exc)}", code, 400)
        # The library's messages can echo the URL; keep only the exception kind.
        return AblyException(f"{what} ({kind})", code, 400)

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"WebSocketTransport({redact_url(self._url)}, {state})"


def _abort(ws: websocket.WebSocket, *, raw: bool = True) -> None:
    # Shut the socket down first: that wakes a reader blocked in recv (close alone does not).
    # (On the public path through a duplicate of its descriptor: the same connection.)
    with contextlib.suppress(Exception):
        if raw:
            sock = ws.sock
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        else:
            with socket.fromfd(_fileno(ws), socket.AF_INET, socket.SOCK_STREAM) as dup:
                dup.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        ws.shutdown()  # type: ignore[no-untyped-call]  # closes the socket


def _fileno(ws: websocket.WebSocket) -> int:
    return int(ws.fileno())  # type: ignore[no-untyped-call]


def _quiet_close(ws: WebSocketLike) -> None:
    # Closing a broken socket may fail; there is nothing left to do then.
    with contextlib.suppress(Exception):
        ws.close()
