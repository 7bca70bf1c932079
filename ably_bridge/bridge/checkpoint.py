"""Checkpoints: per (route, channel), the last event every target confirmed.

This module owns the checkpoint store in Redis: one hash per route
(``<prefix>:checkpoint:<route>``; every name from :mod:`.redis_keys`) whose
fields are channel names and whose
values are the JSON position ``{"id", "serial", "timestamp"}``, and one per
route for its presence events (``<prefix>:presence-checkpoint:<route>``, the
route's presence track: they are read back from presence history). It also
keeps the start watermark (``<prefix>:start-watermark``, one field per scope:
``all``, or a shard): see :mod:`.core.start_points`. The daemon
advances a checkpoint only after every target of an event confirmed it, and
reads it on (re)attach to replay history back to it.

A checkpoint only moves **forward**, decided atomically in a Lua script:

* when both positions have a ``serial`` (Ably serials sort lexicographically,
  byte by byte), the new serial must be greater;
* otherwise the new ``timestamp`` must be later, or equal with a different id
  (events in the same millisecond cannot be ordered by id; replaying from that
  millisecond only re-delivers duplicates, which de-duplication absorbs).

With shard leases the store is given a :class:`~.fencing.Fencing`: every
advance then also passes the channel's shard token, and the script refuses it
when the token is stale (another replica owns the channel now), so a replica
that lost its lease cannot move a checkpoint past events it never wrote.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from ably_bridge.bridge.core.position import Position, route_of_track
from ably_bridge.bridge.fencing import FENCE_CHECK_LUA
from ably_bridge.bridge.redis_keys import keys_for

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

    from ably_bridge.bridge.fencing import Fence, Fencing

__all__ = ["CheckpointStore", "Position"]

logger = logging.getLogger(__name__)

# advance(key, channel, ts, serial, id, value): 1 if the channel's field of hash ``key``
# moved forward to value, else 0 (serial and id: '' = none); advance_json(key, channel,
# value) reads ts, serial and id from the position's JSON.
_ADVANCE_FN_LUA = """
local function le(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end
local function advance(key, channel, ts, serial, id, value)
  local cur = redis.call('HGET', key, channel)
  if cur then
    local c = cjson.decode(cur)
    local cserial = c['serial']
    if serial ~= '' and type(cserial) == 'string' and cserial ~= '' then
      if le(serial, cserial) then return 0 end
    else
      local cts = tonumber(c['timestamp']) or 0
      if ts < cts then return 0 end
      local cid = c['id']
      if type(cid) ~= 'string' then cid = '' end
      if ts == cts and id == cid then return 0 end
    end
  end
  redis.call('HSET', key, channel, value)
  return 1
end
local function text(v)
  if type(v) == 'string' then return v end
  return ''
end
-- advance, with the timestamp, serial and id read from the position's JSON (value)
local function advance_json(key, channel, value)
  local p = cjson.decode(value)
  local ts = math.floor(tonumber(p['timestamp']) or 0)
  return advance(key, channel, ts, text(p['serial']), text(p['id']), value)
end
"""

# KEYS[1] = route hash; ARGV = channel, timestamp, serial ('' = none), id ('' = none), value.
_ADVANCE_LUA = (
    _ADVANCE_FN_LUA
    + "return advance(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5])\n"
)

# Many channels of one route in one call: KEYS[1] = route hash; ARGV[1] = a JSON array
# [channel, value, channel, value, ...], each value a position's JSON (the timestamp,
# serial and id are read from it). One argument, not five per channel: packing the
# arguments was most of a save's client CPU. Returns one digit per channel ('1' moved,
# '0' not), as one string.
_ADVANCE_MANY_LUA = (
    _ADVANCE_FN_LUA
    + """
local list = cjson.decode(ARGV[1])
local out = {}
for i = 1, #list, 2 do
  out[#out + 1] = advance_json(KEYS[1], list[i], list[i + 1])
end
return table.concat(out)
"""
)
_MAX_CHANNELS_PER_CALL = 500  # bounds the time one script call holds the server

# The fenced variant of many channels: KEYS[2..] = the shards' token keys; ARGV[1] = a
# JSON array [channel, value, fence, token, ...]: fence = the index of the channel's
# token key among KEYS[2..] (from 1; 0 = unfenced), token as a string. Returns one
# character per channel: '1' moved, '0' not, 'f' refused (the token is stale).
_FENCED_ADVANCE_MANY_LUA = (
    FENCE_CHECK_LUA
    + _ADVANCE_FN_LUA
    + """
local list = cjson.decode(ARGV[1])
local out = {}
for i = 1, #list, 4 do
  local fence = list[i + 2]
  if fence > 0 and fenced(KEYS[1 + fence], list[i + 3]) then
    out[#out + 1] = 'f'
  else
    out[#out + 1] = advance_json(KEYS[1], list[i], list[i + 1])
  end
end
return table.concat(out)
"""
)


# KEYS[1] = the start-watermark hash; ARGV = scope, ms. Only raises it.
_RAISE_WATERMARK_LUA = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


# The fenced variant: KEYS[2] = the shard's token key, ARGV[6] = the token held;
# returns -1 (nothing written) when the token is stale.
_FENCED_ADVANCE_LUA = (
    FENCE_CHECK_LUA
    + _ADVANCE_FN_LUA
    + """
if fenced(KEYS[2], ARGV[6]) then return -1 end
return advance(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5])
"""
)


class CheckpointStore:
    """Checkpoints in Redis, one hash per route; advances are compare-and-set."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "ably-bridge",
        fencing: Fencing | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self.names = keys_for(client, prefix)
        self._advance = client.register_script(_ADVANCE_LUA)
        self._advance_many = client.register_script(_ADVANCE_MANY_LUA)
        self._fenced_advance = client.register_script(_FENCED_ADVANCE_LUA)
        self._fenced_advance_many = client.register_script(_FENCED_ADVANCE_MANY_LUA)
        self._raise_watermark = client.register_script(_RAISE_WATERMARK_LUA)
        self.fencing = fencing
        self.fenced = 0  # advances refused by a stale fencing token

    def key(self, route_id: str) -> str:
        """The hash of a route's message checkpoints, or (for its presence track,
        :func:`~.core.position.presence_track`) of its presence checkpoints."""
        route, presence = route_of_track(route_id)
        if presence:
            return self.names.presence_checkpoint(route)
        return self.names.checkpoint(route)

    def watermark_key(self) -> str:
        return self.names.start_watermark()

    def load_watermark(self, scope: str) -> int | None:
        """The start watermark of ``scope`` (ms): every start point decided up to it was
        persisted (:mod:`.core.start_points`); None if never written."""
        raw = self._client.hget(self.watermark_key(), scope)
        return None if raw is None else int(raw)

    def raise_watermark(self, scope: str, ms: int) -> bool:
        """Move the start watermark of ``scope`` up to ``ms`` (never down)."""
        reply = self._raise_watermark(keys=[self.watermark_key()], args=[scope, int(ms)])
        return bool(reply)

    def load(self, route_id: str, channel: str) -> Position | None:
        """The checkpoint of ``channel`` on ``route_id``, or None if never delivered."""
        raw = self._client.hget(self.key(route_id), channel)
        return None if raw is None else Position.from_json(raw)

    def load_all(self, route_id: str) -> dict[str, Position]:
        """Every channel's checkpoint on ``route_id``."""
        raw = self._client.hgetall(self.key(route_id))
        return {_text(ch): Position.from_json(value) for ch, value in raw.items()}

    def advance(
        self, route_id: str, channel: str, position: Position, fence: Fence | None = None
    ) -> bool:
        """Move the checkpoint to ``position`` if that is forward; True if it moved.

        With fencing, ``fence`` (default: the channel's current one) must hold.
        """
        reply = self._call(self.key(route_id), channel, position, fence, None)
        return self._moved(channel, reply)

    def advance_many(
        self,
        route_id: str,
        positions: Mapping[str, Position],
        fences: Mapping[str, Fence] | None = None,
    ) -> dict[str, bool]:
        """Advance several channels of one route in one round trip (fences as in advance).

        The scripts run by ``EVALSHA`` in one pipeline; only when the server does
        not know them (restarted, flushed) are they loaded and those calls redone,
        so a save is one round trip (a registered script in a pipeline would first
        ask ``SCRIPT EXISTS``: two). Without fencing, one call advances up to
        ``_MAX_CHANNELS_PER_CALL`` channels (at one message per frame over many
        channels a save holds about one channel per message: one command each cost
        more client CPU than the rest of the save); so does one call with fencing,
        each channel with its shard's token.
        """
        if not positions:
            return {}
        key = self.key(route_id)
        channels = list(positions)
        if self.fencing is None and not fences:
            return self._advance_unfenced(key, channels, positions)
        return self._advance_fenced(key, channels, positions, fences or {})

    def _advance_fenced(
        self,
        key: str,
        channels: list[str],
        positions: Mapping[str, Position],
        fences: Mapping[str, Fence],
    ) -> dict[str, bool]:
        """As :meth:`_advance_unfenced`, each channel with its fence (given, else the
        channel's current one; none: unfenced): up to ``_MAX_CHANNELS_PER_CALL`` channels
        a call, whatever their shards (the token keys share the checkpoints' slot)."""
        calls: list[tuple[Script, list[str], list[Any]]] = []
        for start in range(0, len(channels), _MAX_CHANNELS_PER_CALL):
            tokens: dict[str, int] = {}  # token key -> its index among KEYS[2..]
            flat: list[Any] = []
            for channel in channels[start : start + _MAX_CHANNELS_PER_CALL]:
                fence = fences.get(channel)
                if fence is None and self.fencing is not None:
                    fence = self.fencing.fence(channel)
                flat.append(channel)
                flat.append(positions[channel].to_json())
                if fence is None:
                    flat.append(0)
                    flat.append("")
                else:
                    flat.append(tokens.setdefault(fence.key, len(tokens) + 1))
                    flat.append(str(fence.token))
            calls.append((self._fenced_advance_many, [key, *tokens], [_dumps(flat)]))
        answers: list[str] = []
        for reply in self._evalsha(calls):
            if isinstance(reply, Exception):
                raise reply
            answers.append(reply.decode("ascii") if isinstance(reply, bytes) else str(reply))
        digits = "".join(answers)
        return {
            ch: self._moved(ch, -1 if d == "f" else int(d))
            for ch, d in zip(channels, digits, strict=True)
        }

    def _advance_unfenced(
        self, key: str, channels: list[str], positions: Mapping[str, Position]
    ) -> dict[str, bool]:
        calls: list[tuple[Script, list[str], list[Any]]] = []
        for start in range(0, len(channels), _MAX_CHANNELS_PER_CALL):
            flat: list[str] = []
            for channel in channels[start : start + _MAX_CHANNELS_PER_CALL]:
                flat.append(channel)
                flat.append(positions[channel].to_json())
            calls.append((self._advance_many, [key], [_dumps(flat)]))
        moved: list[bool] = []
        for reply in self._evalsha(calls):
            if isinstance(reply, Exception):
                raise reply
            text = reply.decode("ascii") if isinstance(reply, bytes) else str(reply)
            moved.extend(digit == "1" for digit in text)
        return dict(zip(channels, moved, strict=True))

    def _evalsha(self, calls: list[tuple[Script, list[str], list[Any]]]) -> list[Any]:
        replies = self._pipeline(calls)
        redo = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if redo:
            for script in {id(calls[i][0]): calls[i][0] for i in redo}.values():
                self._client.script_load(script.script)
            for i, reply in zip(redo, self._pipeline([calls[i] for i in redo]), strict=True):
                replies[i] = reply
        return replies

    def _pipeline(self, calls: list[tuple[Script, list[str], list[Any]]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))

    def _script_call(
        self, key: str, channel: str, position: Position, fence: Fence | None
    ) -> tuple[Script, list[str], list[Any]]:
        if fence is None and self.fencing is not None:
            fence = self.fencing.fence(channel)
        if fence is None:
            return self._advance, [key], _args(channel, position)
        return self._fenced_advance, [key, fence.key], [*_args(channel, position), fence.token]

    def _call(
        self, key: str, channel: str, position: Position, fence: Fence | None, client: Any
    ) -> Any:
        script, keys, args = self._script_call(key, channel, position, fence)
        return script(keys=keys, args=args, client=client)

    def _moved(self, channel: str, reply: Any) -> bool:
        if reply == -1:
            self.fenced += 1
            logger.info("checkpoint of %s refused: the shard's lease moved on", channel)
            return False
        return bool(reply)

    def delete(self, route_id: str, channel: str | None = None) -> None:
        """Forget one channel's checkpoint, or the whole route's."""
        if channel is None:
            self._client.delete(self.key(route_id))
        else:
            self._client.hdel(self.key(route_id), channel)


# (UTF-8 as it is: the script's cjson passes it through)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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
