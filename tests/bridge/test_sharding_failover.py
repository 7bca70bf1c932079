"""Failover of lease-sharded replicas: three ``ably-bridge run`` processes, one SIGKILLed.

Three bridges share 30 channels (64 shards leased in Redis, lease TTL 2 s,
5 channels per connection so each replica runs several connections) against
an in-process emulator and the shared Redis (unique key prefix). A publisher
sends to every channel; mid-stream one replica is killed with SIGKILL. The
test checks that its shards are owned by the survivors within the lease TTL
(plus a margin for one lease round and scheduling), and that every message id
lands exactly once, in order, in its channel's stream.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import redis
import requests

from ably_bridge.bridge.sharding_lease import RedisLeaseStore
from ably_bridge.emulator import Emulator
from ably_bridge.protocol.models import Message
from tests.bridge.test_cli_run import Bridge, ids_in, rest_for, write_config
from tests.support.services import redis_available
from tests.support.wait import eventually

SHARDS = 64
TTL = 2.0
MARGIN = 3.0  # one lease round (TTL / 3), a daemon step, process scheduling


def live_channels(bridge: Bridge) -> int:
    try:
        text = requests.get(f"http://127.0.0.1:{bridge.port}/metrics", timeout=2).text
    except requests.RequestException:
        return -1000
    for line in text.splitlines():
        if line.startswith('ably_bridge_channels{phase="live"}'):
            return int(float(line.split()[-1]))
    return 0


def owners(store: RedisLeaseStore) -> dict[int, str | None]:
    return store.owners(SHARDS)


@pytest.mark.skipif(not redis_available(), reason="Redis is not running")
def test_sigkill_of_one_of_three_replicas_moves_its_shards_and_loses_nothing(
    emulator: Emulator,
    key: str,
    prefix: str,
    rclient: redis.Redis,
    tmp_path: Path,
) -> None:
    names = [f"fo-{i}" for i in range(30)]
    config = write_config(
        tmp_path / "bridge.yaml", emulator, prefix, names,
        ably={"channels_per_connection": 5},
        sharding={"mode": "lease", "shards": SHARDS, "lease_ttl": TTL},
    )  # fmt: skip
    store = RedisLeaseStore(rclient, prefix)
    rest = rest_for(emulator, key)
    bridges = [Bridge(config, key, tmp_path) for _ in range(3)]
    sent: dict[str, list[str]] = {n: [] for n in names}
    stop = threading.Event()
    try:
        for bridge in bridges:
            bridge.wait_ready(timeout=40)

        def balanced() -> bool:
            current = owners(store)
            counts: dict[str, int] = {}
            for owner in current.values():
                if owner is not None:
                    counts[owner] = counts.get(owner, 0) + 1
            return len(counts) == 3 and sum(counts.values()) == SHARDS

        eventually(balanced, timeout=30, what="64 shards spread over 3 replicas")
        eventually(
            lambda: sum(live_channels(b) for b in bridges) == len(names),
            timeout=30,
            what="every channel live on some replica",
        )
        assert all(b.ready() for b in bridges)

        def publisher() -> None:
            n = 0
            while not stop.is_set():
                for name in names:
                    batch = [Message("e", {"n": n + j}, id=f"{name}-{n + j}") for j in range(2)]
                    rest.channels.get(name).publish(messages=batch)
                    sent[name].extend(m.id for m in batch if m.id)
                n += 2
                time.sleep(0.05)

        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        eventually(
            lambda: all(len(ids_in(rclient, f"{prefix}:s:{n}")) >= 4 for n in names),
            timeout=30,
            what="messages flowing into every stream",
        )

        # Which replica to kill: the owner of shard 0 (its id is in Redis).
        before = owners(store)
        victim_id = before[0]
        assert victim_id is not None
        victim = next(b for b in bridges if f"-{b.proc.pid}-" in victim_id)
        victim_shards = {s for s, o in before.items() if o == victim_id}
        assert victim_shards
        victim.kill()
        killed_at = time.monotonic()

        def moved() -> bool:
            now = owners(store)
            return all(now[s] not in (None, victim_id) for s in victim_shards)

        eventually(moved, timeout=TTL + MARGIN + 5, what="the victim's shards re-owned")
        took = time.monotonic() - killed_at
        assert took <= TTL + MARGIN, f"shards moved after {took:.1f}s (TTL {TTL}s)"

        # Keep publishing until the survivors delivered what was sent after the move.
        mark = {n: len(sent[n]) + 4 for n in names}
        eventually(
            lambda: all(len(ids_in(rclient, f"{prefix}:s:{n}")) >= mark[n] for n in names),
            timeout=30,
            what="messages sent after the move in every stream",
        )
        stop.set()
        thread.join(timeout=30)
        survivors = [b for b in bridges if b is not victim]

        def complete() -> bool:
            return all(len(ids_in(rclient, f"{prefix}:s:{n}")) >= len(sent[n]) for n in names)

        try:
            eventually(complete, timeout=30, what="every message in the streams")
        finally:
            for name in names:
                got = ids_in(rclient, f"{prefix}:s:{name}")
                missing = [i for i in sent[name] if i not in set(got)]
                # Exactly once and in order (dedup marks absorb the backfill overlap).
                assert got == sent[name], f"{name}: missing {missing[:10]}, got {len(got)}"
        assert not rclient.exists(f"{prefix}:deadletter")
        for bridge in survivors:
            bridge.signal(signal.SIGTERM)
        for bridge in survivors:
            assert bridge.wait() == 0
        # A graceful stop hands the leases back at once.
        assert all(o is None for o in owners(store).values())
    finally:
        stop.set()
        for bridge in bridges:
            bridge.kill()
        rest.close()
