"""Static sharding: replica ``i`` of ``n`` owns the shards ``s % n == i``.

This module owns :class:`StaticShards` (``sharding.mode: static``), for
Kubernetes StatefulSets: ``i`` from ``ABLY_BRIDGE_REPLICA_INDEX`` (the
``apps.kubernetes.io/pod-index`` label) or the ordinal of the host name
(:func:`static_index`, ``ably-bridge-2``), ``n`` from ``ABLY_BRIDGE_REPLICAS``.
No leases, no fencing: the StatefulSet guarantees one pod per ordinal, and a
dead pod's shards wait for its restart.
"""

from __future__ import annotations

import logging
import re
import socket

from ably_bridge.bridge.fencing import Fence

__all__ = ["StaticShards", "static_index"]

logger = logging.getLogger(__name__)


def static_index(hostname: str | None = None) -> int | None:
    """The ordinal of a StatefulSet pod's host name (``ably-bridge-2`` -> 2), or None."""
    match = re.search(r"-(\d+)$", hostname if hostname is not None else socket.gethostname())
    return int(match.group(1)) if match else None


class StaticShards:
    """Replica ``index`` of ``replicas`` owns the shards ``s % replicas == index``."""

    def __init__(self, index: int, replicas: int, shards: int) -> None:
        if not 0 <= index < replicas <= shards:
            raise ValueError(f"replica {index} of {replicas} over {shards} shards is impossible")
        self.shards = shards
        self.index = index
        self.replicas = replicas
        self.version = 1
        self._tokens = {s: 0 for s in range(shards) if s % replicas == index}

    def tokens(self) -> dict[int, int]:
        return self._tokens

    def releasing(self) -> set[int]:
        return set()

    def handed_over(self, shard: int) -> None:
        pass

    def readiness(self) -> list[str]:
        return []

    def fence(self, channel: str) -> Fence | None:
        return None

    def start(self) -> None:
        logger.info(
            "static sharding: replica %d of %d owns %d of %d shard(s)",
            self.index, self.replicas, len(self._tokens), self.shards,
        )  # fmt: skip

    def close(self) -> None:
        pass
