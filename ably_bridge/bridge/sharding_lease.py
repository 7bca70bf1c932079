"""Lease sharding: shards leased in Redis and rebalanced over the live replicas.

This module owns :class:`LeaseShards` (``sharding.mode: lease``), the lease
store contract (:class:`LeaseStore`) and its Redis implementation
(:class:`RedisLeaseStore`).

Leases (:class:`RedisLeaseStore`, all operations are Lua scripts, so atomic;
names from :mod:`.redis_keys`, under one hash tag on a cluster)::

    <prefix>:shard:members        ZSET replica -> expiry (ms, Redis server time)
    <prefix>:shard:<n>:owner      replica id, PX lease_ttl
    <prefix>:shard:<n>:token      fencing token: grows on every claim, never expires

* **Membership**: every ``lease_ttl / 3`` a replica heartbeats its member entry
  (expiry ``now + lease_ttl``, dead entries pruned) and reads the live members.
* **Fair share**: with ``m`` live members, sorted, member ``k`` wants
  ``S // m`` shards, plus one if ``k < S % m``; the quotas add up to ``S``.
* **Claim**: below its share a replica claims free shards with ``SET owner
  NX PX ttl`` and takes a new token in the same script: the greater of the
  last token + 1 and the server's time in ms (``TIME``), so a token that a
  Redis failover lost (replication is asynchronous) is never handed out
  again - the promoted replica's clock is past it once the failover took
  longer than the nodes' clock skew (seconds against milliseconds); it tries
  its rendezvous-preferred shards first (fewer moves when members change).
* **Renew**: a script extends each owned lease only if the owner is still
  this replica and returns the shard's token; 0 means lost (expired and
  taken). A replica also stops using its leases on its own once
  ``lease_ttl * 0.9`` passed since the last renewal it sent that succeeded
  (Redis unreachable): it must stop before the lease can expire in Redis.
* **Rebalance**: above its share (a replica joined) a replica *hands over* the
  excess: the daemon stops those channels (detach), waits until nothing of
  them is in flight (the dispatcher confirmed or refused everything, the
  checkpoints are saved), then the lease is deleted and another replica claims
  it; the new owner backfills from the checkpoint. A handover that does not
  finish within ``3 * lease_ttl`` releases anyway (the fence covers the rest).
* **Failover**: a killed replica's member entry and leases expire within
  ``lease_ttl``; the survivors' shares grow and they claim its shards at their
  next round (``lease_ttl / 3``), then backfill from the checkpoints.
* **Fencing** (:mod:`.fencing`): :meth:`LeaseShards.fence` gives the token
  key and the token this replica holds; the Redis Streams script and the
  checkpoint script refuse writes with a stale token. Celery has no such
  server-side check: a task sent by a replica in the overlap is a duplicate
  with the same task id, which the worker-side guard
  (``workers.consumers.envelope_task``) runs once.

Threads: :meth:`LeaseShards.start` runs :meth:`LeaseShards.tick` on its own
thread; the daemon reads snapshots (:meth:`tokens`, :meth:`releasing`,
``version``) from the delivery thread and reports finished handovers with
:meth:`handed_over`. ``tick`` is synchronous so tests drive it with a fake
store and a :class:`~ably_bridge.clock.FakeClock`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ably_bridge.bridge.core.shards import fair_share, preference, shard_of
from ably_bridge.bridge.fencing import Fence
from ably_bridge.bridge.redis_keys import keys_for
from ably_bridge.clock import Clock, SystemClock

if TYPE_CHECKING:
    import redis

__all__ = ["LeaseCounters", "LeaseShards", "LeaseStore", "RedisLeaseStore"]

logger = logging.getLogger(__name__)

_SAFETY = 0.9  # use a lease locally for at most this share of its TTL after renewing
_HANDOVER_TTLS = 3.0  # release a handed-over shard after this many TTLs regardless


_NOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] = members; ARGV = replica, ttl ms. Returns the live members.
_HEARTBEAT_LUA = (
    _NOW_LUA
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
)

# KEYS = owner1, token1, owner2, token2, ...; ARGV = replica, ttl ms, how many.
# Returns {position, token, ...} (position of the pair, from 1) of the claims made.
_CLAIM_LUA = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local got = {}
local want = tonumber(ARGV[3])
local n = 0
for i = 1, #KEYS, 2 do
  if n >= want then break end
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    n = n + 1
    got[#got + 1] = (i + 1) / 2
    local token = math.max(tonumber(redis.call('GET', KEYS[i + 1]) or '0') + 1, now_ms)
    redis.call('SET', KEYS[i + 1], string.format('%.0f', token))
    got[#got + 1] = token
  end
end
return got
"""

# KEYS as in claim; ARGV = replica, ttl ms. Returns one token per pair, 0 = not ours.
_RENEW_LUA = """
local out = {}
for i = 1, #KEYS, 2 do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    out[#out + 1] = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  else
    out[#out + 1] = 0
  end
end
return out
"""

# KEYS = owner keys; ARGV = replica. Deletes those still ours; returns how many.
_RELEASE_LUA = """
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
"""


