"""A LEAVE that arrives while a multi-page presence SYNC is in progress, end to end.

The client's member map stores it as ABSENT and emits nothing (RTP2h2a), so a
bridge that delivered the map's subscriber events never saw it. The bridge
takes the raw presence feed instead: the LEAVE reaches the Redis Stream with
its id, while the member map and the snapshot hash stay spec-conformant. The
emulator spaces its SYNC pages (``sync_page_interval_ms``) so the LEAVE goes
out between them; the bridge's key has no ``history`` right, so presence
history cannot deliver the LEAVE instead (it is live or nothing).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ably_bridge.bridge.app import BridgeApp
from ably_bridge.bridge.realtime_source import RealtimeSource
from ably_bridge.emulator import Emulator
from ably_bridge.protocol.events import ChannelState
from ably_bridge.protocol.models import PresenceMessage
from ably_bridge.realtime import AblyRealtime
from ably_bridge.rest.client import AblyRest
from tests.bridge.test_daemon_integration import bridge_config, stream_events
from tests.support.emulator import FAST, running
from tests.support.services import redis_available
from tests.support.wait import eventually

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")

LEAVE = 3
PAGE_GAP_MS = 1_000  # pages at 0, 1 and 2 s: the LEAVE is sent right after the first


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    yield from running(
        dataclasses.replace(FAST, sync_page_size=2, sync_page_interval_ms=PAGE_GAP_MS)
    )


@pytest.fixture
def app(emulator: Emulator) -> Iterator[dict[str, Any]]:
    created = emulator.create_app(
        {"keys": [{}, {"capability": '{"*":["subscribe","presence"]}'}]}  # [1]: no history
    )
    yield created
    emulator.delete_app(created["appId"])


def _client(cls: Any, emulator: Emulator, key: str) -> Any:
    return cls(
        key=key, endpoint="127.0.0.1", port=emulator.port, tls=False,
        insecure_allow_basic_over_http=True,
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_a_leave_during_a_multi_page_sync_reaches_the_stream(
    emulator: Emulator, app: dict[str, Any], prefix: str, rclient: redis.Redis, fmt: str
) -> None:
    root, limited = (str(k["keyStr"]) for k in app["keys"])
    crowd: AblyRealtime = _client(AblyRealtime, emulator, root)
    rest: AblyRest = _client(AblyRest, emulator, root)
    ably = {"endpoint": "127.0.0.1", "port": emulator.port, "tls": False,
            "use_binary_protocol": fmt == "msgpack"}  # fmt: skip
    route = {
        "id": "main", "channels": ["b"], "sources": ["presence"],
        "presence_snapshot": {"key": prefix + ":presence:{channel}"},
        "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}],
    }  # fmt: skip
    config = bridge_config(emulator, limited, prefix, routes=[route], ably=ably)
    source = RealtimeSource.from_config(config, callback_workers=2)
    bridge = BridgeApp(config, source=source)
    thread = threading.Thread(target=bridge.run, daemon=True)
    try:
        members = crowd.channels.get("b").presence
        for i in range(5):  # SYNC pages [m0, m1], [m2, m3], [m4]
            members.enter_client(f"m{i}", {"n": i}, timeout=10)
        thread.start()
        channel = eventually(lambda: source.client.channels._channels.get("b"), 10, "channel")
        seen: list[PresenceMessage] = []  # what the member map's subscribers get
        channel.presence.subscribe(seen.append, attach=False, inline=True)
        eventually(lambda: channel.state == ChannelState.ATTACHED, 10, "the bridge attached")
        assert not channel.presence.sync_complete  # the first page only, so far
        members.leave_client("m4", timeout=10)

        stream = f"{prefix}:s:b"

        def delivered() -> list[dict[str, Any]]:
            return [e["presence"][0] for e in stream_events(rclient, stream)]

        (leave,) = eventually(delivered, 15, "the LEAVE in the stream")
        history = rest.channels.get("b").presence.history(direction="backwards", limit=1)
        assert (leave["action"], leave["clientId"], leave["id"]) == (
            LEAVE, "m4", history.items[0].id,
        )  # fmt: skip
        # The member map followed the spec: no event for m4 at all (its LEAVE came
        # during the sync, its PRESENT in the last page was older), and it is gone.
        after = channel.presence.get(timeout=10)
        assert sorted(m.client_id for m in after) == ["m0", "m1", "m2", "m3"]
        assert [m.client_id for m in seen if m.client_id == "m4"] == []
        assert {"m2", "m3"} <= {m.client_id for m in seen}  # pages after the LEAVE got there
        snapshot = eventually(lambda: rclient.hgetall(prefix + ":presence:b") or None, 10)
        assert sorted(json.loads(v)["clientId"] for v in snapshot.values()) == [
            "m0", "m1", "m2", "m3",
        ]  # fmt: skip
        assert delivered() == [leave]  # SYNC PRESENTs are membership, never stream events
    finally:
        if thread.is_alive():
            bridge.daemon.request_stop()
            thread.join(timeout=30)
        crowd.close()
        rest.close()
