"""A small, bounded HTTP/1.0 server for the bridge's operations endpoints (GET and HEAD).

This module owns :class:`EndpointServer`: whoever can reach the port must not
be able to tie up the process, fill its log, or keep a probe from answering.

* **One event-loop thread** accepts connections and reads requests without
  blocking, so a slow or idle client costs a socket, not a thread. At most
  ``max_connections`` wait for their request at once; past that the oldest
  waiting one is closed for the new one (counted in :attr:`EndpointStats.evicted`),
  so a flood of idle connections cannot lock a prober out.
* **Header timeout**: a request line and headers must arrive within
  ``header_timeout`` seconds of the connection (slowloris, idle connections) and
  fit in :data:`MAX_HEADER_BYTES` (else 431). A body is never read (GET, HEAD).
* **A bounded thread pool** (``workers`` threads) runs the handler and writes the
  answer; at most ``queue`` complete requests wait or run, past that the answer
  is ``503`` at once. Writing has its own deadline (``write_timeout``), so a
  client that does not read cannot hold a worker either.
* **Quiet about clients**: a client that hangs up, resets or times out is a
  DEBUG line without a traceback (counted in :attr:`EndpointStats`); only a
  handler's own failure is an error (answered 500).
* Every answer closes the connection (``Connection: close``): no keep-alive, so
  no idle timeout beyond the header timeout is needed.

The handler takes a :class:`Request` (method, path without its query string,
the raw query string, the header fields with lower-case names) and returns a
:class:`Response` or a ``(status, body, content type)`` tuple. The server may
listen on several addresses at once (e.g. loopback and a pod IP), all on the
same port.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus

__all__ = [
    "MAX_HEADER_BYTES",
    "EndpointServer",
    "EndpointStats",
    "Handler",
    "Request",
    "Response",
    "bind_address",
]

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the handler sees it (the body is never read)."""

    method: str
    path: str  # without the query string
    query: str = ""  # the raw query string (after "?"), percent-encoded
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: status, body, content type and extra header fields."""

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response | tuple[int, bytes, str]]


@dataclass
class EndpointStats:
    """What the server refused or lost, by cause (read them for tests and debugging)."""

    served: int = 0
    evicted: int = 0  # the oldest pending connection, closed for a new one past the cap
    busy: int = 0  # over the queue: answered 503
    timeouts: int = 0  # headers too slow, or a client that would not read
    hangups: int = 0  # closed or reset by the client
    bad_requests: int = 0  # 400, 405, 431


@dataclass
class _Conn:
    sock: socket.socket
    deadline: float
    buf: bytearray


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    family, address = bind_address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(min(backlog, socket.SOMAXCONN))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def bind_address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    """The socket family and address to bind ``host`` (a name, IPv4 or [IPv6]) and ``port``."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    family, _, _, _, address = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)[0]
    return family, address