class LeaseStore(Protocol):
    """Lease operations (Redis in production, a fake in unit tests)."""

    def heartbeat(self, replica: str, ttl_ms: int) -> list[str]: ...

    def claim(self, shards: Sequence[int], replica: str, ttl_ms: int, want: int) -> dict[int, int]:
        """Claim up to ``want`` free shards, in the given order; shard -> new token."""
        ...

    def renew(self, shards: Sequence[int], replica: str, ttl_ms: int) -> dict[int, int]:
        """Extend the leases still ours; shard -> token (0: not ours any more)."""
        ...

    def release(self, shards: Sequence[int], replica: str) -> None: ...

    def leave(self, replica: str) -> None: ...

    def token_key(self, shard: int) -> str: ...


class RedisLeaseStore:
    """:class:`LeaseStore` on Redis (see the module docstring for the keys)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self.prefix = prefix
        self.names = keys_for(client, prefix)
        self.members_key = self.names.shard_members()
        self._heartbeat = client.register_script(_HEARTBEAT_LUA)
        self._claim = client.register_script(_CLAIM_LUA)
        self._renew = client.register_script(_RENEW_LUA)
        self._release = client.register_script(_RELEASE_LUA)

    def owner_key(self, shard: int) -> str:
        return self.names.shard_owner(shard)

    def token_key(self, shard: int) -> str:
        return self.names.shard_token(shard)

    def _pairs(self, shards: Sequence[int]) -> list[str]:
        keys: list[str] = []
        for s in shards:
            keys += (self.owner_key(s), self.token_key(s))
        return keys

    def heartbeat(self, replica: str, ttl_ms: int) -> list[str]:
        members = self._heartbeat(keys=[self.members_key], args=[replica, ttl_ms])
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    def claim(self, shards: Sequence[int], replica: str, ttl_ms: int, want: int) -> dict[int, int]:
        if not shards or want <= 0:
            return {}
        got = self._claim(keys=self._pairs(shards), args=[replica, ttl_ms, want])
        return {shards[int(got[i]) - 1]: int(got[i + 1]) for i in range(0, len(got), 2)}

    def renew(self, shards: Sequence[int], replica: str, ttl_ms: int) -> dict[int, int]:
        if not shards:
            return {}
        tokens = self._renew(keys=self._pairs(shards), args=[replica, ttl_ms])
        return {s: int(t) for s, t in zip(shards, tokens, strict=True)}

    def release(self, shards: Sequence[int], replica: str) -> None:
        if shards:
            self._release(keys=[self.owner_key(s) for s in shards], args=[replica])

    def leave(self, replica: str) -> None:
        self._client.zrem(self.members_key, replica)

    def owners(self, shards: int) -> dict[int, str | None]:
        """Every shard's current owner (for operators and tests)."""
        values = self._client.mget([self.owner_key(s) for s in range(shards)])
        return {s: (v.decode() if isinstance(v, bytes) else v) for s, v in enumerate(values)}


@dataclass(slots=True)
class LeaseCounters:
    """What :class:`LeaseShards` counts for the metrics."""

    renewals: int = 0
    acquired: int = 0
    released: int = 0
    lost: int = 0


