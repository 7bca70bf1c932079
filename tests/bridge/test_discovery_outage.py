"""Issue 16's minimal reproduction: a channel discovered while the bridge's Redis is down.

The bridge runs (in a thread) against the emulator and a redis-server of this
test's own (AOF, fsync always), with one discovery route. Redis is stopped
before anything is published; 100 messages go to a new channel over a few
seconds while it is down; then Redis comes back. Every one of the 100 must
reach the stream, in order, once: the channel's start point was fixed when it
was first seen (kept in memory while Redis was down, persisted once it was
back), not recomputed as "now - interval - margin" on each retry.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from ably_bridge.emulator import Emulator
from ably_bridge.protocol.models import Message
from tests.bridge.test_daemon_integration import (
    Running,
    bridge_config,
    message_ids,
    rest_for,
)
from tests.support.redis_server import PrivateRedis
from tests.support.services import redis_available
from tests.support.wait import eventually

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")


def test_a_channel_discovered_while_redis_is_down_loses_nothing(
    emulator: Emulator,
    key: str,
    prefix: str,
    durable_redis: PrivateRedis,
) -> None:
    routes: list[dict[str, Any]] = [
        {
            "id": "disc",
            "channels": ["new:*"],
            "discover": {"prefixes": ["new:"], "interval": 1},
            "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}],
        }
    ]
    config = bridge_config(
        emulator,
        key,
        prefix,
        redis_url=durable_redis.url,
        routes=routes,
        delivery={
            "buffer_size": 30,
            "drain_timeout": 5,
            "retry": {"initial": 0.1, "max_delay": 0.5, "jitter": 0},
        },
    )
    rest = rest_for(emulator, key)
    channel = f"new:{prefix.rsplit(':', 1)[-1]}"
    stream = f"{prefix}:s:{channel}"
    sent = [f"m-{i}" for i in range(100)]
    with Running(config) as run:
        run.wait_live()
        durable_redis.stop()
        down_at = time.monotonic()
        for i in range(0, 100, 5):  # 100 messages over about 4 s, Redis down throughout
            rest.channels.get(channel).publish(
                messages=[Message("e", {"i": j}, id=sent[j]) for j in range(i, i + 5)]
            )
            time.sleep(0.2)
        # Down long enough that "now - interval - margin" (1 s + 5 s) is past the first ones.
        eventually(
            lambda: time.monotonic() - down_at > 12 and channel in run.app.daemon.tracks,
            timeout=60,
            what="the outage to last 12 s with the channel discovered",
        )
        durable_redis.start()
        client = redis.Redis.from_url(durable_redis.url)
        eventually(lambda: len(message_ids(client, stream)) >= 100, timeout=60, what="100 of 100")
        assert message_ids(client, stream) == sent  # every one, once, in order
        run.wait_live()
    rest.close()
