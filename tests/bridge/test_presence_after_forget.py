"""Presence keeps flowing after the bridge's connection is forgotten and then dropped.

Found by the chaos run (seeds 3 and 4): after the emulator forgot the bridge's
connection (a failed resume: a new connection, channels re-attached) and then
dropped the new one, every later presence event of the channel was missing
from the sinks while its messages kept arriving.
"""

from __future__ import annotations

import pytest
import redis

from ably_bridge.emulator import Emulator
from tests.bridge.test_daemon_integration import Running, bridge_config
from tests.bridge.test_presence_gap_integration import ENTER, UPDATE, member, presence_of
from tests.support.services import redis_available
from tests.support.wait import eventually

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")


@pytest.mark.parametrize("drop_after", [True, False], ids=["forget+drop", "forget"])
def test_presence_after_a_forgotten_connection(
    emulator: Emulator,
    app: dict[str, object],
    key: str,
    prefix: str,
    rclient: redis.Redis,
    drop_after: bool,
) -> None:
    config = bridge_config(emulator, key, prefix)
    stream = f"{prefix}:s:b"
    alice = member(emulator, key, "alice")
    try:
        with Running(config) as run:
            run.wait_live()
            presence = alice.channels.get("b").presence
            presence.enter("hi", timeout=10)
            eventually(lambda: presence_of(rclient, stream) == [("alice", ENTER, "hi")],
                       what="the live enter")  # fmt: skip
            bridge_ids = [
                c.id
                for c in list(emulator.runtime.state.connections.values())
                if c.app_id == app["appId"] and c.id != alice.connection.id
            ]
            assert bridge_ids
            for conn_id in bridge_ids:
                assert emulator.faults.forget_connections(connection_id=conn_id) == 1
            if drop_after:
                eventually(lambda: run.app.daemon.readiness()[0], 30, "ready again")
                for c in list(emulator.runtime.state.connections.values()):
                    if c.app_id == app["appId"] and c.id != alice.connection.id:
                        emulator.faults.drop_connections(connection_id=c.id)
            for n in range(3):
                presence.update(f"u{n}", timeout=10)
            want = [("alice", ENTER, "hi")] + [("alice", UPDATE, f"u{n}") for n in range(3)]
            try:
                eventually(lambda: presence_of(rclient, stream)[-3:] == want[-3:], timeout=30,
                           what="the updates after the fault")  # fmt: skip
            except AssertionError as exc:
                raise AssertionError(f"{exc}: got {presence_of(rclient, stream)}") from None
    finally:
        alice.close()