class LeaseShards:
    """Shards leased in Redis and rebalanced over the live replicas (module docstring)."""

    def __init__(
        self,
        store: LeaseStore,
        *,
        shards: int,
        ttl: float,
        replica: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.shards = shards
        self.ttl = ttl
        self.interval = ttl / 3.0
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.clock = clock or SystemClock()
        self.counters = LeaseCounters()
        self.version = 0
        self._preference = preference(self.replica, shards)
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # every lease we hold -> token (incl. handovers)
        self._active: dict[int, int] = {}  # held and not being handed over (snapshot)
        self._handover: dict[int, float] = {}  # shard -> monotonic deadline
        self._handed: set[int] = set()  # reported drained by the daemon
        self._valid_until = 0.0  # monotonic: the held leases may be used until then
        self._joined_at: float | None = None
        self._members: list[str] = []
        self._last_ok: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- daemon side (any thread) --------------------------------------------------------
    def tokens(self) -> dict[int, int]:
        return self._active

    def releasing(self) -> set[int]:
        return set(self._handover)

    def handed_over(self, shard: int) -> None:
        with self._lock:
            if shard in self._handover:
                self._handed.add(shard)

    def fence(self, channel: str) -> Fence:
        shard = shard_of(channel, self.shards)
        return Fence(self.store.token_key(shard), self._held.get(shard, 0))

    def readiness(self) -> list[str]:
        if self._joined_at is None or self._last_ok is None:
            return ["shard leases: not joined yet"]
        if self.clock.monotonic() - self._last_ok > self.ttl * _SAFETY:
            return ["shard leases: cannot reach Redis to renew"]
        return []

    @property
    def members(self) -> list[str]:
        return list(self._members)

    # -- the lease round -------------------------------------------------------------------
    def tick(self) -> bool:
        """One round: heartbeat, renew, hand over, claim. True when ownership changed."""
        ttl_ms = int(self.ttl * 1000)
        sent = self.clock.monotonic()
        with self._lock:
            changed = self._expire_locally(sent)
        try:
            members = self.store.heartbeat(self.replica, ttl_ms)
            renewed = self.store.renew(sorted(self._held), self.replica, ttl_ms)
        except Exception as exc:
            logger.warning("shard lease round failed (Redis unreachable?): %s", exc)
            return self._publish(changed)
        self._members = members
        self._last_ok = sent
        self.counters.renewals += 1
        with self._lock:
            changed |= self._apply_renewals(renewed, sent)
            if self._joined_at is None:
                # Let replicas started together see each other before claiming,
                # so the first owner does not take every shard and hand most back.
                self._joined_at = sent
                return self._publish(changed)
            quota = fair_share(members, self.replica, self.shards)
            changed |= self._plan_handover(quota, sent)
            release = self._due_releases(sent)
        if release:
            try:
                self.store.release(release, self.replica)
            except Exception as exc:  # they expire instead
                logger.warning("releasing shard(s) %s failed: %s", release, exc)
            with self._lock:
                for shard in release:
                    self._drop(shard)
                self.counters.released += len(release)
                changed = True
            logger.info("handed over shard(s) %s", release)
        changed |= self._claim(quota, ttl_ms, sent)
        return self._publish(changed)

    def _expire_locally(self, now: float) -> bool:
        if not self._held or now < self._valid_until:
            return False
        logger.error(
            "shard leases not renewed for %.1fs: giving up %d shard(s)",
            self.ttl * _SAFETY, len(self._held),
        )  # fmt: skip
        self.counters.lost += len(self._held)
        for shard in list(self._held):
            self._drop(shard)
        return True

    def _apply_renewals(self, renewed: dict[int, int], sent: float) -> bool:
        changed = False
        for shard, token in renewed.items():
            if token == self._held.get(shard):
                continue
            if shard not in self._held:
                continue  # dropped meanwhile
            logger.warning("lost the lease of shard %d (taken over or expired)", shard)
            self.counters.lost += 1
            self._drop(shard)
            changed = True
        if self._held:
            self._valid_until = sent + self.ttl * _SAFETY
        return changed

    def _plan_handover(self, quota: int, now: float) -> bool:
        active = [s for s in self._held if s not in self._handover]
        excess = len(active) - quota
        if excess > 0:
            rank = {s: i for i, s in enumerate(self._preference)}
            give = sorted(active, key=lambda s: rank[s], reverse=True)[:excess]
            for shard in give:
                self._handover[shard] = now + _HANDOVER_TTLS * self.ttl
            logger.info("handing over shard(s) %s (fair share is %d)", sorted(give), quota)
            return True
        if excess < 0 and self._handover:
            # Our share grew again (a replica left): keep what we were giving away.
            keep = sorted(self._handover)[:-excess]
            for shard in keep:
                del self._handover[shard]
                self._handed.discard(shard)
            return True
        return False

    def _due_releases(self, now: float) -> list[int]:
        return sorted(s for s, t in self._handover.items() if s in self._handed or now >= t)

    def _claim(self, quota: int, ttl_ms: int, sent: float) -> bool:
        with self._lock:
            want = quota - len(self._held)
            candidates = [s for s in self._preference if s not in self._held]
        if want <= 0 or not candidates:
            return False
        try:
            got = self.store.claim(candidates, self.replica, ttl_ms, want)
        except Exception as exc:
            logger.warning("claiming shards failed: %s", exc)
            return False
        if not got:
            return False
        with self._lock:
            self._held.update(got)
            self._valid_until = sent + self.ttl * _SAFETY
            self.counters.acquired += len(got)
        logger.info("claimed shard(s) %s (fair share %d)", sorted(got), quota)
        return True

    def _drop(self, shard: int) -> None:
        self._held.pop(shard, None)
        self._handover.pop(shard, None)
        self._handed.discard(shard)

    def _publish(self, changed: bool) -> bool:
        if changed:
            with self._lock:
                self._active = {s: t for s, t in self._held.items() if s not in self._handover}
                self.version += 1
        return changed

    # -- the thread ------------------------------------------------------------------------
    def start(self) -> None:
        """Run rounds every ``lease_ttl / 3`` on a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="ably-bridge-leases", daemon=True)
        self._thread.start()
        logger.info(
            "lease sharding: replica %s, %d shards, lease TTL %.1fs",
            self.replica, self.shards, self.ttl,
        )  # fmt: skip

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the next round tries again
                logger.exception("shard lease round crashed")
            # A handover in progress is checked more often than the renewals.
            wait = self.interval if not self._handover else min(self.interval, 0.25)
            self._stop.wait(wait)

    def close(self) -> None:
        """Stop the rounds, release every lease and leave (after the daemon drained)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5.0)
        with self._lock:
            held = sorted(self._held)
            for shard in held:
                self._drop(shard)
        try:
            self.store.release(held, self.replica)
            self.store.leave(self.replica)
        except Exception as exc:  # they expire within the TTL instead
            logger.warning("releasing shard leases on stop failed: %s", exc)
        if held:
            self.counters.released += len(held)
            logger.info("released %d shard lease(s)", len(held))
        self._publish(True)
