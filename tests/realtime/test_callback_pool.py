"""The callback dispatcher: per-listener order, concurrency, stalls, errors, the shared pool."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import pytest

from ably_bridge.realtime import callback_pool as dispatcher_module
from ably_bridge.realtime.callback_pool import CallbackPool, SharedPool
from ably_bridge.realtime.emitter import EventEmitter, OrderedQueue
from tests.support.wait import eventually

from .conftest import Collector, MakeClient

WAIT = 5.0  # seconds any wait below may take before the test fails


def _join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), f"{thread.name} did not exit"


# -- ordering and concurrency ---------------------------------------------------------------
def test_each_listener_sees_its_events_in_order_one_at_a_time(
    dispatcher: CallbackPool,
) -> None:
    """Events pushed from two threads to many listeners: per listener, push order, no overlap."""
    listeners = 20
    per_listener = 200
    seen: list[list[int]] = [[] for _ in range(listeners)]
    running = [threading.Lock() for _ in range(listeners)]
    overlaps: list[int] = []
    done = threading.Semaphore(0)

    def make(index: int) -> Callable[[int], None]:
        def listener(n: int) -> None:
            if not running[index].acquire(blocking=False):
                overlaps.append(index)
            seen[index].append(n)
            running[index].release()
            if n == per_listener - 1:
                done.release()

        return listener

    queues = [OrderedQueue(make(i), dispatcher) for i in range(listeners)]

    def producer(half: int) -> None:
        # Each producer owns half of the listeners, so per-listener push order is defined.
        for n in range(per_listener):
            for index in range(half, listeners, 2):
                if n % 3 == 0:
                    queues[index].push_many([n])
                else:
                    queues[index].push(n)

    threads = [threading.Thread(target=producer, args=(half,)) for half in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    for _ in range(listeners):
        assert done.acquire(timeout=WAIT)
    assert overlaps == []
    assert all(items == list(range(per_listener)) for items in seen)


def test_different_listeners_run_concurrently(dispatcher: CallbackPool) -> None:
    """Two listeners that each wait for the other can only both finish on two threads."""
    both = threading.Barrier(2, timeout=WAIT)
    finished = Collector()
    emitter: EventEmitter[str] = EventEmitter(dispatcher)
    emitter.on("x", lambda p: (both.wait(), finished(("a", p))))
    emitter.on("x", lambda p: (both.wait(), finished(("b", p))))
    emitter.emit("x", "go")
    assert sorted(finished.wait_for(2)) == [("a", "go"), ("b", "go")]
    assert dispatcher.thread_count() >= 2


def test_a_slow_listener_does_not_hold_up_events_queued_behind_it(
    dispatcher: CallbackPool,
) -> None:
    """Both events are queued at once and nothing is submitted after: the stall watch acts."""
    release = threading.Event()
    slow_started = threading.Event()
    fast = Collector()

    def slow(_payload: str) -> None:
        slow_started.set()
        release.wait(WAIT)

    emitter: EventEmitter[str] = EventEmitter(dispatcher)
    emitter.on("x", slow)
    emitter.on("x", fast)
    emitter.emit("x", "a")
    try:
        assert fast.wait_for(1) == ["a"]
        assert slow_started.is_set()
        # A later event for the fast listener still gets through while `slow` blocks.
        emitter.off(listener=slow)
        emitter.emit("x", "b")
        assert fast.wait_for(2) == ["a", "b"]
    finally:
        release.set()


def test_listeners_blocked_up_to_the_limit_and_more_work_waits_for_a_free_worker() -> None:
    d = CallbackPool(max_workers=2)
    release = threading.Event()
    started = threading.Semaphore(0)
    ran = Collector()

    def blocker() -> None:
        started.release()
        release.wait(WAIT)

    try:
        d.submit(blocker)
        d.submit(blocker)
        assert started.acquire(timeout=WAIT)
        assert started.acquire(timeout=WAIT)
        d.submit(lambda: ran("after"))
        assert d.thread_count() == 2  # never more than max_workers
        release.set()
        assert ran.wait_for(1) == ["after"]
    finally:
        release.set()
        d.close(wait=True)


# -- failures ---------------------------------------------------------------------------------
def test_a_raising_listener_is_logged_and_the_worker_carries_on(
    dispatcher: CallbackPool, caplog: pytest.LogCaptureFixture
) -> None:
    got = Collector()

    def flaky(n: int) -> None:
        if n % 2:
            raise RuntimeError(f"handler bug {n}")
        got(n)

    def bad_task() -> None:
        raise ValueError("task bug")

    queue = OrderedQueue(flaky, dispatcher)
    with caplog.at_level(logging.ERROR):
        queue.push_many(range(6))
        assert got.wait_for(3) == [0, 2, 4]
        dispatcher.submit(bad_task)  # a raw task, outside any OrderedQueue
        queue.push(8)
        assert got.wait_for(4) == [0, 2, 4, 8]
    assert "handler bug 1" in caplog.text and "handler bug 5" in caplog.text
    assert "task bug" in caplog.text
    assert 1 <= dispatcher.thread_count() <= 4


# -- closing ----------------------------------------------------------------------------------
def test_close_runs_queued_callbacks_unless_cancelled_and_drops_later_ones() -> None:
    d = CallbackPool(max_workers=1)
    gate = threading.Event()
    ran = Collector()
    d.submit(lambda: (gate.wait(WAIT), ran("first")))
    d.submit(lambda: ran("queued"))
    threads = d.threads()
    d.close(wait=False, cancel=False)
    d.submit(lambda: ran("after close"))
    gate.set()
    assert ran.wait_for(2) == ["first", "queued"]
    _join_all(threads)
    assert ran.items == ["first", "queued"]
    assert d.closed and d.thread_count() == 0


def test_close_with_cancel_drops_what_has_not_started() -> None:
    d = CallbackPool(max_workers=1)
    gate = threading.Event()
    started = threading.Event()
    ran = Collector()
    d.submit(lambda: (started.set(), gate.wait(WAIT), ran("running")))
    assert started.wait(WAIT)
    d.submit(lambda: ran("never"))
    closer = threading.Thread(target=d.close, kwargs={"wait": True, "cancel": True})
    closer.start()
    gate.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert ran.items == ["running"]


def test_close_from_a_callback_does_not_wait_for_itself() -> None:
    d = CallbackPool(max_workers=1)
    closed = threading.Event()
    d.submit(lambda: (d.close(wait=True), closed.set()))
    assert closed.wait(WAIT)


def test_idle_workers_retire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "RETIRE_AFTER", 0.05)
    d = CallbackPool(max_workers=3)
    both = threading.Barrier(3, timeout=WAIT)
    for _ in range(3):
        d.submit(both.wait)  # three listeners that need each other: three threads
    both_done = Collector()
    d.submit(lambda: both_done("ok"))
    both_done.wait_for(1)
    assert d.thread_count() == 3
    eventually(lambda: d.thread_count() == 1)  # all but one exit once idle for RETIRE_AFTER
    ran = Collector()
    d.submit(lambda: ran("still works"))
    assert ran.wait_for(1) == ["still works"]
    d.close(wait=True)


# -- the shared pool --------------------------------------------------------------------------
def test_shared_pool_lives_while_someone_uses_it() -> None:
    pool = SharedPool()
    first = pool.acquire(8)
    second = pool.acquire(4)
    assert first is second and first.max_workers == 12 and pool.users == 2
    ran = Collector()
    first.submit(lambda: ran(1))
    ran.wait_for(1)
    threads = first.threads()
    pool.release(first, 8)
    assert not first.closed and first.max_workers == 4
    pool.release(second, 4)
    assert first.closed and pool.dispatcher is None
    _join_all(threads)
    pool.release(first, 4)  # a second release is harmless
    third = pool.acquire(2)
    assert third is not first and not third.closed
    pool.release(third, 2)
    with pytest.raises(ValueError, match="at least 1"):
        pool.acquire(0)


def test_clients_share_one_pool_and_the_last_close_shuts_it(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = SharedPool()
    monkeypatch.setattr(dispatcher_module, "_SHARED", pool)
    a = make_client(callback_workers=3)
    b = make_client(callback_workers=5)
    private = make_client(shared_callback_pool=False, callback_workers=2)
    assert a._dispatcher is b._dispatcher is pool.dispatcher
    assert private._dispatcher is not a._dispatcher
    shared = a._dispatcher
    assert shared.max_workers == 8 and pool.users == 2

    # Events of both clients reach their listeners, each in order.
    got_a, got_b = Collector(), Collector()
    channel_a = a.channels.get("shared-pool")
    channel_b = b.channels.get("shared-pool")
    channel_a.subscribe(lambda m: got_a(m.data))
    channel_b.subscribe(lambda m: got_b(m.data))
    channel_a.attach()
    channel_b.attach()
    for n in range(20):
        channel_a.publish("n", str(n))
    assert got_a.wait_for(20) == [str(n) for n in range(20)]
    assert got_b.wait_for(20) == [str(n) for n in range(20)]

    threads = shared.threads()
    a.close()
    assert not shared.closed
    b.close()
    assert shared.closed and pool.dispatcher is None
    assert not private._dispatcher.closed  # its own pool, untouched
    _join_all(threads)
    private.close()
    assert private._dispatcher.closed


def test_callback_workers_must_be_positive() -> None:
    from ably_bridge.realtime import AblyRealtime

    with pytest.raises(ValueError, match="at least 1"):
        AblyRealtime(key="app.key:secret", auto_connect=False, callback_workers=0)


def test_a_forked_child_starts_from_a_fresh_shared_pool() -> None:
    inherited = dispatcher_module.acquire_shared(1)
    try:
        pid = os.fork()
        if pid == 0:  # the child: check, then leave at once (no pytest teardown here)
            fresh = dispatcher_module._SHARED.dispatcher is None
            ran = threading.Event()
            child_pool = dispatcher_module.acquire_shared(1)
            child_pool.submit(ran.set)
            os._exit(0 if fresh and child_pool is not inherited and ran.wait(WAIT) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        dispatcher_module.release_shared(inherited, 1)


def test_deferred_wakes_release_the_worker_at_the_end_of_the_block() -> None:
    dispatcher = CallbackPool(max_workers=2)
    try:
        warmed = threading.Event()
        dispatcher.submit(warmed.set)  # start a worker, which then goes idle
        assert warmed.wait(WAIT)
        eventually(lambda: len(dispatcher._idle) == 1)
        worker = dispatcher._idle[0]
        ran = threading.Event()
        with dispatcher_module.deferred_wakes():
            dispatcher.submit(ran.set)
            # Chosen and counted as awake (no second worker is woken)...
            assert dispatcher._idle == [] and dispatcher._searching == 1
            dispatcher.submit(lambda: None)
            assert dispatcher.thread_count() == 1
            # ...but still asleep: its gate is released only when the block ends.
            assert worker.gate.locked()
            with dispatcher_module.deferred_wakes():  # nested: the outer block wakes
                pass
            assert worker.gate.locked() and not ran.is_set()
        assert ran.wait(WAIT)
    finally:
        dispatcher.close()
