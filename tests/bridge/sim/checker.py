"""The simulation's checker: what must hold after (and during) every run.

* **Checkpoint safety** (checked at every advance, before it is stored): a
  checkpoint never passes a required event that some target of its route has
  not confirmed (delivered, already there, or rejected into the dead letters).
* **Nothing lost, nothing twice, in order** (checked at the end, once every
  fault healed and the bridge went idle): every required event reached every
  target of its route exactly once after the sink's de-duplication, in the
  channel's order (messages and presence events each in their own order).

Required events are those after the channel's start point as the bridge first
decided it, in any run (a run that crashed before persisting it is covered by
the start watermark): a configured channel's from its first attach on, a
discovered one's from its look-back on (see
:mod:`ably_bridge.bridge.core.start_points`). Events published before that
predate the bridge seeing the channel and are not required.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ably_bridge.bridge.core.position import Position, route_of_track
from ably_bridge.bridge.core.start_points import StartPoint


@dataclass(frozen=True, slots=True)
class Published:
    key: str  # the envelope's dedup key: m:<id> or p:<id>
    timestamp: int
    serial: str | None  # messages only


@dataclass
class Checker:
    """Collects what was published and checks the invariants (see the module docstring)."""

    targets: dict[str, list[str]]  # route id -> sink names
    routes_of: Callable[[str], list[str]]  # channel -> route ids that take it
    start_of: Callable[[str], StartPoint | None]  # the running bridge's start point
    skew_ms: int
    published: dict[tuple[str, str], list[Published]] = field(default_factory=dict)
    required_after: dict[tuple[str, str], int] = field(default_factory=dict)  # (track, ch) -> ms
    confirmed: Callable[[str, str, str], bool] = lambda sink, channel, key: False
    violations: list[str] = field(default_factory=list)
    advances: int = 0

    def publish(self, channel: str, kind: str, item: Published) -> None:
        self.published.setdefault((channel, kind), []).append(item)

    # -- during the run --------------------------------------------------------
    def on_advance(self, track: str, channel: str, position: Position) -> None:
        route, presence = route_of_track(track)
        kind = "presence" if presence else "messages"
        if (track, channel) not in self.required_after:
            # The first checkpoint of a track is its seed; events from the start point
            # the bridge first decided for the channel on are required.
            point = self.start_of(channel)
            start = point.position.timestamp if point is not None else position.timestamp
            skew = 0 if point is not None and point.discovered else self.skew_ms
            self.required_after[(track, channel)] = start + skew
            return
        self.advances += 1
        after = self.required_after[(track, channel)]
        for item in self.published.get((channel, kind), []):
            if item.timestamp <= after or not _covers(position, item):
                continue
            for sink in self.targets[route]:
                if not self.confirmed(sink, channel, item.key):
                    self.violations.append(
                        f"checkpoint of {route}/{channel} ({kind}) moved to {position} past "
                        f"{item.key}, not confirmed by {sink}"
                    )
                    return

    # -- at the end ------------------------------------------------------------
    def final(
        self, records: Callable[[str, str], list[str]], rejected: Callable[[str], set[str]]
    ) -> None:
        for (channel, kind), items in sorted(self.published.items()):
            for route in self.routes_of(channel):
                track = route + "\x00presence" if kind == "presence" else route
                after = self.required_after.get((track, channel))
                if after is None:
                    self.violations.append(f"{route}/{channel} ({kind}): never seeded")
                    continue
                want = [i.key for i in items if i.timestamp > after]
                for sink in self.targets[route]:
                    prefix = "p:" if kind == "presence" else "m:"
                    got = [k for k in records(sink, channel) if k.startswith(prefix)]
                    if len(got) != len(set(got)):
                        self.violations.append(f"{sink}/{channel}: duplicates after dedup")
                    expected = [k for k in want if k not in rejected(sink)]
                    delivered = [k for k in got if k in set(expected)]
                    missing = [k for k in expected if k not in set(got)]
                    if missing:
                        self.violations.append(
                            f"{sink}/{channel} ({kind}): {len(missing)} of {len(expected)} "
                            f"lost, first {missing[0]}"
                        )
                    elif delivered != expected:
                        self.violations.append(f"{sink}/{channel} ({kind}): out of order")


def _covers(position: Position, item: Published) -> bool:
    """Whether a checkpoint at ``position`` says ``item`` was delivered."""
    if item.serial is not None and position.serial:
        return item.serial <= position.serial
    if position.id is not None and item.key[2:] == position.id:
        return True
    return item.timestamp < position.timestamp
