"""Shard math: which shard a channel is in, and how shards are shared out.

This module owns the pure arithmetic of sharding (:mod:`ably_bridge.bridge.sharding`
applies it): a channel belongs to shard ``crc32(utf-8 name) mod S``, stable
across processes and Python versions (unlike ``hash()``); with ``m`` live
members, sorted, member ``k`` wants ``S // m`` shards plus one if ``k < S % m``;
and each replica prefers the shards in its own rendezvous order.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

__all__ = ["fair_share", "preference", "shard_of"]


def shard_of(channel: str, shards: int) -> int:
    """The shard of ``channel``: ``crc32(utf-8 name) mod shards`` (stable everywhere)."""
    return zlib.crc32(channel.encode("utf-8")) % shards


def fair_share(members: Sequence[str], me: str, shards: int) -> int:
    """How many shards ``me`` should own among ``members`` (quotas add up to ``shards``)."""
    ordered = sorted(set(members) | {me})
    base, extra = divmod(shards, len(ordered))
    return base + (1 if ordered.index(me) < extra else 0)


def preference(me: str, shards: int) -> list[int]:
    """Shards in the order ``me`` prefers them (rendezvous hashing: stable per replica)."""
    return sorted(range(shards), key=lambda s: zlib.crc32(f"{s}:{me}".encode()), reverse=True)
