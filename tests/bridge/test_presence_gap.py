"""Presence gap-fill: missed enter/update/leave events are read from presence history
(from the route's presence checkpoint) and delivered in order before live ones."""

from __future__ import annotations

import logging

import pytest

from ably_bridge.bridge.core.position import presence_track
from ably_bridge.clock import FakeClock
from ably_bridge.protocol.models import PresenceMessage
from tests.bridge.daemon_fakes import MemoryCheckpoints
from tests.bridge.test_daemon import Rig, make_rig

ENTER, LEAVE, UPDATE = 2, 3, 4


def presence(rig: Rig, channel: str) -> list[tuple[str, int]]:
    return [
        (r.envelope.event_id, int(r.envelope.item["action"]))
        for r in rig.sink.records
        if r.envelope.channel == channel and r.envelope.source == "channel.presence"
    ]


def events(
    rig: Rig, channel: str, actions: list[tuple[int, str]], *, deliver: bool = True
) -> list[PresenceMessage]:
    out = []
    for action, who in actions:
        rig.clock.advance(0.001)
        out.append(rig.source.presence_event(channel, action, who, deliver=deliver))
    return out


def ids(sent: list[PresenceMessage]) -> list[tuple[str, int]]:
    return [(str(m.id), int(m.action)) for m in sent]


def test_presence_missed_while_the_bridge_was_down_is_delivered_first_on_restart() -> None:
    clock, cps = FakeClock(), MemoryCheckpoints()
    first = make_rig(checkpoints=cps, clock=clock)
    first.daemon.start()
    first.settle()
    src = first.source
    before = events(first, "ch1", [(ENTER, "a"), (UPDATE, "a")])
    first.settle()
    assert presence(first, "ch1") == ids(before)
    assert cps.data[(presence_track("r1"), "ch1")].id == before[-1].id
    first.daemon.shutdown()
    src.closed, src.state = False, "connected"
    clock.advance(1)
    down = events(first, "ch1", [(ENTER, "b"), (LEAVE, "a"), (UPDATE, "b")])  # bridge down
    second = make_rig(checkpoints=cps, source=src, clock=clock)
    second.daemon.start()
    second.settle()
    clock.advance(1)
    after = events(second, "ch1", [(LEAVE, "b")])
    second.settle()
    assert presence(second, "ch1") == ids(down + after)  # in order, the missed ones first
    assert ("ch1", before[-1].id) in [(c, p.id if p else None) for c, p in src.presence_calls]


def test_presence_missed_in_a_continuity_loss_is_gap_filled_before_live_events() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    src = rig.source
    live = events(rig, "ch1", [(ENTER, "a")])
    rig.settle()
    rig.clock.advance(1)
    missed = events(rig, "ch1", [(UPDATE, "a"), (ENTER, "b")], deliver=False)
    src.lose_continuity("ch1")
    rig.clock.advance(1)
    later = events(rig, "ch1", [(LEAVE, "a")])
    rig.settle()
    assert presence(rig, "ch1") == ids(live + missed + later)


def test_presence_held_for_a_down_sink_survives_a_crash() -> None:
    clock, cps = FakeClock(), MemoryCheckpoints()
    first = make_rig(checkpoints=cps, clock=clock)
    first.daemon.start()
    first.settle()
    src = first.source
    ok = events(first, "ch1", [(ENTER, "a")])
    first.settle()
    first.sink.fail_with(ConnectionError("down"))  # the sink is down from here on
    clock.advance(1)
    held = events(first, "ch1", [(UPDATE, "a"), (ENTER, "b")])
    first.settle()
    assert presence(first, "ch1") == ids(ok)
    assert cps.data[(presence_track("r1"), "ch1")].id == ok[-1].id  # not past the held ones
    # Crash: no shutdown, no drain. The next run starts from what was persisted.
    src.detached.clear()
    second = make_rig(checkpoints=cps, source=src, clock=clock)
    second.daemon.start()
    second.settle()
    assert presence(second, "ch1") == ids(held)


def test_without_presence_history_it_is_logged_once_per_channel_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig()
    rig.source.presence_history_kept = False
    with caplog.at_level(logging.WARNING, logger="ably_bridge.bridge.daemon"):
        rig.daemon.start()
        rig.settle()
        for _ in range(2):  # (the first attaches of ch1 and ch2 read it too)
            rig.clock.advance(1)
            rig.source.lose_continuity("ch1", missed=1)
            rig.settle()
    # Messages still flow, and nothing waits for the presence history.
    assert {t.phase for t in rig.daemon.tracks.values()} == {"live"}
    assert rig.daemon.metrics.presence_history_unavailable.value() == 4  # 2 first + 2 gaps
    assert len(rig.ids("ch1")) == 2  # the missed messages were backfilled all the same
    lines = [r.getMessage() for r in caplog.records if "presence history" in r.getMessage()]
    assert len(lines) == 2  # once per channel, however often it was missed
    assert [
        any(f"of {ch} is not available" in line for line in lines) for ch in ("ch1", "ch2")
    ] == [
        True,
        True,
    ]
