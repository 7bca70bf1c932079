"""Presence snapshot upkeep (snapshot_upkeep.py): apply, SYNC replace, clear, failures logged."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ably_bridge.bridge.config import Route, parse_config
from ably_bridge.bridge.router import Router
from ably_bridge.bridge.snapshot_upkeep import SnapshotUpkeep
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import PresenceMessage


class FakeSnapshot:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    def _call(self, *args: Any) -> None:
        if self.fail:
            raise ConnectionError("snapshot store down")
        self.calls.append(args)

    def apply(self, envs: list[Any]) -> None:
        self._call("apply", [e.item["clientId"] for e in envs])

    def replace(self, channel: str, envs: list[Any], route_id: str) -> None:
        self._call("replace", channel, [e.item["clientId"] for e in envs], route_id)

    def clear(self, channel: str, route_id: str) -> None:
        self._call("clear", channel, route_id)


def routes() -> Router:
    raw = {
        "redis": {"url": "memory://"},
        "celery": {"broker_url": "memory://"},
        "routes": [
            {
                "id": "kept",
                "channels": ["room:*"],
                "sources": ["presence"],
                "presence_snapshot": True,
                "targets": [{"type": "redis_stream", "key": "s"}],
            },
            {
                "id": "plain",
                "channels": ["room:*"],
                "sources": ["presence"],
                "targets": [{"type": "redis_stream", "key": "s"}],
            },
        ],
    }
    return Router(parse_config(raw, {"ABLY_KEY": "app.key:secret"}).routes)


def member(client: str, action: int = 2) -> PresenceMessage:
    return PresenceMessage(
        action=action, client_id=client, connection_id="c", id=f"c:{client}:0", timestamp=5
    )


def upkeep(snapshot: FakeSnapshot) -> tuple[SnapshotUpkeep, Router]:
    router = routes()

    def snapshot_for(route: Route) -> FakeSnapshot | None:
        return snapshot if route.id == "kept" else None

    return SnapshotUpkeep(snapshot_for, EnvelopeBuilder("app", "local"), lambda key: None), router  # type: ignore[arg-type]


def test_accepted_presence_is_applied_in_order_only_to_routes_that_keep_a_snapshot() -> None:
    snap = FakeSnapshot()
    keeper, router = upkeep(snap)
    builder = EnvelopeBuilder("app", "local")
    envs: list[Any] = [
        (m, builder.presence("room:1", member(c), m.route.id), None)
        for c in ("ann", "bob")
        for m in router.match("room:1", "presence")
    ]
    envs.append((router.match("room:1", "presence")[0], None, "undecodable"))
    keeper.apply(envs)
    assert snap.calls == [("apply", ["ann", "bob"])]


def test_a_sync_replaces_the_snapshot_and_detach_clears_it() -> None:
    snap = FakeSnapshot()
    keeper, router = upkeep(snap)
    keeper.synced(
        "room:1", router.match("room:1", "presence"), [member("ann", 1), member("bob", 1)]
    )
    kept, plain = (m.route for m in router.match("room:1", "presence"))
    keeper.clear(plain, "room:1")  # no snapshot configured: nothing to clear
    keeper.clear(kept, "room:1")
    assert snap.calls == [
        ("replace", "room:1", ["ann", "bob"], "kept"),
        ("clear", "room:1", "kept"),
    ]


def test_a_failing_snapshot_is_logged_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    snap = FakeSnapshot(fail=True)
    keeper, router = upkeep(snap)
    builder = EnvelopeBuilder("app", "local")
    match = router.match("room:1", "presence")[0]
    with caplog.at_level(logging.WARNING):
        keeper.apply([(match, builder.presence("room:1", member("ann"), "kept"), None)])
        keeper.synced("room:1", [match], [member("ann", 1)])
        keeper.clear(match.route, "room:1")
    text = caplog.text
    assert "update failed" in text and "not replaced" in text and "not cleared" in text
