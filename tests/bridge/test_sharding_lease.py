"""Lease sharding (sharding_lease.py): the lease logic (fake store + FakeClock), Redis leases.

The lease logic runs :meth:`LeaseShards.tick` by hand against an in-memory
store whose leases expire on a FakeClock: no threads, no sleeps. The Redis
lease scripts are checked against the shared Redis with short TTLs, polling
with deadlines.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from ably_bridge.bridge.core.shards import shard_of
from ably_bridge.bridge.sharding_lease import LeaseShards, RedisLeaseStore
from ably_bridge.clock import FakeClock
from tests.support.wait import eventually

S = 64
TTL = 6.0


class FakeLeaseStore:
    """LeaseStore semantics in memory; leases and members expire on the FakeClock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.owner: dict[int, tuple[str, float]] = {}  # shard -> (replica, expiry)
        self.token: dict[int, int] = {}
        self.members: dict[str, float] = {}
        self.down = False

    def _now(self) -> float:
        if self.down:
            raise ConnectionError("redis down")
        return self.clock.monotonic()

    def _owner(self, shard: int) -> str | None:
        entry = self.owner.get(shard)
        if entry is None or entry[1] <= self.clock.monotonic():
            return None
        return entry[0]

    def heartbeat(self, replica: str, ttl_ms: int) -> list[str]:
        now = self._now()
        self.members = {m: t for m, t in self.members.items() if t > now}
        self.members[replica] = now + ttl_ms / 1000
        return sorted(self.members)

    def claim(self, shards: Sequence[int], replica: str, ttl_ms: int, want: int) -> dict[int, int]:
        now = self._now()
        got: dict[int, int] = {}
        for shard in shards:
            if len(got) >= want:
                break
            if self._owner(shard) is None:
                self.owner[shard] = (replica, now + ttl_ms / 1000)
                self.token[shard] = self.token.get(shard, 0) + 1
                got[shard] = self.token[shard]
        return got

    def renew(self, shards: Sequence[int], replica: str, ttl_ms: int) -> dict[int, int]:
        now = self._now()
        out = {}
        for shard in shards:
            if self._owner(shard) == replica:
                self.owner[shard] = (replica, now + ttl_ms / 1000)
                out[shard] = self.token[shard]
            else:
                out[shard] = 0
        return out

    def release(self, shards: Sequence[int], replica: str) -> None:
        self._now()
        for shard in shards:
            if self._owner(shard) == replica:
                del self.owner[shard]

    def leave(self, replica: str) -> None:
        self.members.pop(replica, None)

    def token_key(self, shard: int) -> str:
        return f"t:{shard}"

    def owners(self) -> dict[int, str | None]:
        return {s: self._owner(s) for s in range(S)}


def replicas(store: FakeLeaseStore, clock: FakeClock, *names: str) -> list[LeaseShards]:
    return [LeaseShards(store, shards=S, ttl=TTL, replica=n, clock=clock) for n in names]


def rounds(clock: FakeClock, group: Sequence[LeaseShards], n: int = 1) -> None:
    """``n`` lease rounds of every replica, ``ttl / 3`` apart."""
    for _ in range(n):
        for r in group:
            r.tick()
        clock.advance(TTL / 3)


def assert_partition(group: Sequence[LeaseShards]) -> None:
    owned = [set(r.tokens()) for r in group]
    assert sum(len(o) for o in owned) == S
    assert set().union(*owned) == set(range(S))
    assert max(len(o) for o in owned) - min(len(o) for o in owned) <= 1


# -- lease logic -----------------------------------------------------------------------------


def test_replicas_started_together_split_the_shards_fairly() -> None:
    clock = FakeClock()
    store = FakeLeaseStore(clock)
    group = replicas(store, clock, "a", "b", "c")
    rounds(clock, group)  # join: heartbeat only
    assert all(r.tokens() == {} for r in group)
    assert all(r.readiness() == [] for r in group)
    rounds(clock, group, 2)
    assert_partition(group)
    tokens = [t for r in group for t in r.tokens().values()]
    assert set(tokens) == {1}  # one claim each so far
    assert group[0].fence("lobby").key == f"t:{shard_of('lobby', S)}"


def test_a_dead_replicas_shards_move_within_the_lease_ttl() -> None:
    clock = FakeClock()
    store = FakeLeaseStore(clock)
    a, b, c = group = replicas(store, clock, "a", "b", "c")
    rounds(clock, group, 3)
    dead = set(c.tokens())
    start = clock.monotonic()
    while not dead <= set(a.tokens()) | set(b.tokens()):  # c stops renewing
        rounds(clock, [a, b])
        assert clock.monotonic() - start <= TTL + TTL / 3 + 1e-6
    assert_partition([a, b])
    assert all(a.tokens().get(s, 0) + b.tokens().get(s, 0) == 2 for s in dead)  # new tokens
    assert a.counters.acquired + b.counters.acquired == S  # theirs first, then c's


