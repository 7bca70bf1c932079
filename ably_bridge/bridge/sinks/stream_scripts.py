"""The Lua scripts the Redis Streams sinks run: XADD each event once, marked for de-duplication.

:data:`XADD_DEDUP_LUA` appends the events of one stream unless their dedup
mark is in the stream's current or previous dedup hash, marks the new ones and
refreshes the current hash's expiry; :data:`XADD_DEDUP_FENCED_LUA` also refuses
an event whose shard fencing token is stale (:mod:`..fencing`). Both answer one
comma-joined string (one bulk reply parses far faster than one per event).
:class:`~.redis_streams.RedisStreamSink` runs them on one node; the cluster sink
(:mod:`.redis_cluster`) derives its mirror-fenced variant from the fenced one.
"""

from __future__ import annotations

from ably_bridge.bridge.fencing import FENCE_CHECK_LUA

__all__ = ["XADD_DEDUP_FENCED_LUA", "XADD_DEDUP_LUA"]

# KEYS[1] = stream, KEYS[2] = dedup hash (current bucket), KEYS[3] = dedup hash (previous)
# ARGV[1] = maxlen (0 = no trimming), ARGV[2] = '1' for approximate trimming,
# ARGV[3] = expiry of the dedup hash in seconds,
# then per event: mark, n, then n strings (field, value, field, value, ...).
# Returns one entry per event: the new stream id, or 0 for a duplicate, joined by
# commas into one string (one bulk reply parses far faster than one per event).
# append(mark, first, last): XADD the fields ARGV[first..last] and set the dedup
# mark, unless the mark is already in either bucket. Returns the new id, or 0.
_APPEND_LUA = """
local maxlen = tonumber(ARGV[1])
local approx = ARGV[2] == '1'
local marked = false
local function append(mark, first, last)
  if redis.call('HEXISTS', KEYS[2], mark) == 1 or redis.call('HEXISTS', KEYS[3], mark) == 1 then
    return 0
  end
  local args = {KEYS[1]}
  if maxlen > 0 then
    args[#args + 1] = 'MAXLEN'
    if approx then args[#args + 1] = '~' end
    args[#args + 1] = maxlen
  end
  args[#args + 1] = '*'
  for j = first, last do args[#args + 1] = ARGV[j] end
  local id = redis.call('XADD', unpack(args))
  redis.call('HSET', KEYS[2], mark, id)
  marked = true
  return id
end
"""

XADD_DEDUP_LUA = (
    _APPEND_LUA
    + """
local out = {}
local i = 4
while i <= #ARGV do
  local nf = tonumber(ARGV[i + 1])
  out[#out + 1] = append(ARGV[i], i + 2, i + 1 + nf)
  i = i + 2 + nf
end
if marked then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return table.concat(out, ',')
"""
)

# The fenced variant: KEYS[4..] are shard token keys; per event: mark, fence
# (index into KEYS counted from 4, 0 = unfenced), token, n, then n strings.
# Returns per event: the new stream id, 0 for a duplicate, -1 when fenced (joined
# by commas, as above).
XADD_DEDUP_FENCED_LUA = (
    FENCE_CHECK_LUA
    + _APPEND_LUA
    + """
local out = {}
local i = 4
while i <= #ARGV do
  local fence = tonumber(ARGV[i + 1])
  local nf = tonumber(ARGV[i + 3])
  if fence > 0 and fenced(KEYS[3 + fence], ARGV[i + 2]) then
    out[#out + 1] = -1
  else
    out[#out + 1] = append(ARGV[i], i + 4, i + 3 + nf)
  end
  i = i + 4 + nf
end
if marked then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return table.concat(out, ',')
"""
)
