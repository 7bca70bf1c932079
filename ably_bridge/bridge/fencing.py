"""Fencing tokens: how a write proves its replica still owns the channel's shard.

This module owns the small contract between the shard leases
(:mod:`.sharding`) and the writers that must refuse stale replicas: the Redis
Streams sink and the checkpoint store. A lease on a shard comes with a
*fencing token*, a number on the shard's token key that grows on every new
claim (never below the server's time in ms: see :mod:`.sharding_lease`). A
writer passes the token the replica holds and the token key to its Lua
script, which compares it with the stored one and refuses the write when they
differ: a replica that lost its lease (a pause, a partition,
a slow Redis) cannot write after another replica took the shard over
("Designing Data-Intensive Applications", fencing tokens; Kleppmann 2016).

The refusal is not an error of the event: the new owner delivers it from its
checkpoint (which the stale replica could not advance either), so the
dispatcher drops a fenced delivery without dead-lettering it.

:data:`FENCE_CHECK_LUA` is the Lua prelude both scripts share.

On a Redis Cluster (issue 21) the token key lives in the control slot
(:mod:`.redis_keys`), which the checkpoint script shares, so checkpoints are
fenced exactly as on one node. A stream lives in a slot of its own, where the
script cannot read the token key; there it uses :data:`FENCE_MIRROR_LUA`: a
*mirror* key beside the stream holds the highest token that wrote to it, and
a write with a lower token (or none) is refused - the storage-side check of
Kleppmann's design. The difference: until the new owner's first write to a
stream, a stale replica may still add to it. What it adds is de-duplicated
(the marks live with the stream), and it cannot move the checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

__all__ = ["FENCE_CHECK_LUA", "FENCE_MIRROR_LUA", "Fence", "Fencing"]

logger = logging.getLogger(__name__)

# fenced(key, token): true when the token stored at ``key`` is not ``token``.
# A missing key never matches: tokens start at 1 and a replica holding no
# lease passes 0.
FENCE_CHECK_LUA = """
local function fenced(key, token)
  local current = redis.call('GET', key)
  return (not current) or current ~= token
end
"""


# fenced(key, token) on a cluster: ``key`` is the shard's mirror in the stream's slot,
# holding the highest token seen there. A lower token (or 0) is refused; a higher one
# raises the mirror.
FENCE_MIRROR_LUA = """
local function fenced(key, token)
  local t = tonumber(token)
  if t == nil or t <= 0 then return true end
  local seen = tonumber(redis.call('GET', key) or '0')
  if t < seen then return true end
  if t > seen then redis.call('SET', key, token) end
  return false
end
"""


@dataclass(frozen=True, slots=True)
class Fence:
    """The token key of a channel's shard and the token this replica holds (0: none)."""

    key: str
    token: int


class Fencing(Protocol):
    """Gives the fence of a channel; implemented by the lease-based shard manager."""

    def fence(self, channel: str) -> Fence | None:
        """The channel's fence, or None when writes need no fence (no leases)."""
        ...
