"""Positions: where a channel's delivery got to (the value a checkpoint holds).

This module owns :class:`Position` and its JSON form; the checkpoint store
(:mod:`ably_bridge.bridge.checkpoint`) persists it, the core decides with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["PRESENCE_TRACK", "Position", "presence_track", "route_of_track"]

# A route's presence events are checkpointed apart from its messages (they are
# read back from a different history): under the route id with this suffix,
# a "track" of the route. (A NUL cannot come from a configuration file.)
PRESENCE_TRACK = "\x00presence"


# json.dumps with separators builds an encoder per call; one made once writes the same.
_encode = json.JSONEncoder(separators=(",", ":")).encode
_string = json.encoder.encode_basestring_ascii  # (what _encode writes a str with)


def presence_track(route_id: str) -> str:
    """The checkpoint track of ``route_id``'s presence events."""
    return route_id + PRESENCE_TRACK


def route_of_track(track: str) -> tuple[str, bool]:
    """``(route id, is the presence track)`` of a checkpoint track."""
    if track.endswith(PRESENCE_TRACK):
        return track[: -len(PRESENCE_TRACK)], True
    return track, False


@dataclass(slots=True)
class Position:
    """Where a channel's delivery got to: the last confirmed event.

    Made for every event, so not a frozen dataclass (three times as costly to
    make); never changed once made.
    """

    timestamp: int
    id: str | None = None
    serial: str | None = None

    def to_json(self) -> str:
        """``{"id":..,"serial":..,"timestamp":..}``, compact, ASCII (one per checkpoint
        save of a channel: written here directly, the same text as ``_encode``'s)."""
        id_, serial, ts = self.id, self.serial, self.timestamp
        if (
            type(ts) is int
            and (id_ is None or type(id_) is str)
            and (serial is None or type(serial) is str)
        ):
            id_text = "null" if id_ is None else _string(id_)
            serial_text = "null" if serial is None else _string(serial)
            return f'{{"id":{id_text},"serial":{serial_text},"timestamp":{ts}}}'
        return _encode({"id": id_, "serial": serial, "timestamp": ts})

    @classmethod
    def from_json(cls, text: str | bytes) -> Position:
        raw: Any = json.loads(text)
        return cls(
            timestamp=int(raw.get("timestamp") or 0),
            id=raw.get("id") if isinstance(raw.get("id"), str) else None,
            serial=raw.get("serial") if isinstance(raw.get("serial"), str) else None,
        )
