"""The Lua scripts the Redis Streams sinks run: XADD each event once, marked for de-duplication.

One call carries the events of several streams (one *group* per stream; on
one node every stream of a batch, on a Redis Cluster the streams of one hash
slot). For each group, :data:`XADD_DEDUP_LUA` appends the events unless their
dedup mark is in the stream's current or previous dedup hash, marks the new
ones and refreshes the current hash's expiry; :data:`XADD_DEDUP_FENCED_LUA`
also refuses an event whose shard fencing token is stale (:mod:`..fencing`).
A group that fails (``WRONGTYPE``: the key is not a stream) fails alone: the
script answers its error in its place and goes on with the next group, so one
bad stream does not take the others' events with it.
:class:`~.redis_streams.RedisStreamSink` runs them on one node; the cluster sink
(:mod:`.redis_cluster`) derives its mirror-fenced variant from the fenced one.

Layout::

    KEYS = per group: stream, dedup hash (current bucket), dedup hash (previous),
           then the group's shard token keys (fenced variant only)
    ARGV[1] = expiry of the dedup hashes in seconds
    then per group: b (KEYS index of its stream), maxlen (0 = no trimming),
           '1' for approximate trimming, s (how many ARGV entries its events take),
           then s entries, per event: mark, [fence (index into the group's token
           keys from 1, 0 = unfenced), token,] n, then n strings
           (field, value, field, value, ...); n = 0: one string, the value
           of the one field ``envelope`` (the envelope layout)

Answers one string per group: the new stream id per event, 0 for a
duplicate, -1 when fenced, joined by commas (one bulk string parses far faster
than one reply per event); or ``!`` followed by the error that stopped the group.
"""

from __future__ import annotations

from ably_bridge.bridge.fencing import FENCE_CHECK_LUA

__all__ = ["XADD_DEDUP_FENCED_LUA", "XADD_DEDUP_LUA"]

# append(g, mark, first, last): XADD the fields ARGV[first..last] (first > last: the
# field 'envelope' = ARGV[last]) to the group's stream and set the dedup mark, unless the
# mark is already in either bucket. Returns the new id, or 0.
_APPEND_LUA = """
local function append(g, mark, first, last)
  if redis.call('HEXISTS', g.current, mark) == 1
      or redis.call('HEXISTS', g.previous, mark) == 1 then
    return 0
  end
  local args = {g.stream}
  if g.maxlen > 0 then
    args[#args + 1] = 'MAXLEN'
    if g.approx then args[#args + 1] = '~' end
    args[#args + 1] = g.maxlen
  end
  args[#args + 1] = '*'
  if first > last then
    args[#args + 1] = 'envelope'
    args[#args + 1] = ARGV[last]
  else
    for j = first, last do args[#args + 1] = ARGV[j] end
  end
  local id = redis.call('XADD', unpack(args))
  redis.call('HSET', g.current, mark, id)
  g.marked = true
  return id
end
"""

# The loop over the groups; EVENTS is the loop over one group's events (ARGV[i..last]).
_GROUPS_LUA = """
local function events(g, i, last)
  local out = {}
%s
  return table.concat(out, ',')
end
local replies = {}
local i = 2
while i <= #ARGV do
  local b = tonumber(ARGV[i])
  local g = {stream = KEYS[b], current = KEYS[b + 1], previous = KEYS[b + 2], base = b + 2,
             maxlen = tonumber(ARGV[i + 1]), approx = ARGV[i + 2] == '1', marked = false}
  local last = i + 3 + tonumber(ARGV[i + 3])
  local ok, reply = pcall(events, g, i + 4, last)
  if g.marked then redis.call('EXPIRE', g.current, ARGV[1]) end
  if not ok then
    if type(reply) == 'table' then reply = reply.err end
    reply = '!' .. tostring(reply)
  end
  replies[#replies + 1] = reply
  i = last + 1
end
return replies
"""

XADD_DEDUP_LUA = _APPEND_LUA + _GROUPS_LUA % (
    """
  while i <= last do
    local nf = tonumber(ARGV[i + 1])
    if nf == 0 then
      out[#out + 1] = append(g, ARGV[i], i + 3, i + 2)
      nf = 1
    else
      out[#out + 1] = append(g, ARGV[i], i + 2, i + 1 + nf)
    end
    i = i + 2 + nf
  end"""
)

XADD_DEDUP_FENCED_LUA = (
    FENCE_CHECK_LUA
    + _APPEND_LUA
    + _GROUPS_LUA
    % (
        """
  while i <= last do
    local fence = tonumber(ARGV[i + 1])
    local nf = tonumber(ARGV[i + 3])
    if fence > 0 and fenced(KEYS[g.base + fence], ARGV[i + 2]) then
      out[#out + 1] = -1
    elseif nf == 0 then
      out[#out + 1] = append(g, ARGV[i], i + 5, i + 4)
    else
      out[#out + 1] = append(g, ARGV[i], i + 4, i + 3 + nf)
    end
    if nf == 0 then nf = 1 end
    i = i + 4 + nf
  end"""
    )
)
