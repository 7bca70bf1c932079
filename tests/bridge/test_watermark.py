"""The start watermark: a crash while Redis is down does not lose a start point."""

from __future__ import annotations

from ably_bridge.bridge.core.position import Position
from ably_bridge.bridge.core.start_points import StartPoints, floored
from ably_bridge.bridge.source import FakeSource
from ably_bridge.clock import FakeClock
from tests.bridge.daemon_fakes import MemoryCheckpoints, make_config
from tests.bridge.test_daemon import make_rig, publish

DISCOVER = make_config(
    routes=[
        {
            "id": "p",
            "channels": ["chat:*"],
            "discover": {"prefixes": ["chat:"], "interval": 5},
            "targets": [{"type": "redis_stream", "key": "s:{channel}"}],
        }
    ]
)


def test_settled_until_waits_for_the_oldest_unsaved_start_point() -> None:
    starts = StartPoints(skew_ms=5000)
    assert starts.settled_until(1_000) == 1_000  # nothing unsaved
    starts.see("a", 200)
    starts.see("b", 300)
    assert starts.settled_until(1_000) == 199
    assert starts.unsaved_before(250) and not starts.unsaved_before(150)
    starts.saved("a")
    assert starts.settled_until(1_000) == 299
    assert starts.settled_until(1_000, lambda ch: ch != "b") == 1_000
    starts.lower("b", -9_000)
    assert starts.get("b").position == Position(-9_000)  # type: ignore[union-attr]
    starts.lower("b", 0)  # (only earlier)
    starts.saved("b")
    starts.lower("b", -10_000)  # a saved start point never moves
    assert starts.get("b").position == Position(-9_000)  # type: ignore[union-attr]


def test_floored_goes_back_to_the_watermark_within_bounds() -> None:
    assert floored(90_000, None, 5_000, 5_000, 100_000, 60_000) == 90_000
    assert floored(90_000, 50_000, 5_000, 5_000, 100_000, 60_000) == 40_000
    assert floored(90_000, 10_000, 5_000, 5_000, 100_000, 60_000) == 40_000  # max age
    assert floored(90_000, 99_000, 5_000, 5_000, 100_000, 60_000) == 89_000


def test_a_crash_while_redis_is_down_keeps_a_discovered_channels_start() -> None:
    clock, cps = FakeClock(), MemoryCheckpoints()
    source = FakeSource(time_ms=clock.time_ms)
    first = make_rig(DISCOVER, checkpoints=cps, clock=clock, source=source)
    first.daemon.start()
    first.settle()
    clock.advance(2)
    first.settle()
    assert "all" in cps.watermarks  # raised while all is well
    cps.fail = True  # Redis goes down...
    sent = publish(first, "chat:1", 3)  # ...a new channel starts...
    clock.advance(5)
    first.settle()
    assert first.source.attached() == ["chat:1"]  # ...is found, its start point unsaved
    for _ in range(10):  # (the watermark stays before it)
        sent += publish(first, "chat:1", 1)
        clock.advance(3)
        first.settle()
    assert cps.watermarks["all"] < first.daemon.starts.get("chat:1").decided_at  # type: ignore[union-attr]
    # The bridge dies; Redis comes back; a new run finds the channel later than the
    # first did: without the watermark its start would be "now - interval - margin".
    source.close()
    source.closed, source.state = False, "connected"
    clock.advance(20)
    cps.fail = False
    second = make_rig(DISCOVER, checkpoints=cps, clock=clock, source=source)
    second.daemon.start()
    second.settle()
    clock.advance(1)
    second.settle()
    assert second.ids("chat:1") == sent  # every one, from the first run's start point on
