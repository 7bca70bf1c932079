"""Changed messages in a gap: which are, where each version sits, which versions come back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ably_bridge.bridge.backfill_versions import (
    changed_after,
    event_key,
    position_serial,
    with_versions,
)
from ably_bridge.bridge.core.position import Position
from ably_bridge.errors import AblyException
from ably_bridge.protocol.models import Message


def msg(mid: str, serial: str, action: int = 0, vserial: str | None = None, ts: int = 0) -> Message:
    version = {"serial": vserial, "timestamp": ts} if vserial else None
    return Message("n", mid, id=mid, serial=serial, action=action, version=version, timestamp=ts)


@dataclass
class Page:
    """One answer of ``rest.request`` (what ``with_versions`` reads of it)."""

    items: list[dict[str, Any]]
    status_code: int = 200
    error_message: str | None = None
    error_code: int | None = None

    @property
    def success(self) -> bool:
        return self.status_code < 300

    def has_next(self) -> bool:
        return False


@dataclass
class Rest:
    """Versions by message serial; records what was asked."""

    versions: dict[str, list[Message]]
    status: int = 200
    asked: list[str] = field(default_factory=list)

    def request(self, method: str, path: str) -> Page:
        self.asked.append(path)
        serial = path.split("/")[-2]
        if self.status != 200:
            return Page([], self.status, "nope", 50000)
        found = self.versions.get(serial)
        if found is None:
            return Page([], 404, "not found", 40400)
        return Page([m.to_dict(binary=False) for m in found])


def test_where_each_event_sits_and_how_it_is_told_apart() -> None:
    create, update = msg("a", "s1"), msg("a", "s1", 1, "s5")
    summary = Message(id="a", serial="s1", action=4, annotations={"summary": {}})
    assert (position_serial(create), position_serial(update)) == ("s1", "s5")
    assert (event_key(create), event_key(update), event_key(summary)) == ("a", "a@s5", None)
    assert changed_after(update, Position(timestamp=0, serial="s4"))
    assert not changed_after(update, Position(timestamp=0, serial="s5"))
    assert not changed_after(create, Position(timestamp=0, serial="s0"))
    # A checkpoint without a serial: the version's time decides.
    timed = msg("b", "s2", 2, "s6", ts=900)
    assert changed_after(timed, Position(timestamp=900)) and not changed_after(
        timed, Position(timestamp=901)
    )


def test_changed_messages_come_back_as_their_versions_in_channel_order() -> None:
    a0, a1, a2 = msg("a", "s1"), msg("a", "s1", 1, "s3"), msg("a", "s1", 1, "s9")
    b0 = msg("b", "s2")
    rest = Rest({"s1": [a0, a1, a2]})
    gap = [msg("a", "s1", 1, "s9"), b0]  # history: a's latest version, then b
    out = with_versions(rest, "ch", gap, until_serial="s8")  # type: ignore[arg-type]
    assert [(m.id, position_serial(m)) for m in out] == [("a", "s1"), ("b", "s2"), ("a", "s3")]
    # Looked back from a checkpoint at s2: only what came after it.
    out = with_versions(rest, "ch", [a2], until_serial=None, after_serial="s2")  # type: ignore[arg-type]
    assert [position_serial(m) for m in out] == ["s3", "s9"]
    # No changed message: no request.
    quiet = Rest({})
    assert with_versions(quiet, "ch", [b0], None) == [b0]  # type: ignore[arg-type]
    assert quiet.asked == []


def test_a_message_gone_keeps_its_latest_version_and_a_failure_raises() -> None:
    latest = msg("a", "s1", 2, "s4")
    assert with_versions(Rest({}), "ch", [latest], None) == [latest]  # type: ignore[arg-type]
    with pytest.raises(AblyException):
        with_versions(Rest({}, status=500), "ch", [latest], None)  # type: ignore[arg-type]
