"""Presence gap-fill end to end: the emulator, real Redis, the bridge stopped and started.

Presence events that happen while the bridge is not running are read back from
the channel's presence history (with their original enter/update/leave
actions) and delivered in order, before the live ones, on the next start.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from ably_bridge.emulator import Emulator
from ably_bridge.realtime import AblyRealtime
from ably_bridge.rest.client import AblyRest
from tests.bridge.test_daemon_integration import (
    Running,
    bridge_config,
    stream_events,
)
from tests.support.services import redis_available
from tests.support.wait import eventually

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")

ENTER, LEAVE, UPDATE = 2, 3, 4


def member(emulator: Emulator, key: str, client_id: str) -> AblyRealtime:
    return AblyRealtime(
        key=key, client_id=client_id, endpoint="127.0.0.1", port=emulator.port, tls=False,
        insecure_allow_basic_over_http=True,
    )  # fmt: skip


def presence_of(client: redis.Redis, stream: str) -> list[tuple[str, int, Any]]:
    out = []
    for env in stream_events(client, stream):
        if env["source"] == "channel.presence":
            item = env["presence"][0]
            out.append((item["clientId"], int(item["action"]), item.get("data")))
    return out


def test_the_emulator_keeps_presence_history_with_the_original_actions(
    emulator: Emulator,
    key: str,
) -> None:
    alice = member(emulator, key, "alice")
    rest = AblyRest(
        key=key, endpoint="127.0.0.1", port=emulator.port, tls=False,
        insecure_allow_basic_over_http=True,
    )  # fmt: skip
    try:
        presence = alice.channels.get("hist").presence
        presence.enter("in", timeout=10)
        presence.update("still", timeout=10)
        presence.leave(timeout=10)
        page = rest.request(
            "GET", "/channels/hist/presence/history", params={"direction": "forwards"}
        )
        got = [(i["clientId"], i["action"], i.get("data")) for i in page.items]
        assert got == [
            ("alice", ENTER, "in"),
            ("alice", UPDATE, "still"),
            ("alice", LEAVE, "still"),
        ]
    finally:
        alice.close()
        rest.close()


def test_presence_while_the_bridge_was_stopped_is_delivered_in_order_on_start(
    emulator: Emulator,
    key: str,
    prefix: str,
    rclient: redis.Redis,
) -> None:
    config = bridge_config(emulator, key, prefix)
    stream = f"{prefix}:s:b"
    alice, bob = member(emulator, key, "alice"), member(emulator, key, "bob")
    try:
        with Running(config) as run:
            run.wait_live()
            alice.channels.get("b").presence.enter("hi", timeout=10)
            eventually(lambda: presence_of(rclient, stream) == [("alice", ENTER, "hi")],
                       what="the live enter")  # fmt: skip
        # The bridge is stopped: these happen unseen.
        bob.channels.get("b").presence.enter("yo", timeout=10)
        alice.channels.get("b").presence.update("brb", timeout=10)
        alice.channels.get("b").presence.leave(timeout=10)
        with Running(config) as run:
            run.wait_live()
            bob.channels.get("b").presence.update("later", timeout=10)
            want = [
                ("alice", ENTER, "hi"),
                ("bob", ENTER, "yo"),
                ("alice", UPDATE, "brb"),
                ("alice", LEAVE, "brb"),
                ("bob", UPDATE, "later"),
            ]
            eventually(lambda: presence_of(rclient, stream) == want, timeout=30,
                       what="the missed presence events, in order, then the live one")  # fmt: skip
    finally:
        alice.close()
        bob.close()