def test_a_joining_replica_gets_its_share_after_a_handover() -> None:
    clock = FakeClock()
    store = FakeLeaseStore(clock)
    a, b = replicas(store, clock, "a", "b")
    rounds(clock, [a, b], 3)
    assert_partition([a, b])
    (c,) = replicas(store, clock, "c")
    version = a.version
    rounds(clock, [c, a, b])  # c joins; a and b see it
    giving = a.releasing()
    assert giving and a.version > version
    assert not giving & set(a.tokens())  # the daemon stops these channels ...
    assert all(store.owners()[s] == "a" for s in giving)  # ... the lease is kept meanwhile
    assert a.fence(next(iter(_channels_of(giving)))).token > 0  # in-flight writes still pass
    for shard in giving:
        a.handed_over(shard)
    for shard in b.releasing():
        b.handed_over(shard)
    rounds(clock, [a, b, c], 2)
    assert_partition([a, b, c])
    assert a.counters.released == len(giving)


def test_an_unfinished_handover_releases_after_three_ttls() -> None:
    clock = FakeClock()
    store = FakeLeaseStore(clock)
    a, b = replicas(store, clock, "a", "b")
    rounds(clock, [a], 3)
    assert len(a.tokens()) == S
    rounds(clock, [b, a])
    assert len(a.releasing()) == S // 2
    for _ in range(12):  # nobody reports them drained
        rounds(clock, [a, b])
    assert_partition([a, b])


def test_leases_are_given_up_locally_when_redis_is_unreachable() -> None:
    clock = FakeClock()
    store = FakeLeaseStore(clock)
    (a,) = replicas(store, clock, "a")
    rounds(clock, [a], 2)
    assert len(a.tokens()) == S
    store.down = True
    rounds(clock, [a])
    assert len(a.tokens()) == S and a.readiness() == []
    rounds(clock, [a])  # 2 * ttl/3 after the last renewal < 0.9 ttl: still ours
    assert len(a.tokens()) == S
    rounds(clock, [a])
    assert a.tokens() == {} and a.counters.lost == S
    assert a.fence("x").token == 0
    assert a.readiness() == ["shard leases: cannot reach Redis to renew"]
    store.down = False
    rounds(clock, [a])
    assert len(a.tokens()) == S  # expired in the store meanwhile: claimed again, new tokens
    assert set(a.tokens().values()) == {2}


def test_a_lease_taken_over_is_reported_lost() -> None:
    clock = FakeClock()
    store = FakeLeaseStore(clock)
    (a,) = replicas(store, clock, "a")
    rounds(clock, [a], 2)
    store.owner[5] = ("z", clock.monotonic() + 100)
    store.token[5] += 1
    a.tick()
    assert 5 not in a.tokens() and a.counters.lost == 1


def test_close_releases_every_lease_and_leaves() -> None:
    clock = FakeClock()
    store = FakeLeaseStore(clock)
    (a,) = replicas(store, clock, "a")
    rounds(clock, [a], 2)
    a.close()
    assert all(o is None for o in store.owners().values())
    assert "a" not in store.members and a.tokens() == {}


def _channels_of(shards: set[int]) -> list[str]:
    out = []
    i = 0
    while len(out) < 1:
        name = f"c{i}"
        if shard_of(name, S) in shards:
            out.append(name)
        i += 1
    return out


# -- Redis lease scripts ------------------------------------------------------------------------


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_redis_leases_claim_renew_release_and_expire(rclient: redis.Redis, prefix: str) -> None:
    store = RedisLeaseStore(rclient, prefix)
    assert store.heartbeat("a", 1000) == ["a"]
    assert store.heartbeat("b", 1000) == ["a", "b"]
    before_ms = server_ms(rclient)
    got = store.claim([3, 4, 5], "a", 1000, 2)
    assert sorted(got) == [3, 4]
    # A token is at least the server's time in ms: one lost in a failover is not reused.
    assert all(before_ms <= t <= server_ms(rclient) for t in got.values())
    (five,) = store.claim([3, 4, 5], "b", 1000, 5).items()
    assert five[0] == 5
    assert store.renew([3, 4, 5], "a", 1000) == {3: got[3], 4: got[4], 5: 0}
    store.release([4, 5], "a")  # 5 is b's: untouched
    assert store.owners(6) == {0: None, 1: None, 2: None, 3: "a", 4: None, 5: "b"}
    rclient.set(store.token_key(4), 2**50)  # a token ahead of the clock still grows by one
    assert store.claim([4], "b", 1000, 1) == {4: 2**50 + 1}  # a new claim, a new token
    assert rclient.get(store.token_key(4)) == str(2**50 + 1).encode()
    # a stops renewing: its lease and membership expire with the TTL (real time)
    eventually(lambda: store.owners(6)[3] is None)
    eventually(lambda: store.heartbeat("b", 1000) == ["b"])
    assert store.renew([3], "a", 1000) == {3: 0}
    store.leave("b")
    assert rclient.zcard(store.members_key) == 0
