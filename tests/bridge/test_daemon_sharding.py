"""The daemon with a shard view: owned channels, gains, losses, token changes, handovers.

Fake source, inline executor, FakeClock and a hand-driven shard view: no
threads, no sleeps.
"""

from __future__ import annotations

from ably_bridge.bridge.core.shards import shard_of
from ably_bridge.bridge.fencing import Fence
from tests.bridge.daemon_fakes import make_config
from tests.bridge.test_daemon import make_rig, publish

S = 8
NAMES = [f"c{i}" for i in range(12)]


class View:
    """A ShardView the test moves by hand."""

    shards = S

    def __init__(self, owned: set[int]) -> None:
        self.version = 1
        self._tokens = dict.fromkeys(owned, 1)
        self._releasing: set[int] = set()
        self.handed: list[int] = []
        self.problems: list[str] = []

    def tokens(self) -> dict[int, int]:
        return dict(self._tokens)

    def releasing(self) -> set[int]:
        return set(self._releasing)

    def handed_over(self, shard: int) -> None:
        self.handed.append(shard)

    def readiness(self) -> list[str]:
        return list(self.problems)

    def fence(self, channel: str) -> Fence | None:
        return None

    def start(self) -> None: ...

    def close(self) -> None: ...

    def change(self, tokens: dict[int, int], releasing: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self._tokens, self._releasing = dict(tokens), set(releasing)
        self.version += 1


def rig_with(view: View):  # type: ignore[no-untyped-def]
    config = make_config(
        routes=[{"id": "r1", "channels": NAMES, "sources": ["message"],
                 "targets": [{"type": "redis_stream", "key": "s:{channel}"}]}],
    )  # fmt: skip
    rig = make_rig(config)
    rig.daemon.shards = view
    return rig


def of(shards: set[int]) -> list[str]:
    return sorted(n for n in NAMES if shard_of(n, S) in shards)


def test_only_the_channels_of_owned_shards_are_attached() -> None:
    view = View({0, 1, 2})
    rig = rig_with(view)
    rig.daemon.start()
    rig.settle()
    assert rig.source.attached() == of({0, 1, 2})
    assert rig.daemon.readiness() == (True, [])
    view.problems = ["shard leases: not joined yet"]
    assert rig.daemon.readiness()[1] == ["shard leases: not joined yet"]


def test_a_gained_shard_is_attached_and_backfilled_from_its_checkpoint() -> None:
    view = View({0})
    rig = rig_with(view)
    rig.daemon.start()
    rig.settle()
    gained = of({1})
    name = gained[0]
    # Another replica delivered up to a checkpoint, then died; messages followed.
    before = publish(rig, name, 2)
    from ably_bridge.bridge.checkpoint import Position

    last = rig.source.channel(name).history[-1]
    rig.checkpoints.data[("r1", name)] = Position(int(last.timestamp or 0), last.id, last.serial)
    missed = publish(rig, name, 3)
    view.change({0: 1, 1: 5})
    assert rig.daemon.readiness()[1][-1] == "shard ownership changed; channels being updated"
    rig.settle()
    assert rig.source.attached() == of({0, 1})
    assert rig.ids(name) == missed and not set(before) & set(rig.ids(name))


def test_a_lost_shard_is_detached_at_once_and_its_queued_work_forgotten() -> None:
    view = View({0, 1})
    rig = rig_with(view)
    rig.daemon.start()
    rig.settle()
    lost = of({1})[0]
    rig.sink.fail_with(ConnectionError("down"))  # deliveries stay queued
    publish(rig, lost, 3)
    rig.settle()
    assert rig.daemon.dispatcher.pending() == 3
    view.change({0: 1})
    rig.daemon.step()
    assert lost not in rig.daemon.tracks and lost in rig.source.detached
    assert rig.daemon.dispatcher.pending() == 0
    rig.sink.recover()
    publish(rig, lost, 1)  # not ours any more: nothing reaches the sink
    rig.clock.advance(5)
    rig.settle()
    assert rig.ids(lost) == []


def test_a_shard_changing_token_is_reattached_and_backfilled() -> None:
    view = View({0, 1})
    rig = rig_with(view)
    rig.daemon.start()
    rig.settle()
    name = of({1})[0]
    first = rig.source.channel(name).attaches
    view.change({0: 1, 1: 9})  # lost and regained between two steps
    rig.settle()
    assert rig.source.channel(name).attaches == first + 1
    assert rig.daemon.tracks[name].phase == "live"


def test_a_handover_is_reported_only_when_nothing_is_in_flight() -> None:
    view = View({0, 1})
    rig = rig_with(view)
    rig.daemon.start()
    rig.settle()
    moving = of({1})[0]
    rig.sink.fail_with(ConnectionError("down"))
    sent = publish(rig, moving, 2)
    rig.settle()
    view.change({0: 1}, releasing={1})  # hand shard 1 over
    rig.daemon.step()
    assert moving not in rig.daemon.tracks  # stopped at once ...
    assert view.handed == []  # ... but its deliveries are still in flight
    assert rig.daemon.dispatcher.pending() == 2
    rig.sink.recover()
    rig.clock.advance(5)
    rig.settle()
    rig.daemon.step()
    assert rig.ids(moving) == sent  # delivered (the lease is still ours) ...
    assert view.handed == [1]  # ... then handed over
