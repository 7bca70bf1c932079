"""Fencing tokens: how a write proves its replica still owns the channel's shard.

This module owns the small contract between the shard leases
(:mod:`.sharding`) and the writers that must refuse stale replicas: the Redis
Streams sink and the checkpoint store. A lease on a shard comes with a
*fencing token*, a number from ``INCR`` on the shard's token key that grows on
every new claim. A writer passes the token the replica holds and the token
key to its Lua script, which compares it with the stored one and refuses the
write when they differ: a replica that lost its lease (a pause, a partition,
a slow Redis) cannot write after another replica took the shard over
("Designing Data-Intensive Applications", fencing tokens; Kleppmann 2016).

The refusal is not an error of the event: the new owner delivers it from its
checkpoint (which the stale replica could not advance either), so the
dispatcher drops a fenced delivery without dead-lettering it.

:data:`FENCE_CHECK_LUA` is the Lua prelude both scripts share.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

__all__ = ["FENCE_CHECK_LUA", "Fence", "Fencing"]

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
