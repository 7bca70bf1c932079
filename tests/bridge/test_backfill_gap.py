"""Where a channel's gap starts (``gap_messages``) and how it is queued (``put_gap_first``)."""

from __future__ import annotations

from typing import Any

from ably_bridge.bridge.backfill import gap_messages
from ably_bridge.bridge.checkpoint import Position
from ably_bridge.bridge.tracks import ChannelTrack, Live
from ably_bridge.protocol.models import Message
from tests.bridge.daemon_fakes import MemoryCheckpoints

SEED = Position(timestamp=1_000)


class History:
    """Records what it was asked for; answers with numbered messages."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Position, str | None]] = []

    def since(self, channel: str, position: Position, attach_serial: str | None) -> list[Message]:
        self.asked.append((channel, position, attach_serial))
        return [Message("m", i, id=f"h:{i}") for i in range(3)]


def test_a_first_attach_starts_at_the_attach_point_and_seeds_every_route() -> None:
    checkpoints, history = MemoryCheckpoints(), History()
    got = gap_messages(checkpoints, history, "ch", ["r1", "r2"], "s1", SEED)
    assert got == [] and history.asked == []
    assert checkpoints.data == {("r1", "ch"): SEED, ("r2", "ch"): SEED}


def test_a_discovered_channel_is_read_from_the_seed() -> None:
    history = History()
    got = gap_messages(MemoryCheckpoints(), history, "ch", ["r1"], None, SEED, read_seed=True)
    assert len(got) == 3 and history.asked == [("ch", SEED, None)]


def test_the_oldest_checkpoint_of_the_routes_decides_and_a_new_route_is_seeded() -> None:
    checkpoints, history = MemoryCheckpoints(), History()
    old, newer = Position(timestamp=500, id="a"), Position(timestamp=900, id="b")
    checkpoints.data = {("r1", "ch"): newer, ("r2", "ch"): old}
    gap_messages(checkpoints, history, "ch", ["r1", "r2", "r3"], "s9", SEED)
    assert history.asked == [("ch", old, "s9")]
    assert checkpoints.data[("r3", "ch")] == SEED
    # Without a checkpoint store nothing is seeded, and a first attach reads nothing.
    assert gap_messages(None, history, "ch", ["r1"], None, SEED) == []


def live(payload: list[Message], epoch: int = 1) -> Live:
    return Live("ch", epoch, "messages", payload)


def test_the_gap_goes_first_in_chunks_and_its_copies_of_live_events_win() -> None:
    track = ChannelTrack("ch")
    overlap = Message("m", "late live copy", id="h:2")
    fresh = Message("m", "after the attach", id="l:1")
    track.pending.extend([live([overlap, fresh]), Live("ch", 1, "presence", ["p"])])
    track.held_live = 3
    gap = [Message("m", i, id=f"h:{i}") for i in range(3)]
    track.put_gap_first(gap, chunk=2)
    items: list[Any] = [(item.epoch, item.kind, item.payload) for item in track.pending]
    assert items == [
        (-1, "messages", gap[:2]),
        (-1, "messages", gap[2:]),
        (1, "messages", [fresh]),  # the live copy of h:2 was dropped
        (1, "presence", ["p"]),
    ]
    assert track.held_live == 2


def test_a_live_update_of_a_message_in_the_gap_is_kept() -> None:
    """An update has its message's id; only the same operation in the gap is a copy."""
    track = ChannelTrack("ch")
    version = {"serial": "s5", "timestamp": 5}
    update = Message("m", "edited", id="h:1", serial="s1", action=1, version=version)
    again = Message("m", "edited", id="h:1", serial="s1", action=1, version=dict(version))
    create = Message("m", "original", id="h:1", serial="s1", action=0)
    summary = Message("m", None, id="h:1", serial="s1", action=4, annotations={"summary": {}})
    track.pending.append(live([update, summary]))
    track.held_live = 2
    track.put_gap_first([create], chunk=10)
    assert [item.payload for item in track.pending] == [[create], [update, summary]]
    track.put_gap_first([again], chunk=10)  # the same update from history: a copy
    assert [item.payload for item in track.pending] == [[again], [create], [summary]]
    assert track.held_live == 1
