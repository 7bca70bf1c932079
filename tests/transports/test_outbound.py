"""Outbound: writes that never wait for the peer, a bounded backlog the reactor flushes."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.transports.outbound import Outbound
from ably_bridge.transports.reactor import Reactor
from tests.support.wait import eventually

WAIT = 5.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def reactor() -> Reactor:
    return Reactor(name="test-reactor")


def _drain(sock: socket.socket, size: int, into: bytearray) -> threading.Thread:
    def run() -> None:
        while len(into) < size:
            chunk = sock.recv(65536)
            if not chunk:
                return
            into.extend(chunk)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_writes_return_at_once_and_the_backlog_is_flushed_in_order(
    pair: tuple[socket.socket, socket.socket], reactor: Reactor
) -> None:
    a, b = pair
    errors: list[BaseException] = []
    out = Outbound(a, lambda: reactor, errors.append)
    payload = os.urandom(4 * 1024 * 1024)  # far more than the socket buffers hold
    for i in range(0, len(payload), 65536):
        out.write(payload[i : i + 65536])  # nobody reads yet: none of these may wait
    assert out.backlog > 0
    assert reactor.watched() == 1  # watched for room
    received = bytearray()
    _drain(b, len(payload), received).join(WAIT)
    assert bytes(received) == payload
    # (the reactor trims its backlog just after the peer has the bytes)
    eventually(lambda: out.backlog == 0 and reactor.watched() == 0)  # no longer watched
    assert errors == []


def test_a_backlog_past_the_limit_is_80003_and_names_no_data(
    pair: tuple[socket.socket, socket.socket], reactor: Reactor
) -> None:
    a, _ = pair
    out = Outbound(a, lambda: reactor, lambda exc: None, limit=256 * 1024)
    secret = b"secret-payload-" * 4096

    def write_until_refused() -> None:
        for _ in range(1000):
            out.write(secret)

    with pytest.raises(AblyException) as info:
        write_until_refused()
    assert info.value.code == ErrorCode.CONNECTION_DISCONNECTED
    assert "not draining" in info.value.message and "secret" not in info.value.message
    assert out.backlog <= out.limit
    out.close()
    assert out.backlog == 0 and reactor.watched() == 0
    with pytest.raises(OSError, match="socket closed"):
        out.write(b"after close")


def test_a_flush_that_fails_reports_the_error_and_drops_the_backlog(
    pair: tuple[socket.socket, socket.socket], reactor: Reactor
) -> None:
    a, b = pair
    failed = threading.Event()
    errors: list[BaseException] = []

    def on_error(exc: BaseException) -> None:
        errors.append(exc)
        failed.set()

    out = Outbound(a, lambda: reactor, on_error)
    while out.backlog == 0:
        out.write(b"x" * 65536)
    b.close()  # the peer goes away: the reactor's flush meets the error
    assert failed.wait(WAIT)
    assert isinstance(errors[0], OSError)
    assert out.backlog == 0 and reactor.watched() == 0


class _TlsWantsRead:
    """A socket whose first send needs a read first (as TLS 1.3 may), then takes it all."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.wants_read = True

    def send(self, data: Any) -> int:
        if self.wants_read:
            raise ssl.SSLWantReadError()
        self.sent.extend(data)
        return len(data)


def test_a_send_that_must_read_first_waits_for_the_next_read() -> None:
    sock = _TlsWantsRead()
    asked: list[str] = []

    def no_reactor() -> Reactor:
        asked.append("reactor")
        raise AssertionError("room to write would not help: no reactor watch")

    out = Outbound(sock, no_reactor, lambda exc: None)  # type: ignore[arg-type]
    out.write(b"first")
    out.write(b"second")  # behind the first, in order
    assert out.backlog == len(b"firstsecond") and asked == []
    out.after_read()  # still wants a read: kept
    assert out.backlog == len(b"firstsecond")
    sock.wants_read = False
    out.after_read()
    assert bytes(sock.sent) == b"firstsecond" and out.backlog == 0
    out.after_read()  # nothing held: nothing to do
    assert bytes(sock.sent) == b"firstsecond"