class EndpointServer:
    """Serves ``handler`` on ``host:port`` (see the module docstring)."""

    def __init__(
        self,
        host: str | Sequence[str],
        port: int,
        handler: Handler,
        *,
        name: str = "ably-bridge-http",
        workers: int = 4,
        queue: int = 16,
        max_connections: int = 128,
        header_timeout: float = 5.0,
        write_timeout: float = 10.0,
    ) -> None:
        self._listeners: list[socket.socket] = []
        try:
            for one in [host] if isinstance(host, str) else host:
                self._listeners.append(_listen(one, port, max_connections))
                port = port or self._listeners[0].getsockname()[1]  # port 0: the same one
        except OSError:
            for sock in self._listeners:
                sock.close()
            raise
        if not self._listeners:
            raise ValueError("no address to listen on")
        self._handler = handler
        self._name = name
        self._max_connections = max_connections
        self._header_timeout = header_timeout
        self._write_timeout = write_timeout
        self._slots = threading.BoundedSemaphore(queue)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._conns: dict[socket.socket, _Conn] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.stats = EndpointStats()

    @property
    def address(self) -> tuple[str, int]:
        """The first address listened on."""
        return self.addresses[0]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every address listened on (host, port)."""
        return [(str(a[0]), int(a[1])) for a in (s.getsockname() for s in self._listeners)]

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            for listener in self._listeners:
                self._selector.register(listener, selectors.EVENT_READ)
            self._selector.register(self._wake_r, selectors.EVENT_READ)
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        for conn in list(self._conns.values()):
            conn.sock.close()
        self._conns.clear()
        self._selector.close()
        for sock in (*self._listeners, self._wake_r, self._wake_w):
            sock.close()

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self.stats, what, getattr(self.stats, what) + 1)

    # -- the event loop ------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            soonest = min((c.deadline for c in self._conns.values()), default=now + 1.0)
            for key, _ in self._selector.select(max(0.0, soonest - now)):
                if key.fileobj in self._listeners:
                    self._accept(key.fileobj)
                elif key.fileobj is self._wake_r:
                    self._wake_r.recv(64)
                else:
                    # An accept earlier in this round may have evicted (and closed) this
                    # connection: its stale event is skipped, not a KeyError in this thread.
                    conn = self._conns.get(key.fileobj)  # type: ignore[call-overload]
                    if conn is not None:
                        self._read(conn)
            self._expire(time.monotonic())

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, ...: try again next round
                logger.warning("%s: accept failed: %s", self._name, exc)
                return
            if len(self._conns) >= self._max_connections:
                # Full of clients that have sent no complete request: drop the oldest,
                # so a flood of idle connections delays a prober by one round, no more.
                oldest = min(self._conns.values(), key=lambda c: c.deadline)
                self._count("evicted")
                self._forget(oldest)
                oldest.sock.close()
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic() + self._header_timeout, bytearray())
            self._conns[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ)

    def _forget(self, conn: _Conn) -> None:
        self._selector.unregister(conn.sock)
        del self._conns[conn.sock]

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            self._count("timeouts")
            logger.debug("%s: a client sent no complete request in time", self._name)
            self._forget(conn)
            conn.sock.close()

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._count("hangups")
            self._forget(conn)
            conn.sock.close()
            return
        conn.buf += data
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            end = conn.buf.find(b"\n\n")
        if end >= 0 or len(conn.buf) > MAX_HEADER_BYTES:
            self._forget(conn)
            self._dispatch(
                conn.sock, bytes(conn.buf[:end]) if 0 <= end <= MAX_HEADER_BYTES else None
            )

    def _dispatch(self, sock: socket.socket, head: bytes | None) -> None:
        """Answer a complete request head (None: too large) or hand it to a worker."""
        request = self._parse(head) if head is not None else None
        if head is None:
            self._reject(sock, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        elif request is None:
            self._reject(sock, HTTPStatus.BAD_REQUEST)
        elif request.method not in ("GET", "HEAD"):
            self._reject(sock, HTTPStatus.METHOD_NOT_ALLOWED)
        elif not self._slots.acquire(blocking=False):
            self._count("busy")
            self._answer_now(sock, HTTPStatus.SERVICE_UNAVAILABLE, b'{"error":"busy"}')
        else:
            try:
                self._pool.submit(self._serve, sock, request)
            except RuntimeError:  # shutting down
                self._slots.release()
                sock.close()

    @staticmethod
    def _parse(head: bytes) -> Request | None:
        """The request line and header fields (a field that is not ASCII is left out)."""
        lines = head.split(b"\n")
        try:
            line = lines[0].decode("ascii").strip()
        except UnicodeDecodeError:
            return None
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/") or not parts[1].startswith("/"):
            return None
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            name, sep, value = raw.partition(b":")
            if not sep or not name.strip():
                continue
            try:
                headers[name.strip().decode("ascii").lower()] = value.strip().decode("ascii")
            except UnicodeDecodeError:
                continue
        path, _, query = parts[1].partition("?")
        return Request(parts[0], path, query, headers)

    def _reject(self, sock: socket.socket, status: HTTPStatus) -> None:
        self._count("bad_requests")
        self._answer_now(sock, status, f'{{"error":"{status.phrase.lower()}"}}'.encode())

    def _answer_now(self, sock: socket.socket, status: HTTPStatus, body: bytes) -> None:
        """A small answer from the loop thread: one non-blocking send, then close."""
        with contextlib.suppress(OSError):
            sock.send(_response(int(status), body, "application/json", head_only=False))
        sock.close()

    # -- workers ------------------------------------------------------------------------
    def _serve(self, sock: socket.socket, request: Request) -> None:
        try:
            try:
                answer = self._handler(request)
                if not isinstance(answer, Response):
                    answer = Response(*answer)
            except Exception:  # the handler's own bug: logged, answered 500, server lives on
                logger.exception("%s: %s %s failed", self._name, request.method, request.path)
                answer = Response(500, b'{"error":"internal"}', "application/json")
            self._send_all(
                sock,
                _response(
                    answer.status, answer.body, answer.content_type,
                    head_only=request.method == "HEAD", extra=answer.headers,
                ),
            )  # fmt: skip
            self._count("served")
        except TimeoutError:
            self._count("timeouts")
            logger.debug("%s: a client did not read its answer in time", self._name)
        except OSError as exc:
            self._count("hangups")
            logger.debug("%s: the client hung up (%s)", self._name, errno.errorcode.get(
                exc.errno or 0, type(exc).__name__))  # fmt: skip
        finally:
            sock.close()
            self._slots.release()

    def _send_all(self, sock: socket.socket, data: bytes) -> None:
        deadline = time.monotonic() + self._write_timeout
        view = memoryview(data)
        sock.setblocking(True)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            sent = sock.send(view)
            view = view[sent:]


def _response(
    status: int,
    body: bytes,
    content_type: str,
    *,
    head_only: bool,
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
    fields = "".join(f"{name}: {value}\r\n" for name, value in extra)
    head = (
        f"HTTP/1.0 {status} {phrase}\r\n"
        f"Server: ably-bridge\r\n"
        f"{fields}"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + body
