"""The daemon against the fake source: attach, backfill, continuity, back-pressure, reload, drain.

No sockets, no threads, no sleeps: a FakeSource answers synchronously, backfill
jobs run inline (or when the test says), and time is a FakeClock.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.bridge.app import SinkPool
from ably_bridge.bridge.config import BridgeConfig
from ably_bridge.bridge.daemon import (
    GAUGE_INTERVAL,
    MANY_CHANNELS,
    SCAN_INTERVAL,
    ChannelTrack,
    Daemon,
    DaemonOptions,
    InlineExecutor,
)
from ably_bridge.bridge.deadletter import DeadLetter
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.metrics import BridgeMetrics
from ably_bridge.bridge.sinks.base import MemorySink
from ably_bridge.bridge.source import FakeSource, StateChange
from ably_bridge.clock import FakeClock
from ably_bridge.errors import AblyException
from tests.bridge.daemon_fakes import ManualExecutor, MemoryCheckpoints, make_config


class Letters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def write_many(self, letters: list[DeadLetter]) -> int:
        self.letters.extend(letters)
        return len(letters)


@dataclass
class Rig:
    config: BridgeConfig
    daemon: Daemon
    source: FakeSource
    pool: SinkPool
    checkpoints: MemoryCheckpoints
    clock: FakeClock
    letters: Letters
    executor: Executor
    sinks: list[MemorySink] = field(default_factory=list)

    @property
    def sink(self) -> MemorySink:
        inner = self.pool(self.config.routes[0].targets[0])
        return inner.inner  # type: ignore[attr-defined,no-any-return]

    def ids(self, channel: str) -> list[str]:
        return [
            r.envelope.event_id
            for r in self.sink.records
            if r.destination == f"s:{channel}" and r.envelope.source == "channel.message"
        ]

    def lifecycle(self, channel: str) -> list[str | None]:
        return [
            r.envelope.name
            for r in self.sink.records
            if r.envelope.channel == channel and r.envelope.source == "channel.lifecycle"
        ]

    def settle(self) -> None:
        self.daemon.run_until_idle()


def make_rig(
    config: BridgeConfig | None = None,
    *,
    source: FakeSource | None = None,
    checkpoints: MemoryCheckpoints | None = None,
    executor: Executor | None = None,
    clock: FakeClock | None = None,
    options: DaemonOptions | None = None,
    checkpoint_interval: float = 0.0,
    reload_config: Callable[[], BridgeConfig] | None = None,
) -> Rig:
    config = config or make_config()
    clock = clock or FakeClock()
    metrics = BridgeMetrics()
    pool = SinkPool(config, metrics, clock)
    cps = checkpoints if checkpoints is not None else MemoryCheckpoints()
    letters = Letters()
    dispatcher = Dispatcher(
        config,
        sink_for=pool,
        dead_letters=letters,  # type: ignore[arg-type]
        checkpoints=cps,  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(0),
        checkpoint_interval=checkpoint_interval,
    )
    src = source or FakeSource(time_ms=clock.time_ms)
    executor = executor or InlineExecutor()
    daemon = Daemon(
        config,
        source=src,
        history=src,
        directory=src,
        dispatcher=dispatcher,
        checkpoints=cps,  # type: ignore[arg-type]
        executor=executor,
        metrics=metrics,
        clock=clock,
        options=options,
        reload_config=reload_config,
    )
    return Rig(config, daemon, src, pool, cps, clock, letters, executor)


def publish(rig: Rig, channel: str, n: int, **kw: Any) -> list[str]:
    ids = []
    for i in range(n):
        rig.clock.advance(0.001)
        ids.append(str(rig.source.publish(channel, "e", i, **kw).id))
    return ids


# ---------------------------------------------------------------------------


def test_spaced_checkpoint_saves_catch_up_and_are_flushed_on_shutdown() -> None:
    rig = make_rig(checkpoint_interval=0.5)
    rig.daemon.start()
    rig.settle()
    first = publish(rig, "ch1", 2)
    rig.settle()
    assert rig.checkpoints.data[("r1", "ch1")].id == first[-1]  # the first save is at once
    more = publish(rig, "ch1", 3)
    rig.settle()
    assert rig.ids("ch1") == first + more
    assert rig.checkpoints.data[("r1", "ch1")].id == first[-1]  # deferred...
    assert rig.daemon._wait_time() <= 0.5  # ...and the delivery thread wakes up for it
    rig.clock.advance(0.5)
    rig.daemon.step()
    assert rig.checkpoints.data[("r1", "ch1")].id == more[-1]
    last = publish(rig, "ch1", 2)
    rig.settle()
    assert rig.checkpoints.data[("r1", "ch1")].id == more[-1]
    rig.daemon.shutdown()
    assert rig.checkpoints.data[("r1", "ch1")].id == last[-1]  # flushed on the way out


def test_live_messages_reach_the_sink_in_order_and_checkpoint() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    assert rig.source.attached() == ["ch1", "ch2"]
    assert {t.phase for t in rig.daemon.tracks.values()} == {"live"}
    sent = publish(rig, "ch1", 5)
    rig.settle()
    assert rig.ids("ch1") == sent
    assert rig.checkpoints.data[("r1", "ch1")].id == sent[-1]
    assert rig.lifecycle("ch1") == ["channel.attaching", "channel.attached"]
    assert rig.daemon.readiness() == (True, [])


def test_first_attach_seeds_a_checkpoint_and_does_not_replay_old_history() -> None:
    rig = make_rig()
    publish(rig, "ch1", 3)  # before the bridge ever ran
    rig.clock.advance(10)
    rig.daemon.start()
    rig.settle()
    assert rig.ids("ch1") == []
    seed = rig.checkpoints.data[("r1", "ch1")]
    assert seed.id is None and seed.timestamp == rig.clock.time_ms() - 5000


def test_restart_backfills_from_the_checkpoint_before_live_events() -> None:
    source_clock = FakeClock()
    cps = MemoryCheckpoints()
    first = make_rig(checkpoints=cps, clock=source_clock)
    first.daemon.start()
    first.settle()
    before = publish(first, "ch1", 3)
    first.settle()
    first.daemon.shutdown()
    assert first.ids("ch1") == before
    assert first.source.closed

    # published while the bridge is down
    source = first.source
    source.closed, source.state = False, "connected"
    down = publish(first, "ch1", 4)

    second = make_rig(checkpoints=cps, source=source, clock=source_clock)
    second.daemon.start()
    second.settle()
    after = publish(second, "ch1", 2)
    second.settle()
    assert second.ids("ch1") == down + after
    assert second.daemon.metrics.backfilled.value() == 4
    assert source.history_calls[-1][2] is not None  # untilAttach: bounded by the attach serial


def test_continuity_loss_backfills_the_gap_before_held_live_events() -> None:
    executor = ManualExecutor()
    rig = make_rig(executor=executor)
    rig.daemon.start()
    rig.settle()
    executor.run_all()
    rig.settle()
    first = publish(rig, "ch1", 2)
    rig.settle()

    missed = [str(m.id) for m in rig.source.lose_continuity("ch1", missed=3)]
    rig.settle()
    assert rig.daemon.tracks["ch1"].phase == "backfilling"
    held = publish(rig, "ch1", 2)  # arrive live while the backfill runs
    rig.settle()
    assert rig.ids("ch1") == first
    executor.run_all()
    rig.settle()
    assert rig.ids("ch1") == first + missed + held
    assert rig.daemon.tracks["ch1"].phase == "live"
    assert rig.daemon.metrics.continuity.value() == 1
    assert "channel.update" in rig.lifecycle("ch1")


def test_live_event_also_in_the_backfill_is_delivered_once_in_history_order() -> None:
    executor = ManualExecutor()
    rig = make_rig(executor=executor)
    rig.daemon.start()
    rig.settle()
    executor.run_all()
    rig.settle()
    rig.source.lose_continuity("ch1")
    rig.settle()
    # A message below the attach point that the listener delivers late.
    late = publish(rig, "ch1", 1, deliver=False)
    rig.source.complete_attach("ch1")  # attach serial now covers `late`
    rig.settle()
    rig.source.channel("ch1").handlers.messages(  # type: ignore[union-attr]
        [rig.source.channel("ch1").history[-1]]
    )
    rig.settle()
    executor.run_all()
    rig.settle()
    assert rig.ids("ch1") == late


def test_suspended_then_reattached_backfills() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    first = publish(rig, "ch1", 1)
    rig.settle()
    rig.source.suspend("ch1")
    rig.settle()
    assert rig.daemon.tracks["ch1"].phase == "attaching"
    assert rig.daemon.readiness()[0] is False
    gap = publish(rig, "ch1", 2, deliver=False)
    rig.source.complete_attach("ch1")
    rig.settle()
    assert rig.ids("ch1") == first + gap
    assert rig.lifecycle("ch1")[-2:] == ["channel.suspended", "channel.attached"]


def test_failed_channel_is_reattached_after_a_delay() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    rig.source.fail("ch1", AblyException("denied", 40160, 401))
    rig.settle()
    assert rig.daemon.tracks["ch1"].phase == "failed"
    attaches = rig.source.channel("ch1").attaches
    rig.clock.advance(5.1)
    rig.settle()
    assert rig.source.channel("ch1").attaches == attaches + 1
    assert rig.daemon.tracks["ch1"].phase == "live"


def test_backfill_failure_is_retried_with_backoff() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    publish(rig, "ch1", 1)
    rig.settle()
    rig.source.history_error = AblyException("history down", 50000, 500)
    gap = [str(m.id) for m in rig.source.lose_continuity("ch1", missed=2)]
    rig.settle()
    assert rig.daemon.tracks["ch1"].phase == "backfilling"
    rig.source.history_error = None
    rig.clock.advance(1.0)
    rig.settle()
    assert rig.ids("ch1")[-2:] == gap
    assert rig.daemon.tracks["ch1"].phase == "live"


def test_full_buffer_pauses_the_channel_and_history_closes_the_gap() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    rig.sink.fail_with(ConnectionError("redis down"))
    sent = publish(rig, "ch1", 150)
    rig.settle()
    track = rig.daemon.tracks["ch1"]
    assert track.phase == "paused"
    assert "ch1" in rig.source.detached
    assert rig.daemon.metrics.pauses.value() == 1
    assert rig.daemon.readiness()[0] is False
    sent += publish(rig, "ch1", 5)  # stored while paused, not delivered live
    rig.sink.recover()
    for _ in range(10):
        rig.clock.advance(2.0)
        rig.settle()
    assert track.phase == "live"
    assert rig.ids("ch1") == sent
    assert rig.checkpoints.data[("r1", "ch1")].id == sent[-1]


def test_undecodable_and_oversized_events_are_dead_lettered_and_do_not_block() -> None:
    rig = make_rig(make_config(delivery={"max_event_bytes": 300}))
    rig.daemon.start()
    rig.settle()
    rig.clock.advance(0.001)
    bad = rig.source.publish("ch1", "bad", "!!notbase64", encoding="base64")
    big = rig.source.publish("ch1", "big", "x" * 400)
    ok = publish(rig, "ch1", 1)
    rig.settle()
    reasons = {
        (str(letter.reason), letter.event_id or letter.event.event_id)
        for letter in rig.letters.letters
    }
    assert ("undecodable", bad.id) in reasons and ("oversized", big.id) in reasons
    assert rig.ids("ch1") == ok
    assert rig.checkpoints.data[("r1", "ch1")].id == ok[0]


def test_presence_events_are_routed() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    rig.source.presence_event("ch1", 2, "alice")
    rig.source.presence_event("ch1", 3, "alice")
    rig.settle()
    actions = [
        r.envelope.item["action"]
        for r in rig.sink.records
        if r.envelope.source == "channel.presence"
    ]
    assert actions == [2, 3]


def test_discovery_attaches_wanted_channels() -> None:
    config = make_config(
        routes=[
            {
                "id": "d",
                "discover": {"prefixes": ["disc:"], "interval": 5},
                "targets": [{"type": "redis_stream", "key": "s:{channel}"}],
            }
        ]
    )
    rig = make_rig(config)
    rig.source.active = {"disc:a", "other"}
    rig.daemon.start()
    rig.settle()
    assert rig.source.attached() == ["disc:a"]
    rig.source.active.add("disc:b")
    rig.clock.advance(5.0)
    rig.settle()
    assert rig.source.attached() == ["disc:a", "disc:b"]


def test_reload_attaches_and_detaches_only_the_difference() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    attaches = rig.source.channel("ch2").attaches
    new = make_config(
        routes=[
            {
                "id": "r1",
                "channels": ["ch2", "ch3"],
                "sources": ["message", "presence", "lifecycle"],
                "targets": [{"type": "redis_stream", "key": "s:{channel}"}],
            }
        ]
    )
    rig.daemon.reload(new)
    rig.settle()
    assert rig.source.attached() == ["ch2", "ch3"]
    assert rig.source.channel("ch2").attaches == attaches  # untouched
    assert "ch1" in rig.source.detached
    sent = publish(rig, "ch3", 2)
    rig.settle()
    assert rig.ids("ch3") == sent


def test_reload_from_callable_keeps_old_routes_on_error() -> None:
    def broken() -> BridgeConfig:
        raise ValueError("bad file")

    rig = make_rig(reload_config=broken)
    rig.daemon.start()
    rig.daemon.request_reload()
    rig.daemon._do_reload()
    assert set(rig.daemon.tracks) == {"ch1", "ch2"}


def test_shutdown_drains_buffers_and_flushes_checkpoints() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    rig.sink.fail_with(ConnectionError("down"))
    sent = publish(rig, "ch1", 10)
    rig.settle()
    assert rig.daemon.dispatcher.pending() > 0
    rig.sink.recover()
    rig.daemon.shutdown(timeout=10)
    assert rig.daemon.dispatcher.pending() == 0
    assert rig.ids("ch1") == sent
    assert rig.checkpoints.data[("r1", "ch1")].id == sent[-1]
    assert rig.source.closed
    # after the stop nothing more is taken
    rig.daemon.step()
    assert rig.daemon.tracks["ch1"].phase == "stopped"


def test_shutdown_gives_up_after_the_timeout() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    rig.sink.fail_with(ConnectionError("down"))
    publish(rig, "ch1", 3)
    rig.settle()
    start = rig.clock.monotonic()
    rig.daemon.shutdown(timeout=5)
    assert rig.clock.monotonic() - start >= 5
    assert rig.daemon.dispatcher.pending() > 0


def test_run_stops_on_request() -> None:
    rig = make_rig()
    rig.daemon.request_stop()
    rig.daemon.run()
    assert rig.daemon.stopped and rig.source.closed


def test_metrics_reflect_the_data_path() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    publish(rig, "ch1", 3)
    rig.settle()
    text = rig.daemon.metrics.render()
    assert 'ably_bridge_events_received_total{source="message"} 3' in text
    assert (
        'ably_bridge_events_delivered_total{sink="redis_stream:memory://",outcome="delivered"}'
        in text
    )
    assert 'ably_bridge_channels{phase="live"} 2' in text
    assert 'ably_bridge_connection_state{state="connected"} 1' in text
    assert "ably_bridge_delivery_latency_seconds_count" in text


def test_events_of_an_abandoned_attachment_are_dropped_and_history_delivers_them_once() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    old = rig.source.channel("ch1").handlers
    assert old is not None
    rig.daemon._pause(rig.daemon.tracks["ch1"], "test")
    msg = rig.source.publish("ch1", "x", 1, deliver=False)
    old.messages([msg])  # the old listener is late; the channel resumes and backfills
    rig.settle()
    assert rig.ids("ch1") == [msg.id]


def test_short_sink_outage_queues_live_events_in_order_without_pausing() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    rig.sink.fail_with(ConnectionError("blip"))
    sent = publish(rig, "ch1", 70)  # more than the buffer, less than buffer + held bound
    rig.settle()
    track = rig.daemon.tracks["ch1"]
    assert track.phase == "live" and track.pending
    rig.sink.recover()
    for _ in range(5):
        rig.clock.advance(2.0)
        rig.settle()
    assert rig.ids("ch1") == sent
    assert rig.daemon.metrics.pauses.value() == 0


def test_a_backfill_larger_than_the_buffer_proceeds_in_chunks() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    first = publish(rig, "ch1", 1)
    rig.settle()
    gap = [str(m.id) for m in rig.source.lose_continuity("ch1", missed=500)]
    for _ in range(200):
        rig.settle()
        if rig.daemon.tracks["ch1"].pending == deque():
            break
    assert rig.ids("ch1") == first + gap
    assert rig.daemon.metrics.pauses.value() == 0


def test_presence_sync_replaces_snapshots_on_the_delivery_thread() -> None:
    synced: list[tuple[str, int]] = []
    rig = make_rig()
    rig.daemon.dispatcher.presence_synced = (  # type: ignore[method-assign]
        lambda channel, members: synced.append((channel, len(members)))
    )
    rig.source.presence_event("ch1", 2, "bob")
    rig.daemon.start()
    rig.settle()
    assert ("ch1", 1) in synced and ("ch2", 0) in synced


def test_a_channel_stuck_attaching_is_attached_again() -> None:
    rig = make_rig()
    rig.source.auto_attach = False
    rig.daemon.start()
    rig.settle()
    assert rig.daemon.tracks["ch1"].phase == "attaching"
    rig.clock.advance(61)
    rig.settle()
    assert rig.source.channel("ch1").attaches == 2
    rig.source.complete_attach("ch1")
    rig.settle()
    assert rig.daemon.tracks["ch1"].phase == "live"


def test_a_pattern_route_discovers_by_its_literal_prefix_and_backfills_the_poll_interval() -> None:
    config = make_config(
        routes=[
            {
                "id": "p",
                "channels": ["chat:*"],
                "targets": [{"type": "redis_stream", "key": "s:{channel}"}],
            }
        ]
    )
    rig = make_rig(config)
    rig.daemon.start()
    rig.settle()
    assert rig.source.attached() == []
    rig.clock.advance(50)
    old = publish(rig, "chat:1", 1)  # long before the poll that finds it
    rig.clock.advance(70)
    recent = publish(rig, "chat:1", 2)  # within one poll interval (30 s)
    publish(rig, "news:1", 1)
    rig.clock.advance(10)
    rig.settle()
    assert rig.source.attached() == ["chat:1"]
    assert rig.ids("chat:1") == recent and old[0] not in rig.ids("chat:1")


def test_literal_prefixes() -> None:
    from ably_bridge.bridge.discovery import literal_prefix

    assert literal_prefix("chat:*") == "chat:"
    assert literal_prefix("room-?") == "room-"
    assert literal_prefix("*:x") is None
    assert literal_prefix("re:^telemetry:dev[0-9]") == "telemetry:dev"
    assert literal_prefix("re:news") is None
    assert literal_prefix("exact") is None


def test_events_ahead_of_a_late_state_change_are_kept() -> None:
    """Listeners run on separate queues: a SUSPENDED may arrive after newer messages."""
    executor = ManualExecutor()
    rig = make_rig(executor=executor)
    rig.daemon.start()
    rig.settle()
    executor.run_all()
    rig.settle()
    src = rig.source
    handlers = src.channel("ch1").handlers
    assert handlers is not None
    gap = [src.publish("ch1", "gap", i, deliver=False) for i in range(2)]
    s2 = str(gap[-1].serial)
    handlers.state(StateChange("attached", "attaching", "attached", False, None, s2))
    new1 = src.publish("ch1", "new", 1, deliver=False)
    handlers.messages([new1])
    handlers.state(StateChange("suspended", "attached", "suspended"))  # late
    new2 = src.publish("ch1", "new", 2, deliver=False)
    handlers.messages([new2])
    handlers.state(StateChange("attached", "suspended", "attached", False, None, s2))
    rig.settle()
    executor.run_all()
    rig.settle()
    assert rig.ids("ch1") == [str(m.id) for m in (*gap, new1, new2)]


def test_the_same_attach_point_reported_twice_starts_one_backfill() -> None:
    executor = ManualExecutor()
    rig = make_rig(executor=executor)
    rig.daemon.start()
    rig.settle()
    assert len(executor.jobs) == 2  # ch1, ch2
    handlers = rig.source.channel("ch1").handlers
    assert handlers is not None
    serial = rig.daemon.tracks["ch1"].attach_serial
    handlers.state(StateChange("attached", "attaching", "attached", False, None, serial))
    rig.settle()
    assert len(executor.jobs) == 2


def test_only_channels_with_waiting_events_are_drained() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    first = publish(rig, "ch1", 1)
    rig.settle()
    drains = rig.daemon.metrics.held_drains
    before = drains.total()
    rig.settle()
    assert drains.total() == before  # nothing waits: no channel visited
    gap = [str(m.id) for m in rig.source.lose_continuity("ch1", missed=500)]
    for _ in range(200):
        rig.settle()
        if not rig.daemon.tracks["ch1"].pending:
            break
    assert rig.ids("ch1") == first + gap
    drained = drains.total()
    assert drained > before  # ch1's backfill waited and was drained
    rig.settle()
    assert drains.total() == drained  # forgotten once drained (ch2 never waited)


def test_gauges_of_many_channels_are_refreshed_at_most_every_interval() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    for i in range(MANY_CHANNELS):  # idle tracks, as attached channels would be
        rig.daemon.tracks[f"extra-{i}"] = ChannelTrack(f"extra-{i}", phase="live")
    rig.clock.advance(GAUGE_INTERVAL)
    rig.daemon.step()  # refreshed: the interval has passed

    def live() -> float:
        return rig.daemon.metrics.channels.value("live")

    assert live() == MANY_CHANNELS + 2
    rig.daemon.tracks["extra-0"].phase = "stopped"
    rig.daemon.step()
    assert live() == MANY_CHANNELS + 2  # within the interval: not walked again
    rig.clock.advance(GAUGE_INTERVAL)
    rig.daemon.step()
    assert live() == MANY_CHANNELS + 1


def test_timers_of_many_channels_are_walked_every_scan_interval() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    for i in range(MANY_CHANNELS):
        rig.daemon.tracks[f"extra-{i}"] = ChannelTrack(f"extra-{i}", phase="live")
    rig.clock.advance(SCAN_INTERVAL)
    rig.daemon.step()  # a scan: the next one is SCAN_INTERVAL away
    track = rig.daemon.tracks["ch1"]
    attaches = rig.source.channel("ch1").attaches
    track.phase, track.retry_at = "failed", rig.clock.monotonic()  # due now
    rig.daemon.step()
    assert rig.source.channel("ch1").attaches == attaches  # not walked in this step
    rig.clock.advance(SCAN_INTERVAL)
    rig.daemon.step()
    assert rig.source.channel("ch1").attaches == attaches + 1  # re-attached at the scan
