"""Start points are fixed once per channel and survive retries and re-attaches (issue 16)."""

from __future__ import annotations

from ably_bridge.bridge.checkpoint import Position
from ably_bridge.bridge.core.start_points import StartPoints
from tests.bridge.daemon_fakes import make_config
from tests.bridge.test_daemon import make_rig, publish


def test_a_start_point_is_fixed_when_first_seen() -> None:
    starts = StartPoints(skew_ms=5000)
    first = starts.see("ch", 100_000, lookback_s=30)
    again = starts.see("ch", 900_000, lookback_s=30)
    assert again is first and first.position == Position(timestamp=65_000)
    assert first.discovered
    assert starts.plan("ch").read_seed and starts.plan("ch").seed == Position(timestamp=65_000)


def test_a_configured_channel_reads_from_its_first_attach_request_every_time() -> None:
    """Even the first backfill of the first attachment reads history from the start
    point: what was published between the attach request and ATTACHED reaches no
    listener (simulation seed 103830 lost it when an attach came within the margin)."""
    starts = StartPoints(skew_ms=5000)
    starts.see("ch", 100_000)
    for _ in range(3):  # the first backfill, a retry, a later attachment: all the same
        plan = starts.plan("ch")
        assert plan.read_seed and plan.seed == Position(timestamp=95_000)


def test_a_channel_discovered_while_checkpoints_are_down_keeps_its_start_point() -> None:
    config = make_config(
        routes=[
            {
                "id": "p",
                "channels": ["chat:*"],
                "discover": {"prefixes": ["chat:"], "interval": 5},
                "targets": [{"type": "redis_stream", "key": "s:{channel}"}],
            }
        ]
    )
    rig = make_rig(config)
    rig.checkpoints.fail = True  # Redis down from the start
    rig.daemon.start()
    rig.settle()
    sent = publish(rig, "chat:1", 3)
    rig.clock.advance(5)
    rig.settle()
    assert rig.source.attached() == ["chat:1"]
    seen_at = rig.daemon.starts.get("chat:1")
    assert seen_at is not None
    for _ in range(20):  # a long outage: many backfill retries, far past the look-back
        sent += publish(rig, "chat:1", 2)
        rig.clock.advance(30)
        rig.settle()
    assert rig.ids("chat:1") == []
    rig.checkpoints.fail = False
    rig.clock.advance(60)
    rig.settle()
    assert rig.ids("chat:1") == sent  # every one, in order, once
    assert rig.daemon.starts.get("chat:1") is seen_at and seen_at.saved


def test_a_configured_channel_paused_before_its_seed_was_saved_replays_from_its_first_attach() -> (
    None
):
    rig = make_rig(make_config(delivery={"buffer_size": 8}))
    rig.checkpoints.fail = True
    rig.daemon.start()
    rig.settle()
    sent = []
    for _ in range(10):  # live events pile up behind the failing backfill: paused, re-attached
        sent += publish(rig, "ch1", 3)
        rig.clock.advance(20)
        rig.settle()
    assert rig.daemon.metrics.pauses.value() >= 1
    rig.checkpoints.fail = False
    for _ in range(10):  # (small buffers: the replay is paced by back-pressure)
        rig.clock.advance(30)
        rig.settle()
    assert rig.ids("ch1") == sent
