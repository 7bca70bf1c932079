"""Checkpoints: per (route, channel), the last event every target confirmed.

This module owns the checkpoint store in Redis: one hash per route
(``<prefix>:checkpoint:<route>``) whose fields are channel names and whose
values are the JSON position ``{"id", "serial", "timestamp"}``. The daemon
advances a checkpoint only after every target of an event confirmed it, and
reads it on (re)attach to replay history back to it.

A checkpoint only moves **forward**, decided atomically in a Lua script:

* when both positions have a ``serial`` (Ably serials sort lexicographically,
  byte by byte), the new serial must be greater;
* otherwise the new ``timestamp`` must be later, or equal with a different id
  (events in the same millisecond cannot be ordered by id; replaying from that
  millisecond only re-delivers duplicates, which de-duplication absorbs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

__all__ = ["CheckpointStore", "Position"]

logger = logging.getLogger(__name__)

# KEYS[1] = route hash; ARGV = channel, timestamp, serial ('' = none), id ('' = none), value.
_ADVANCE_LUA = """
local function le(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local c = cjson.decode(cur)
  local serial = c['serial']
  if ARGV[3] ~= '' and type(serial) == 'string' and serial ~= '' then
    if le(ARGV[3], serial) then return 0 end
  else
    local ts = tonumber(ARGV[2])
    local cts = tonumber(c['timestamp']) or 0
    if ts < cts then return 0 end
    local cid = c['id']
    if type(cid) ~= 'string' then cid = '' end
    if ts == cts and ARGV[4] == cid then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
return 1
"""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a channel's delivery got to: the last confirmed event."""

    timestamp: int
    id: str | None = None
    serial: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "serial": self.serial, "timestamp": self.timestamp},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Position:
        raw: Any = json.loads(text)
        return cls(
            timestamp=int(raw.get("timestamp") or 0),
            id=raw.get("id") if isinstance(raw.get("id"), str) else None,
            serial=raw.get("serial") if isinstance(raw.get("serial"), str) else None,
        )


class CheckpointStore:
    """Checkpoints in Redis, one hash per route; advances are compare-and-set."""

    def __init__(self, client: redis.Redis, *, prefix: str = "ably-bridge") -> None:
        self._client = client
        self._prefix = prefix
        self._advance = client.register_script(_ADVANCE_LUA)

    def key(self, route_id: str) -> str:
        return f"{self._prefix}:checkpoint:{route_id}"

    def load(self, route_id: str, channel: str) -> Position | None:
        """The checkpoint of ``channel`` on ``route_id``, or None if never delivered."""
        raw = self._client.hget(self.key(route_id), channel)
        return None if raw is None else Position.from_json(raw)

    def load_all(self, route_id: str) -> dict[str, Position]:
        """Every channel's checkpoint on ``route_id``."""
        raw = self._client.hgetall(self.key(route_id))
        return {_text(ch): Position.from_json(value) for ch, value in raw.items()}

    def advance(self, route_id: str, channel: str, position: Position) -> bool:
        """Move the checkpoint to ``position`` if that is forward; True if it moved."""
        return bool(self._advance(keys=[self.key(route_id)], args=_args(channel, position)))

    def advance_many(self, route_id: str, positions: Mapping[str, Position]) -> dict[str, bool]:
        """Advance several channels of one route in one round trip."""
        if not positions:
            return {}
        key = self.key(route_id)
        pipe = self._client.pipeline(transaction=False)
        channels = list(positions)
        for channel in channels:
            self._advance(keys=[key], args=_args(channel, positions[channel]), client=pipe)
        results = pipe.execute()
        return {ch: bool(r) for ch, r in zip(channels, results, strict=True)}

    def delete(self, route_id: str, channel: str | None = None) -> None:
        """Forget one channel's checkpoint, or the whole route's."""
        if channel is None:
            self._client.delete(self.key(route_id))
        else:
            self._client.hdel(self.key(route_id), channel)


def _args(channel: str, position: Position) -> list[str | int]:
    return [
        channel,
        int(position.timestamp),
        position.serial or "",
        position.id or "",
        position.to_json(),
    ]


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
