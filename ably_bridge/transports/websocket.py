"""The realtime transport: one WebSocket, and the reader thread that drains it.

This is the only module that touches ``websocket-client``. A
:class:`WebSocketTransport` dials a URL, then runs one daemon reader thread that
hands every data frame (``str`` for JSON, ``bytes`` for msgpack) to
``on_frame`` and reports the end of the connection exactly once through
``on_close``. Sending is thread-safe. Timeouts and errors from the library are
translated here, once, into :class:`~ably_bridge.errors.AblyException` with
Ably's connection codes (80000 connection failed, 80003 disconnected).

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
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import websocket

from ably_bridge.errors import AblyException, ErrorCode

__all__ = ["Frame", "WebSocketLike", "WebSocketTransport", "redact_url"]

log = logging.getLogger(__name__)

Frame = bytes | str

_OPCODE_TEXT = websocket.ABNF.OPCODE_TEXT
_OPCODE_BINARY = websocket.ABNF.OPCODE_BINARY
_OPCODE_CLOSE = websocket.ABNF.OPCODE_CLOSE

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


class WebSocketTransport:
    """A websocket connection with a reader thread; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        on_frame: Callable[[Frame], None],
        on_close: Callable[[AblyException | None], None],
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        dialer: Dialer | None = None,
        name: str = "ably-ws",
        read_limit: int | None = None,
    ) -> None:
        self._url = url
        self._headers = dict(headers or {})
        self._on_frame = on_frame
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
        self._reader = threading.Thread(target=self._read_loop, name=self._name, daemon=True)
        self._reader.start()

    def send(self, frame: Frame) -> None:
        """Send one frame (text for ``str``, binary for ``bytes``); thread-safe."""
        ws = self._ws
        if ws is None or self._closed:
            raise AblyException("transport is not open", ErrorCode.CONNECTION_DISCONNECTED, 400)
        opcode = _OPCODE_TEXT if isinstance(frame, str) else _OPCODE_BINARY
        try:
            with self._send_lock:
                ws.send(frame, opcode)
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
        """Wait for the reader thread to finish (tests and orderly shutdown)."""
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)

    # -- internals ------------------------------------------------------------
    def _read_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        error: AblyException | None = None
        try:
            while not self._closed:
                opcode, data = ws.recv_data()
                limit = self.read_limit
                if limit is not None and len(data) > limit:
                    error = AblyException(
                        f"inbound frame of {len(data)} bytes exceeds the read limit of {limit}",
                        ErrorCode.CONNECTION_DISCONNECTED,
                        400,
                    )
                    break
                if opcode == _OPCODE_TEXT:
                    self._on_frame(data.decode("utf-8") if isinstance(data, bytes) else data)
                elif opcode == _OPCODE_BINARY:
                    self._on_frame(bytes(data))
                elif opcode == _OPCODE_CLOSE:
                    error = AblyException(
                        "websocket closed by the server", ErrorCode.CONNECTION_DISCONNECTED, 400
                    )
                    break
        except Exception as exc:
            if not self._closed:
                error = self._translate(exc, "websocket connection lost")
        self._shutdown(error)

    def _shutdown(self, error: AblyException | None) -> None:
        with self._state_lock:
            self._closed = True
            ws, self._ws = self._ws, None
            report = not self._close_reported
            self._close_reported = True
        if ws is not None:
            _quiet_close(ws)
        if report:
            if error is not None:
                log.debug("transport to %s ended: %s", redact_url(self._url), error.message)
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
        # The library's messages can echo the URL; keep only the exception kind.
        return AblyException(f"{what} ({kind})", code, 400)

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"WebSocketTransport({redact_url(self._url)}, {state})"


def _quiet_close(ws: WebSocketLike) -> None:
    # Closing a broken socket may fail; there is nothing left to do then.
    with contextlib.suppress(Exception):
        ws.close()
