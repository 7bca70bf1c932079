"""Inline listeners: run on the thread that read the event, after it lets go of the session."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from ably_bridge.errors import AblyException
from ably_bridge.protocol.models import Message
from ably_bridge.realtime.emitter import OrderedQueue
from ably_bridge.realtime.inline import SLOW_INLINE, InlineRunner, in_inline_listener

from .conftest import Collector, MakeClient


# -- the runner ------------------------------------------------------------------------
def test_tasks_submitted_while_collecting_run_when_the_block_ends() -> None:
    runner = InlineRunner()
    ran: list[str] = []
    with runner.collecting():
        runner.submit(lambda: ran.append("a"))
        with runner.collecting():  # nested: the outer block runs them
            runner.submit(lambda: ran.append("b"))
        assert ran == []
    assert ran == ["a", "b"]


def test_outside_a_block_a_task_runs_at_once_and_can_submit_more() -> None:
    runner = InlineRunner()
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        runner.submit(lambda: ran.append("third"))  # queued behind the running task
        ran.append("second")

    runner.submit(first)
    assert ran == ["first", "second", "third"]


def test_a_failing_task_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = InlineRunner()
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("listener bug")

    with caplog.at_level(logging.ERROR), runner.collecting():
        runner.submit(boom)
        runner.submit(lambda: ran.append(1))
    assert ran == [1]
    assert "inline task" in caplog.text


def test_running_is_true_only_inside_a_task() -> None:
    runner = InlineRunner()
    seen: list[bool] = []
    with runner.collecting():
        runner.submit(lambda: seen.append(runner.running()))
        seen.append(runner.running())
    seen.append(runner.running())
    assert seen == [False, True, False]


class _Clock:
    """A clock that only moves when a task says how long it took."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_slow_inline_listener_is_named_in_a_warning_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    runner = InlineRunner(clock=clock)

    def slow_handler(payload: Any) -> None:
        clock.now += payload  # the listener "takes" this many seconds

    queue = OrderedQueue(slow_handler, runner)
    with caplog.at_level(logging.WARNING):
        queue.push(SLOW_INLINE / 2)  # quick enough: nothing said
        assert runner.slow_runs == 0 and caplog.text == ""
        queue.push(0.25)
        assert runner.slow_runs == 1
        assert "slow_handler" in caplog.text and "250 ms" in caplog.text
        caplog.clear()
        queue.push(0.3)  # slow again within the minute: counted, not repeated
        assert runner.slow_runs == 2 and caplog.text == ""
        clock.now += 61  # a minute later it is said again
        queue.push(0.2)
        assert runner.slow_runs == 3 and "slow_handler" in caplog.text

        def slow_task() -> None:  # a task submitted directly is named itself
            clock.now += 0.2

        runner.submit(slow_task)
        assert runner.slow_runs == 4 and "slow_task" in caplog.text


# -- against the emulator ------------------------------------------------------------------
def test_inline_listeners_get_messages_in_order_on_the_reading_thread(
    make_client: MakeClient,
) -> None:
    subscriber = make_client()
    publisher = make_client()
    channel = subscriber.channels.get("inline")
    threads: set[str] = set()
    received = Collector()

    def listener(message: Any) -> None:
        threads.add(threading.current_thread().name)
        received(message)

    batches = Collector()
    channel.subscribe(listener, inline=True)
    channel.subscribe_batch(batches, inline=True)
    channel.attach()
    out = publisher.channels.get("inline")
    for i in range(30):
        out.publish("n", str(i))
    out.publish([Message("pair", "a"), Message("pair", "b")])  # one frame, two messages
    got = received.wait_for(32)
    assert [m.data for m in got] == [*(str(i) for i in range(30)), "a", "b"]
    assert threads == {"ably-reactor"}
    flat = [m.data for batch in batches.wait_until(lambda b: sum(map(len, b)) == 32) for m in batch]
    assert flat == [m.data for m in got]


def test_inline_presence_listener_sees_enter_and_leave(make_client: MakeClient) -> None:
    watcher = make_client()
    member = make_client(client_id="inline-member")
    channel = watcher.channels.get("inline-presence")
    events = Collector()
    channel.presence.subscribe(events, inline=True)
    channel.attach()
    theirs = member.channels.get("inline-presence")
    theirs.presence.enter("here")
    theirs.presence.leave()
    got = events.wait_for(2)
    assert [(p.action.name.lower(), p.client_id) for p in got[:2]] == [
        ("enter", "inline-member"),
        ("leave", "inline-member"),
    ]


def test_a_blocking_call_from_an_inline_listener_is_refused_and_async_works(
    make_client: MakeClient,
) -> None:
    client = make_client()
    channel = client.channels.get("inline-blocking")
    outcomes = Collector()

    def listener(message: Any) -> None:
        if message.name != "trigger":
            return
        assert in_inline_listener()
        try:
            channel.publish("echo", "blocked")
        except AblyException as exc:
            outcomes(("refused", exc.code))
        channel.publish_async("echo", "async", callback=lambda error: outcomes(("sent", error)))

    echoes = Collector()
    channel.subscribe("echo", echoes)
    channel.subscribe(listener, inline=True)
    channel.attach()
    channel.publish("trigger", "go")
    assert outcomes.wait_for(2) == [("refused", 40000), ("sent", None)]
    assert [m.data for m in echoes.wait_for(1)] == ["async"]
