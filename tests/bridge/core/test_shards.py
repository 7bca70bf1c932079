"""Shard math (core/shards.py): placement, fair shares, preference order, pure."""

from __future__ import annotations

import zlib

from ably_bridge.bridge.core.shards import fair_share, preference, shard_of


def test_shard_of_is_stable_and_spreads() -> None:
    assert shard_of("chat:1", 64) == zlib.crc32(b"chat:1") % 64
    counts = [0] * 16
    for i in range(16_000):
        counts[shard_of(f"room-{i}", 16)] += 1
    assert min(counts) > 800 and max(counts) < 1200


def test_fair_shares_add_up_and_differ_by_at_most_one() -> None:
    for n in range(1, 10):
        members = [f"r{i}" for i in range(n)]
        quotas = [fair_share(members, m, 64) for m in members]
        assert sum(quotas) == 64 and max(quotas) - min(quotas) <= 1
    assert fair_share([], "me", 10) == 10  # alone (not yet listed)


def test_preference_is_a_stable_permutation_per_replica() -> None:
    a, b = preference("a", 64), preference("b", 64)
    assert sorted(a) == list(range(64)) and a == preference("a", 64) and a != b
