"""Batch hand-over: ``OrderedQueue.push_many``, ``EventEmitter.emit_many``, ``subscribe_batch``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ably_bridge.protocol.events import ChannelState
from ably_bridge.protocol.models import Message
from ably_bridge.realtime.emitter import CallbackPool, EventEmitter, OrderedQueue
from tests.support.wait import eventually

from .conftest import Collector, MakeClient


class CountingDispatcher(CallbackPool):
    """Counts submits (each is one hand-over to the pool)."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.submits = 0

    def submit(self, fn: Callable[[], None]) -> None:
        self.submits += 1
        super().submit(fn)


@pytest.fixture
def counting() -> Iterator[CountingDispatcher]:
    d = CountingDispatcher()
    yield d
    d.close()


def test_push_many_is_one_submit_and_keeps_order(counting: CountingDispatcher) -> None:
    seen: list[int] = []
    gate = threading.Event()
    queue = OrderedQueue(lambda n: (gate.wait(5), seen.append(n)), counting)
    queue.push_many(range(10))
    assert counting.submits == 1
    queue.push_many([10, 11])  # a drain is already scheduled: no second submit
    queue.push(12)
    assert counting.submits == 1
    queue.push_many([])
    gate.set()
    eventually(lambda: len(seen) == 13)
    assert seen == list(range(13))


def test_push_many_of_nothing_submits_nothing(counting: CountingDispatcher) -> None:
    queue = OrderedQueue(lambda _n: None, counting)
    queue.push_many([])
    assert counting.submits == 0


def test_a_long_batch_yields_the_worker_and_still_arrives_in_order(
    counting: CountingDispatcher,
) -> None:
    seen: list[int] = []
    queue = OrderedQueue(seen.append, counting)
    queue.push_many(range(1000))
    eventually(lambda: len(seen) == 1000)
    assert seen == list(range(1000))
    assert counting.submits > 1  # drained in slices, one submit each


def test_emit_many_matches_names_once_and_order_per_listener(
    counting: CountingDispatcher,
) -> None:
    emitter: EventEmitter[int] = EventEmitter(counting)
    every, odd, first_a = Collector(), Collector(), Collector()
    emitter.on(None, every)
    emitter.on("odd", odd)
    emitter.once("a", first_a)
    events = [("odd" if n % 2 else "a", n) for n in range(20)]
    emitter.emit_many(events)
    assert counting.submits == 3  # one per listener, not one per event
    assert every.wait_for(20) == list(range(20))
    assert odd.wait_for(10) == list(range(1, 20, 2))
    assert first_a.wait_for(1) == [0]
    assert emitter.listener_count() == 2  # the `once` listener is gone
    emitter.emit_many([("a", 99)])
    every.wait_for(21)
    assert first_a.items == [0]


def test_emit_many_with_a_raising_listener(counting: CountingDispatcher) -> None:
    emitter: EventEmitter[int] = EventEmitter(counting)
    good, survived = Collector(), Collector()

    def bad(n: int) -> None:
        if n == 3:
            raise ValueError("boom")
        survived(n)

    emitter.on(None, bad)
    emitter.on(None, good)
    emitter.emit_many([("x", n) for n in range(6)])
    assert good.wait_for(6) == list(range(6))  # the other listener gets all
    assert survived.wait_for(5) == [0, 1, 2, 4, 5]  # only the raising event is lost for it


def test_emit_many_without_listeners_and_after_off(counting: CountingDispatcher) -> None:
    emitter: EventEmitter[int] = EventEmitter(counting)
    emitter.emit_many([("x", 1)])
    seen = Collector()
    off = emitter.on(None, seen)
    emitter.emit_many([("x", 1), ("y", 2)])
    seen.wait_for(2)
    off()
    emitter.emit_many([("x", 3)])  # no listener left: nothing is handed to the pool at all
    assert counting.submits == 1
    assert seen.items == [1, 2]


# -- against the emulator -------------------------------------------------------------
def test_subscribe_batch_gets_each_frame_in_order(make_client: MakeClient) -> None:
    client = make_client()
    channel = client.channels.get("batches")
    batches, singles = Collector(), Collector()
    channel.subscribe_batch(batches)
    channel.subscribe(singles)  # unchanged: one call per message
    channel.attach()
    channel.publish([Message("a", "1"), Message("b", "2"), Message("c", "3")])
    channel.publish("d", "4")
    channel.publish([Message("e", "5"), Message("f", "6")])
    got = batches.wait_until(lambda items: sum(len(b) for b in items) >= 6)
    assert all(isinstance(b, list) and b for b in got)
    assert [[m.name for m in b] for b in got] == [["a", "b", "c"], ["d"], ["e", "f"]]
    assert [m.data for b in got for m in b] == ["1", "2", "3", "4", "5", "6"]
    assert [m.name for m in singles.wait_for(6)] == ["a", "b", "c", "d", "e", "f"]


def test_subscribe_batch_raising_listener_and_unsubscribe(make_client: MakeClient) -> None:
    client = make_client()
    channel = client.channels.get("batch-errors")
    seen: list[list[Any]] = []
    done = threading.Event()

    def flaky(batch: list[Message]) -> None:
        seen.append([m.data for m in batch])
        if batch[0].data == "boom":
            raise RuntimeError("listener failure")
        if batch[0].data == "last":
            done.set()

    # Inline: ``other`` has seen every frame read before a later marker frame is delivered.
    other = Collector()
    off = channel.subscribe_batch(flaky)
    channel.subscribe_batch(other, inline=True)
    channel.attach()
    channel.publish([Message("x", "boom"), Message("x", "1")])
    channel.publish("x", "last")
    assert done.wait(5)
    assert seen == [["boom", "1"], ["last"]]  # a raise drops only that batch for it
    off()
    channel.publish("x", "after off")
    other.wait_until(lambda items: len(items) >= 3)
    assert seen == [["boom", "1"], ["last"]]
    channel.unsubscribe(other)  # unsubscribe(listener) removes batch listeners too
    channel.publish("x", "after unsubscribe")
    singles = Collector()
    channel.subscribe(singles)
    channel.publish("x", "marker")
    singles.wait_for(1)
    assert len(other.items) == 3
    channel.subscribe_batch(other, inline=True)
    channel.unsubscribe()  # all, batch listeners included
    channel.publish("x", "after unsubscribe all")
    marker = Collector()
    channel.subscribe(marker)
    channel.publish("x", "marker")
    marker.wait_until(lambda items: any(m.data == "marker" for m in items))
    assert len(other.items) == 3


def test_subscribe_batch_attaches_implicitly(make_client: MakeClient) -> None:
    client = make_client()
    channel = client.channels.get("batch-implicit")
    batches = Collector()
    channel.subscribe_batch(batches)
    eventually(lambda: channel.state == ChannelState.ATTACHED, what="no implicit attach")
    with pytest.raises(TypeError):
        channel.subscribe_batch("not callable")  # type: ignore[arg-type]
