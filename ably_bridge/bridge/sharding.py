"""Sharding: which replica bridges which channels.

This module owns the split of the channel space over replicas. A channel
belongs to shard ``crc32(name) mod S`` (:func:`shard_of`; ``sharding.shards``,
default 64: stable across processes and Python versions, unlike ``hash()``).
A replica bridges the channels of the shards it owns:

* static (``sharding.mode: static``, :mod:`.sharding_static`): replica ``i``
  of ``n`` owns the shards ``s % n == i`` (Kubernetes StatefulSets; no leases);
* lease (``sharding.mode: lease``, :mod:`.sharding_lease`): shards are leased
  in Redis with fencing tokens and rebalanced as replicas join and leave.

The shard math is the core's (:mod:`.core.shards`). This module owns what the
daemon sees of a mode (:class:`ShardView`) and picks one (:func:`build_shards`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ably_bridge.bridge.core.shards import fair_share, preference, shard_of
from ably_bridge.bridge.fencing import Fence
from ably_bridge.bridge.sharding_lease import LeaseShards, LeaseStore, RedisLeaseStore
from ably_bridge.bridge.sharding_static import StaticShards, static_index
from ably_bridge.clock import Clock

if TYPE_CHECKING:
    import redis

    from ably_bridge.bridge.config import ShardingSettings

__all__ = [
    "LeaseShards",
    "LeaseStore",
    "RedisLeaseStore",
    "ShardView",
    "StaticShards",
    "build_shards",
    "fair_share",
    "preference",
    "shard_of",
    "static_index",
]


class ShardView(Protocol):
    """What the daemon needs from a sharding mode."""

    shards: int
    version: int  # changes whenever tokens() or releasing() may have changed

    def tokens(self) -> dict[int, int]:
        """Shards to bridge now -> their fencing token (0 without leases)."""
        ...

    def releasing(self) -> set[int]:
        """Shards being handed over: stop their channels, then :meth:`handed_over`."""
        ...

    def handed_over(self, shard: int) -> None:
        """Nothing of ``shard`` is in flight any more: its lease may go."""
        ...

    def readiness(self) -> list[str]:
        """Problems that make this replica not ready (empty: fine)."""
        ...

    def fence(self, channel: str) -> Fence | None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


def build_shards(
    settings: ShardingSettings, client: redis.Redis, prefix: str, clock: Clock | None = None
) -> ShardView | None:
    """The sharding mode of ``settings`` (None when sharding is off)."""
    if settings.mode == "static":
        index = settings.replica_index
        if index is None:
            index = static_index()
        if index is None:
            raise ValueError(
                "static sharding needs ABLY_BRIDGE_REPLICA_INDEX, sharding.replica_index "
                "or a host name ending in -<ordinal>"
            )
        return StaticShards(index, settings.replicas or 1, settings.shards)
    if settings.mode == "lease":
        return LeaseShards(
            RedisLeaseStore(client, prefix),
            shards=settings.shards,
            ttl=settings.lease_ttl,
            clock=clock,
        )
    return None
