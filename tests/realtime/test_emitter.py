"""Listener ordering and isolation in the realtime event emitter."""

from __future__ import annotations

import threading

import pytest

from ably_bridge.realtime.emitter import CallbackPool, EventEmitter
from tests.support.wait import eventually


def test_one_listener_sees_events_in_order_one_at_a_time(dispatcher: CallbackPool) -> None:
    emitter: EventEmitter[int] = EventEmitter(dispatcher)
    seen: list[int] = []
    active = threading.Semaphore(1)
    overlap: list[bool] = []

    def listener(n: int) -> None:
        if not active.acquire(blocking=False):
            overlap.append(True)
            return
        seen.append(n)
        active.release()

    emitter.on("message", listener)
    for n in range(1000):
        emitter.emit("message", n)
    eventually(lambda: len(seen) == 1000)
    assert seen == list(range(1000))
    assert overlap == []


def test_slow_listener_does_not_block_others_or_the_emitter(
    dispatcher: CallbackPool,
) -> None:
    emitter: EventEmitter[str] = EventEmitter(dispatcher)
    release = threading.Event()
    fast: list[str] = []
    emitter.on("x", lambda _p: release.wait(5))
    emitter.on("x", fast.append)
    emitter.emit("x", "a")  # returns at once although the first listener blocks
    emitter.emit("x", "b")
    eventually(lambda: fast == ["a", "b"])
    release.set()


def test_event_filters_all_events_once_and_off(dispatcher: CallbackPool) -> None:
    emitter: EventEmitter[str] = EventEmitter(dispatcher)
    only_a: list[str] = []
    a_or_b: list[str] = []
    everything: list[str] = []
    first: list[str] = []
    emitter.on("a", only_a.append)
    emitter.on(["a", "b"], a_or_b.append)
    emitter.on(None, everything.append)
    emitter.once("b", first.append)
    for event in ("a", "b", "c", "b"):
        emitter.emit(event, event)
    eventually(lambda: len(everything) == 4)
    eventually(lambda: len(a_or_b) == 3)
    assert only_a == ["a"]
    assert a_or_b == ["a", "b", "b"]
    assert first == ["b"]
    emitter.off("a")
    assert emitter.listener_count("a") == 1  # the all-events listener remains
    emitter.off(listener=everything.append)
    assert emitter.listener_count() == 1
    emitter.off()
    assert emitter.listener_count() == 0


def test_off_with_several_events(dispatcher: CallbackPool) -> None:
    emitter: EventEmitter[str] = EventEmitter(dispatcher)
    mine: list[str] = []
    theirs: list[str] = []
    emitter.on(["a", "b", "c"], mine.append)
    emitter.on(["a", "b"], theirs.append)
    emitter.on(None, theirs.append)
    emitter.off(["a", "b"], mine.append)
    assert emitter.listener_count("a") == 2  # theirs, for "a" and for every event
    assert emitter.listener_count("c") == 2  # mine for "c", theirs for every event
    emitter.off(("a", "b"))
    assert emitter.listener_count("a") == 1  # only the every-event registration
    assert emitter.listener_count() == 2
    emitter.off([])
    assert emitter.listener_count() == 2
    emitter.emit("c", "c")
    eventually(lambda: mine == ["c"] and theirs == ["c"])


def test_unsubscribe_callable_and_off_by_listener(dispatcher: CallbackPool) -> None:
    emitter: EventEmitter[int] = EventEmitter(dispatcher)
    got: list[int] = []
    remove = emitter.on("e", got.append)
    emitter.emit("e", 1)
    eventually(lambda: got == [1])
    remove()
    emitter.emit("e", 2)
    marker: list[int] = []
    emitter.on("e", marker.append)
    emitter.emit("e", 3)
    eventually(lambda: marker == [3])
    assert got == [1]


def test_listener_exception_is_contained(
    dispatcher: CallbackPool, caplog: pytest.LogCaptureFixture
) -> None:
    emitter: EventEmitter[int] = EventEmitter(dispatcher)
    got: list[int] = []

    def bad(n: int) -> None:
        if n == 1:
            raise RuntimeError("handler bug")
        got.append(n)

    emitter.on("e", bad)
    for n in (1, 2, 3):
        emitter.emit("e", n)
    eventually(lambda: got == [2, 3])
    assert "handler bug" in caplog.text


def test_not_callable_listener_is_refused(dispatcher: CallbackPool) -> None:
    emitter: EventEmitter[int] = EventEmitter(dispatcher)
    with pytest.raises(TypeError):
        emitter.on("e", "nope")  # type: ignore[arg-type]


def test_closed_dispatcher_drops_quietly() -> None:
    d = CallbackPool(max_workers=1)
    emitter: EventEmitter[int] = EventEmitter(d)
    got: list[int] = []
    emitter.on("e", got.append)
    d.close()
    emitter.emit("e", 1)
    assert got == []


def test_pushes_from_many_threads_are_all_run_one_at_a_time_in_each_threads_order(
    dispatcher: CallbackPool,
) -> None:
    # The queue takes no lock per event (OrderedQueue's docstring): four threads push
    # (one at a time and in lists) while drains run on the pool; none may be lost, run
    # twice, run concurrently or run out of its thread's order.
    from ably_bridge.realtime.emitter import OrderedQueue

    seen: list[tuple[int, int]] = []
    active = threading.Semaphore(1)
    overlap: list[bool] = []

    def listener(event: tuple[int, int]) -> None:
        if not active.acquire(blocking=False):
            overlap.append(True)
        seen.append(event)
        active.release()

    queue = OrderedQueue(listener, dispatcher)
    start = threading.Barrier(4)

    def produce(thread: int) -> None:
        start.wait()
        for n in range(0, 3000, 3):
            queue.push((thread, n))
            queue.push_many([(thread, n + 1), (thread, n + 2)])

    producers = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join()
    eventually(lambda: len(seen) >= 12000)
    assert len(seen) == 12000 and overlap == []
    for thread in range(4):
        assert [n for t, n in seen if t == thread] == list(range(3000))
