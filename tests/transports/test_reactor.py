"""The shared reader thread (:mod:`ably_bridge.transports.reactor`) and non-blocking sends."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from ably_bridge.transports import reactor as reactor_module
from ably_bridge.transports.reactor import Reactor

WAIT = 5.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def _reader(sock: socket.socket, got: list[bytes], ready: threading.Event) -> None:
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return  # a call for a socket another callback drained: nothing to do
    got.append(data)
    ready.set()


def test_a_readable_socket_calls_its_callback_on_the_reactor_thread(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reactor = Reactor(name="test-reactor")
    a, b = pair
    got: list[bytes] = []
    threads: list[str] = []
    ready = threading.Event()

    def callback() -> None:
        threads.append(threading.current_thread().name)
        _reader(a, got, ready)

    reactor.register(a, callback)
    assert reactor.watched() == 1
    b.sendall(b"hello")
    assert ready.wait(WAIT)
    assert got == [b"hello"] and set(threads) == {"test-reactor"}
    reactor.unregister(a)
    reactor.unregister(a)  # a second time: no error
    assert reactor.watched() == 0


def test_an_unregistered_socket_is_not_read_any_more(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reactor = Reactor()
    a, b = pair
    other_a, other_b = socket.socketpair()
    other_a.setblocking(False)
    first: list[bytes] = []
    other: list[bytes] = []
    first_ready, other_ready = threading.Event(), threading.Event()
    reactor.register(a, lambda: _reader(a, first, first_ready))
    reactor.register(other_a, lambda: _reader(other_a, other, other_ready))
    reactor.unregister(a)
    b.sendall(b"ignored")
    other_b.sendall(b"served")  # the reactor keeps serving the other socket
    assert other_ready.wait(WAIT)
    assert other == [b"served"] and first == []
    assert a.recv(100) == b"ignored"  # still there: nobody read it
    reactor.unregister(other_a)
    other_a.close()
    other_b.close()


def test_a_failing_callback_drops_its_socket_and_the_reactor_goes_on(
    pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    reactor = Reactor()
    a, b = pair
    good_a, good_b = socket.socketpair()
    good_a.setblocking(False)
    calls = []

    def failing() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    got: list[bytes] = []
    ready = threading.Event()
    reactor.register(a, failing)
    b.sendall(b"x")
    reactor.register(good_a, lambda: _reader(good_a, got, ready))
    good_b.sendall(b"y")
    assert ready.wait(WAIT)
    assert got == [b"y"] and calls == [1]  # unregistered after the failure: called once
    assert reactor.watched() == 1
    assert "reactor callback failed" in caplog.text
    reactor.unregister(good_a)
    good_a.close()
    good_b.close()


def test_want_write_calls_back_while_there_is_room_and_keeps_the_reader(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reactor = Reactor(name="test-reactor")
    a, b = pair
    got: list[bytes] = []
    ready = threading.Event()
    reactor.register(a, lambda: _reader(a, got, ready))
    writable = threading.Event()

    def on_room() -> None:
        writable.set()
        reactor.want_write(a, None)  # (level-triggered: stop once served)

    assert reactor.write_waits == 0
    reactor.want_write(a, on_room)
    assert writable.wait(WAIT)
    assert reactor.write_waits == 1  # asked once (stopping is not counted)
    assert reactor.watched() == 1  # the same socket, still watched for reading
    b.sendall(b"after")
    assert ready.wait(WAIT) and got == [b"after"]
    reactor.unregister(a)
    assert reactor.watched() == 0


def test_a_socket_may_be_watched_for_writing_only(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reactor = Reactor(name="test-reactor")
    a, _ = pair
    calls: list[str] = []
    done = threading.Event()

    def on_room() -> None:
        calls.append(threading.current_thread().name)
        reactor.want_write(a, None)
        done.set()

    reactor.want_write(a, on_room)
    assert done.wait(WAIT)
    assert calls == ["test-reactor"]
    assert reactor.watched() == 0  # nothing else asked for: no longer registered


def test_the_process_reactor_is_shared_and_a_forked_child_gets_its_own() -> None:
    shared = reactor_module.shared_reactor()
    assert reactor_module.shared_reactor() is shared
    pid = os.fork()
    if pid == 0:  # the child: check, then leave at once (no pytest teardown here)
        fresh = reactor_module._shared is None
        child = reactor_module.shared_reactor()
        a, b = socket.socketpair()
        a.setblocking(False)
        got: list[bytes] = []
        ready = threading.Event()
        child.register(a, lambda: _reader(a, got, ready))
        b.sendall(b"child")
        ok = fresh and child is not shared and ready.wait(WAIT) and got == [b"child"]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_each_round_runs_inside_the_round_context(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reactor = Reactor()
    events: list[str] = []
    done = threading.Event()

    @contextlib.contextmanager
    def round_context() -> Iterator[None]:
        events.append("enter")
        yield
        events.append("exit")
        if "callback" in events:
            done.set()

    reactor.round_context = round_context
    a, b = pair
    got: list[bytes] = []
    ready = threading.Event()

    def callback() -> None:
        events.append("callback")
        _reader(a, got, ready)

    reactor.register(a, callback)
    b.sendall(b"x")
    assert done.wait(WAIT)
    first = events.index("callback")
    assert events[first - 1] == "enter" and events[first + 1] == "exit"
    reactor.unregister(a)


def test_the_shared_reactor_takes_a_round_context() -> None:
    shared = reactor_module.shared_reactor()
    before = shared.round_context
    try:
        assert reactor_module.shared_reactor(contextlib.nullcontext) is shared
        assert shared.round_context is contextlib.nullcontext
        assert reactor_module.shared_reactor() is shared
        assert shared.round_context is contextlib.nullcontext  # kept when not given
    finally:
        shared.round_context = before
