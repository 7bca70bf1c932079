"""The bridge delivers the server's presence events, not the member map's, end to end.

A LEAVE that arrives while a multi-page presence SYNC is in progress:

The client's member map stores it as ABSENT and emits nothing (RTP2h2a), so a
bridge that delivered the map's subscriber events never saw it. The bridge
takes the raw presence feed instead: the LEAVE reaches the Redis Stream with
its id, while the member map and the snapshot hash stay spec-conformant. The
emulator spaces its SYNC pages (``sync_page_interval_ms``) so the LEAVE goes
out between them; the bridge's key has no ``history`` right, so presence
history cannot deliver the LEAVE instead (it is live or nothing).

A member that left while the bridge's connection was lost for good: the client
synthesizes a LEAVE when the re-attach's SYNC no longer lists it (RTP19a, no
id); the bridge delivers the real one, from presence history, once.
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

ENTER, LEAVE, UPDATE = 2, 3, 4
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


def test_a_member_gone_during_a_lost_connection_leaves_once_with_its_real_id(
    emulator: Emulator, app: dict[str, Any], prefix: str, rclient: redis.Redis
) -> None:
    root = str(app["keys"][0]["keyStr"])
    crowd: AblyRealtime = _client(AblyRealtime, emulator, root)
    rest: AblyRest = _client(AblyRest, emulator, root)
    route = {
        "id": "main", "channels": ["b"], "sources": ["presence"],
        "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}],
    }  # fmt: skip
    config = bridge_config(emulator, root, prefix, routes=[route])
    source = RealtimeSource.from_config(config, callback_workers=2)
    bridge = BridgeApp(config, source=source)
    thread = threading.Thread(target=bridge.run, daemon=True)
    stream = f"{prefix}:s:b"

    def delivered() -> list[tuple[int, str, str | None]]:
        items = (e["presence"][0] for e in stream_events(rclient, stream))
        return [(int(i["action"]), i["clientId"], i.get("id")) for i in items]

    try:
        thread.start()
        eventually(lambda: bridge.daemon.readiness()[0], 15, "bridge ready")
        members = crowd.channels.get("b").presence
        members.enter_client("alice", timeout=10)
        members.enter_client("bob", timeout=10)
        eventually(lambda: len(delivered()) == 2, 15, "the live enters")
        channel = source.client.channels.get("b")
        changes: list[Any] = []
        channel.on(changes.append)
        gone = source.client.connection.id
        assert emulator.faults.stall(connection_id=gone) == 1  # bob's LEAVE never gets out
        members.leave_client("bob", timeout=10)
        emulator.faults.expire_channel_continuity(str(app["appId"]), "b")  # nothing replayed
        assert emulator.faults.forget_connections(connection_id=gone) == 1  # resume fails

        eventually(
            lambda: any(c.current == ChannelState.ATTACHED and not c.resumed for c in changes),
            15, "re-attached without continuity",
        )  # fmt: skip
        assert [m.client_id for m in channel.presence.get(timeout=10)] == ["alice"]
        history = rest.channels.get("b").presence.history(direction="backwards", limit=1)
        real = (LEAVE, "bob", history.items[0].id)
        assert real[2] is not None
        eventually(lambda: real in delivered(), 15, "bob's LEAVE from presence history")
        # A live event after the re-attach: everything before it is in the stream.
        members.update_client("alice", "later", timeout=10)
        eventually(lambda: delivered()[-1][:2] == (UPDATE, "alice"), 15, "the later update")
        # The synthesized LEAVE (no id) is not delivered: one LEAVE for bob, the real one.
        got = delivered()
        assert [e for e in got if e[1] == "bob" and e[0] == LEAVE] == [real], got
        assert [(a, c) for a, c, _ in got] == [
            (ENTER, "alice"), (ENTER, "bob"), (LEAVE, "bob"), (UPDATE, "alice"),
        ]  # fmt: skip
    finally:
        if thread.is_alive():
            bridge.daemon.request_stop()
            thread.join(timeout=30)
        crowd.close()
        rest.close()
