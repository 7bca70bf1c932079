"""Dispatcher and retry policy, sans I/O: MemorySink, FakeClock, fake checkpoints."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from typing import Any

import pytest

from ably_bridge.bridge.checkpoint import Position
from ably_bridge.bridge.config import BridgeConfig, RetrySettings, Target, parse_config
from ably_bridge.bridge.core.position import presence_track
from ably_bridge.bridge.deadletter import DeadLetter, Reason
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.retry import RetryPolicy, SinkBuffer
from ably_bridge.bridge.sinks.base import MemorySink, SinkError, create_sink
from ably_bridge.clock import FakeClock
from ably_bridge.encoding.crypto import get_cipher, get_default_params
from ably_bridge.protocol.models import Message, PresenceMessage

CIPHER_KEY = bytes(range(16))


class FakeCheckpoints:
    def __init__(self) -> None:
        self.saved: dict[tuple[str, str], Position] = {}
        self.calls = 0

    def advance_many(self, route_id: str, positions: dict[str, Position]) -> dict[str, bool]:
        self.calls += 1
        for channel, pos in positions.items():
            self.saved[(route_id, channel)] = pos
        return dict.fromkeys(positions, True)


class FakeDeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def write_many(self, letters: list[DeadLetter]) -> int:
        self.letters.extend(letters)
        return len(letters)


def config(**delivery: Any) -> BridgeConfig:
    raw = {
        "redis": {"url": "memory://"},
        "celery": {"broker_url": "memory://"},
        "delivery": {"retry": {"initial": 1, "max_delay": 8, "jitter": 0}, **delivery},
        "routes": [
            {
                "id": "chat",
                "channels": ["chat:*"],
                "sources": ["message", "presence", "lifecycle"],
                "ciphers": [{"channels": ["chat:secret"], "key_env": "CK"}],
                "targets": [
                    {"type": "celery", "task": "chat.handle"},
                    {"type": "redis_stream", "key": "ably:{channel}"},
                ],
            },
            {
                "id": "audit",
                "channels": ["chat:*"],
                "names": ["important"],
                "targets": [{"type": "redis_stream", "key": "audit"}],
            },
        ],
    }
    env = {"ABLY_KEY": "app.key:secret", "CK": base64.b64encode(CIPHER_KEY).decode()}
    return parse_config(raw, env)


class Harness:
    def __init__(
        self,
        checkpoint_interval: float = 0.0,
        sink_for: Callable[[Target], MemorySink] | None = None,
        **delivery: Any,
    ) -> None:
        self.clock = FakeClock()
        self.celery = MemorySink()
        self.streams = MemorySink()
        self.checkpoints = FakeCheckpoints()
        self.dead = FakeDeadLetters()
        self.dispatcher = Dispatcher(
            config(**delivery),
            sink_for=sink_for or self.sink_for,
            dead_letters=self.dead,  # type: ignore[arg-type]
            checkpoints=self.checkpoints,  # type: ignore[arg-type]
            clock=self.clock,
            rng=random.Random(1),
            checkpoint_interval=checkpoint_interval,
        )

    def sink_for(self, target: Target) -> MemorySink:
        return self.celery if target.kind == "celery" else self.streams


def msg(i: int, name: str = "text", data: Any = "hello") -> Message:
    return Message(name, data, id=f"conn:{i}:0", timestamp=1000 + i, connection_id="conn")


def test_messages_reach_every_target_and_checkpoint_advances() -> None:
    h = Harness()
    assert h.dispatcher.submit_messages("chat:1", [msg(1), msg(2, "important")])
    assert h.dispatcher.pending() == 5  # 2 x celery + 2 x stream + 1 x audit stream
    h.dispatcher.drain()
    assert [r.destination for r in h.celery.records] == ["chat.handle"] * 2
    assert sorted(h.streams.destinations()) == ["ably:chat:1", "audit"]
    assert h.checkpoints.saved[("chat", "chat:1")] == Position(1002, "conn:2:0")
    assert h.checkpoints.saved[("audit", "chat:1")] == Position(1002, "conn:2:0")
    assert h.dispatcher.stats.delivered == 5 and h.dispatcher.pending() == 0


def test_outage_holds_checkpoint_backs_off_and_keeps_order() -> None:
    h = Harness()
    h.streams.fail_with(ConnectionError("redis down"))
    h.dispatcher.submit_messages("chat:1", [msg(1), msg(2)])
    h.dispatcher.drain()
    assert len(h.celery.records) == 2 and h.streams.records == []
    assert ("chat", "chat:1") not in h.checkpoints.saved  # the stream target has not confirmed
    assert not h.dispatcher.healthy()
    h.dispatcher.submit_messages("chat:1", [msg(3)])  # queues behind the failed ones
    calls = h.streams.calls
    assert h.dispatcher.pump() == 1  # only the celery delivery of msg 3; streams back off
    assert h.streams.calls == calls
    assert h.dispatcher.next_wakeup() == pytest.approx(1.0)
    h.clock.advance(1.0)
    h.dispatcher.pump()  # second failure: backoff doubles
    assert h.dispatcher.next_wakeup() == pytest.approx(2.0)
    h.streams.recover()
    h.clock.advance(2.0)
    h.dispatcher.drain()
    assert [e.event_id for e in h.streams.destinations()["ably:chat:1"]] == [
        "conn:1:0",
        "conn:2:0",
        "conn:3:0",
    ]
    assert h.checkpoints.saved[("chat", "chat:1")] == Position(1003, "conn:3:0")
    assert h.dispatcher.healthy() and h.dispatcher.stats.retries == 2


def test_back_pressure_when_a_buffer_is_full() -> None:
    h = Harness(buffer_size=3)
    h.streams.fail_with(ConnectionError("down"))
    assert h.dispatcher.submit_messages("chat:1", [msg(1), msg(2)])
    assert not h.dispatcher.submit_messages("chat:1", [msg(3), msg(4)])
    assert h.dispatcher.stats.refused == 1
    assert h.dispatcher.pending() == 4  # nothing of the refused batch was queued


def test_frames_of_many_channels_go_in_one_call_and_back_pressure_is_per_channel() -> None:
    h = Harness(buffer_size=4)  # a job per message in each buffer (celery, streams)
    taken = h.dispatcher.submit_frames(
        [
            ("chat:1", [msg(1)]),  # 1 of 4
            ("chat:2", [msg(2), msg(3)]),  # 3 of 4
            ("chat:3", [msg(4), msg(5)]),  # would be 5: refused
            ("chat:1", [msg(6)]),  # 4 of 4
            ("chat:3", [msg(7)]),  # fits, but would overtake chat:3's refused frame
            ("chat:2", []),
        ]
    )
    assert taken == [True, True, False, True, False, True]
    assert h.dispatcher.stats.refused == 1 and h.dispatcher.stats.accepted == 4
    assert h.dispatcher.pending() == 8
    h.dispatcher.drain()
    ids = {ch: [e.event_id for e in envs] for ch, envs in h.streams.destinations().items()}
    assert ids == {
        "ably:chat:1": ["conn:1:0", "conn:6:0"],
        "ably:chat:2": ["conn:2:0", "conn:3:0"],
    }
    assert h.checkpoints.saved[("chat", "chat:1")] == Position(1006, "conn:6:0")
    assert ("chat", "chat:3") not in h.checkpoints.saved
    # The same frames one by one decide the same, but for the frame that would overtake.
    one = Harness(buffer_size=4).dispatcher
    frames = [("chat:1", [msg(1)]), ("chat:2", [msg(2), msg(3)]), ("chat:3", [msg(4), msg(5)])]
    frames.append(("chat:1", [msg(6)]))
    assert [one.submit_messages(ch, msgs) for ch, msgs in frames] == [True, True, False, True]


def test_frames_in_one_call_dead_letter_only_what_was_taken() -> None:
    h = Harness(buffer_size=1, max_event_bytes=300)
    big = msg(9, data="x" * 400)
    taken = h.dispatcher.submit_frames([("chat:1", [msg(1)]), ("chat:2", [msg(2), big])])
    assert taken == [True, False]
    assert h.dead.letters == []  # the refused frame's oversized event comes again later
    assert h.dispatcher.submit_frames([("chat:2", [big])]) == [True]
    assert [d.reason for d in h.dead.letters] == [Reason.OVERSIZED]


def test_rejected_event_is_dead_lettered_and_does_not_block() -> None:
    h = Harness()
    h.streams.reject("conn:1:0")
    h.dispatcher.submit_messages("chat:1", [msg(1), msg(2)])
    h.dispatcher.drain()
    assert [(d.reason, d.route) for d in h.dead.letters] == [(Reason.REJECTED, "chat")]
    assert h.checkpoints.saved[("chat", "chat:1")] == Position(1002, "conn:2:0")


def test_undecodable_and_oversized_events_are_dead_lettered() -> None:
    h = Harness(max_event_bytes=512)
    bad = Message.from_dict({"id": "conn:9:0", "data": "###", "encoding": "base64"})
    h.dispatcher.submit_messages("chat:1", [bad, msg(2, data="x" * 1000), msg(3)])
    h.dispatcher.drain()
    reasons = [d.reason for d in h.dead.letters]
    assert reasons == [Reason.UNDECODABLE, Reason.OVERSIZED]
    assert h.dead.letters[0].event_id == "conn:9:0"
    assert [r.envelope.event_id for r in h.celery.records] == ["conn:3:0"]
    assert h.dispatcher.stats.by_reason == {"undecodable": 1, "oversized": 1}


def test_unknown_target_is_dead_lettered() -> None:
    def broken(target: Target) -> MemorySink:
        if target.kind == "celery":
            raise ValueError("no celery sink registered for URL scheme 'x'")
        return h.streams

    h = Harness(sink_for=broken)
    h.dispatcher.submit_messages("chat:1", [msg(1)])
    h.dispatcher.drain()
    assert [d.reason for d in h.dead.letters] == [Reason.UNKNOWN_TARGET]
    assert len(h.streams.records) == 1
    assert h.checkpoints.saved[("chat", "chat:1")].id == "conn:1:0"


def test_replayed_events_are_skipped_in_memory() -> None:
    h = Harness()
    h.dispatcher.submit_messages("chat:1", [msg(1)])
    h.dispatcher.drain()
    h.dispatcher.submit_messages("chat:1", [msg(1)])  # e.g. history overlap after reattach
    assert h.dispatcher.pending() == 0 and h.dispatcher.stats.skipped == 1


def test_route_cipher_decrypts() -> None:
    h = Harness()
    cipher = get_cipher(get_default_params(key=CIPHER_KEY))
    raw = Message.from_dict(msg(1, data="secret!").encoded(cipher).to_dict(binary=False))
    h.dispatcher.submit_messages("chat:secret", [raw])
    h.dispatcher.drain()
    assert h.celery.records[0].envelope.item["data"] == "secret!"


def test_presence_and_lifecycle() -> None:
    h = Harness()
    p = PresenceMessage(2, id="conn:5:0", client_id="bob", connection_id="conn", timestamp=5)
    assert h.dispatcher.submit_presence("chat:1", [p])
    assert h.dispatcher.submit_lifecycle("chat:1", "attached", previous="attaching")
    h.dispatcher.drain()
    sources = [r.envelope.source for r in h.celery.records]
    assert sources == ["channel.presence", "channel.lifecycle"]
    # Lifecycle events are not in history, so they never move a checkpoint; presence
    # events move the route's presence checkpoint, not its message checkpoint.
    assert h.checkpoints.saved[(presence_track("chat"), "chat:1")] == Position(5, "conn:5:0")
    assert ("chat", "chat:1") not in h.checkpoints.saved


def test_retries_exhausted_go_to_dead_letters() -> None:
    h = Harness(retry={"initial": 1, "max_delay": 1, "jitter": 0, "max_attempts": 2})
    h.streams.fail_with(ConnectionError("down"))
    h.dispatcher.submit_messages("chat:1", [msg(1)])
    h.dispatcher.drain()
    h.clock.advance(1)
    h.dispatcher.drain()
    assert [d.reason for d in h.dead.letters] == [Reason.RETRIES_EXHAUSTED]
    assert h.checkpoints.saved[("chat", "chat:1")].id == "conn:1:0"


def test_memory_sink_via_registry_and_permanent_failure() -> None:
    sink = create_sink("celery", "memory://")
    assert isinstance(sink, MemorySink)
    sink.fail_with(SinkError("bad", retryable=False), retryable=False)
    assert not sink.healthy()
    assert not sink.retryable(SinkError("bad", retryable=False))


def test_retry_policy_from_the_delivery_settings() -> None:
    policy = RetryPolicy.from_settings(RetrySettings(initial=0.5, max_delay=4, jitter=0.5))
    assert [policy.ceiling(n) for n in (1, 2, 3, 4, 5, 100)] == [0.5, 1, 2, 4, 4, 4]
    assert policy.delay(3, 1.0) == 2.0 and policy.delay(3, 0.001) == pytest.approx(1.001)
    assert not policy.exhausted(10)
    three = RetryPolicy.from_settings(RetrySettings(max_attempts=3))
    assert not three.exhausted(2) and three.exhausted(3)  # three attempts: two retries


def test_sink_buffer_backoff_with_fake_clock() -> None:
    clock = FakeClock()
    buf: SinkBuffer[int] = SinkBuffer(4, RetryPolicy(1.0, multiplier=2.0, jitter=0.0), clock)
    assert buf.offer([1, 2, 3]) and not buf.offer([4, 5]) and buf.free == 1
    assert buf.ready() and buf.take(2) == [1, 2]
    buf.put_back([1, 2])
    assert buf.failed() == 1.0 and not buf.ready()
    assert buf.seconds_until_ready() == 1.0
    clock.advance(1.0)
    assert buf.ready() and buf.take(10) == [1, 2, 3]
    buf.succeeded()
    assert not buf.backing_off and buf.seconds_until_ready() is None


def test_checkpoint_saves_are_spaced_by_the_interval() -> None:
    h = Harness(checkpoint_interval=0.5)
    d, saved = h.dispatcher, h.checkpoints.saved
    d.submit_messages("chat:1", [msg(1)])
    d.drain()
    assert saved[("chat", "chat:1")] == Position(1001, "conn:1:0")  # first: at once
    calls = h.checkpoints.calls
    for i in (2, 3, 4):  # confirmed within the interval: kept, not saved
        d.submit_messages("chat:1", [msg(i)])
        d.drain()
    assert h.checkpoints.calls == calls
    assert saved[("chat", "chat:1")] == Position(1001, "conn:1:0")
    assert d.unsettled_channels() == {"chat:1"}  # (a shard hand-over waits for the save)
    assert d.next_wakeup() == pytest.approx(0.5)  # the daemon wakes up for the save
    h.clock.advance(0.3)
    assert d.pump() == 0 and h.checkpoints.calls == calls
    assert d.next_wakeup() == pytest.approx(0.2)
    h.clock.advance(0.2)
    assert d.next_wakeup() == 0.0
    assert d.pump() == 0  # nothing to deliver; the due save happens
    assert h.checkpoints.calls == calls + 1  # one save, of the latest position
    assert saved[("chat", "chat:1")] == Position(1004, "conn:4:0")
    assert d.next_wakeup() is None and d.unsettled_channels() == set()


def test_flush_saves_deferred_checkpoints_at_once() -> None:
    h = Harness(checkpoint_interval=10.0)
    d = h.dispatcher
    d.submit_messages("chat:1", [msg(1)])
    d.drain()
    d.submit_messages("chat:1", [msg(2)])
    d.drain()
    assert h.checkpoints.saved[("chat", "chat:1")] == Position(1001, "conn:1:0")
    d.flush_checkpoints()
    assert h.checkpoints.saved[("chat", "chat:1")] == Position(1002, "conn:2:0")
    assert d.next_wakeup() is None


def test_a_failed_deferred_save_is_retried_after_the_interval() -> None:
    h = Harness(checkpoint_interval=1.0)
    d = h.dispatcher
    real = h.checkpoints.advance_many

    def broken(route_id: str, positions: dict[str, Position]) -> dict[str, bool]:
        raise ConnectionError("redis down")

    h.checkpoints.advance_many = broken  # type: ignore[method-assign]
    d.submit_messages("chat:1", [msg(1)])
    d.drain()
    assert h.checkpoints.saved == {}
    assert d.next_wakeup() == pytest.approx(1.0)  # not a busy loop on a failing store
    h.checkpoints.advance_many = real  # type: ignore[method-assign]
    h.clock.advance(1.0)
    d.pump()
    assert h.checkpoints.saved[("chat", "chat:1")] == Position(1001, "conn:1:0")
