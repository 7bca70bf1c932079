"""Message operations (TM2j, TM2s): each update, delete, append and summary is its own event."""

from __future__ import annotations

from typing import Any

import pytest

from ably_bridge.envelope import (
    EnvelopeBuilder,
    decode_envelope,
    envelope_from_dict,
    envelope_from_fields,
)
from ably_bridge.envelope.shape import message_action_name
from ably_bridge.protocol.actions import MessageAction, PresenceAction
from ably_bridge.protocol.models import Message, PresenceMessage

B = EnvelopeBuilder("app1", "local")
SERIAL = "01700000000000-000@abc:000"


def original(**fields: Any) -> Message:
    """The message ``m-1`` as Ably sends it: its id and serial on every version."""
    base: dict[str, Any] = {"id": "m-1", "serial": SERIAL, "timestamp": 1_000, "client_id": "ann"}
    base.update(fields)
    return Message("chat", base.pop("data", "Hello"), **base)


def operation(action: int, version_serial: str, ts: int, **fields: Any) -> Message:
    version = {"serial": version_serial, "timestamp": ts, "clientId": "ed"}
    return original(action=action, version=version, **fields)


def every_layout(env: Any) -> list[Any]:
    """The event read back from the Integrations JSON, a JSON stream entry and a flat one."""
    return [
        decode_envelope(env.to_dict())[0],
        decode_envelope(envelope_from_fields({b"envelope": env.to_json().encode()}))[0],
        decode_envelope(envelope_from_fields(env.flat_fields()))[0],
    ]


def test_operations_get_their_own_dedup_keys_and_creates_keep_theirs() -> None:
    create = B.message("ch", original(action=0, version={"serial": SERIAL}), "r")
    legacy = B.message("ch", original(), "r")  # no action at all (protocol < 4)
    update = B.message("ch", operation(1, "v2", 2_000, data="Hi"), "r")
    again = B.message("ch", operation(1, "v2", 2_000, data="Hi"), "r")
    delete = B.message("ch", operation(2, "v3", 3_000), "r")
    append = B.message("ch", operation(5, "v4", 4_000, data="!"), "r")
    assert create.dedup_key == legacy.dedup_key == "m:m-1"
    assert (update.dedup_key, delete.dedup_key, append.dedup_key) == (
        "m:m-1@v2",
        "m:m-1@v3",
        "m:m-1@v4",
    )
    assert again.dedup_key == update.dedup_key  # a redelivered operation is still a duplicate


def test_an_operation_is_timed_and_placed_by_its_version() -> None:
    update = B.message("ch", operation(1, "v2", 2_000, data="Hi"), "r", now_ms=9_999)
    assert (update.timestamp, update.serial) == (2_000, "v2")  # the checkpoint moves past it
    assert update.item["timestamp"] == 1_000 and update.item["serial"] == SERIAL
    create = B.message("ch", original(action=0), "r", now_ms=9_999)
    assert (create.timestamp, create.serial) == (1_000, SERIAL)


@pytest.mark.parametrize("mode", ["decoded", "encoded"])
def test_every_layout_decodes_action_and_version(mode: str) -> None:
    env = B.message(
        "ch",
        operation(1, "v2", 2_000, data={"t": "Hi"}),
        "r",
        mode=mode,  # type: ignore[arg-type]
    )
    for event in every_layout(env):
        assert event.action is MessageAction.MESSAGE_UPDATE and event.action == 1
        assert event.action_name == "message.update"
        assert event.version == {"serial": "v2", "timestamp": 2_000, "clientId": "ed"}
        assert event.serial == SERIAL and event.id == "m-1" and event.data == {"t": "Hi"}
        assert event.dedup_key == env.dedup_key == "m:m-1@v2"


def test_an_envelope_without_an_action_decodes_as_a_create() -> None:
    env = B.message("ch", original(), "r")
    assert "action" not in env.item and "version" not in env.item
    for event in every_layout(env):
        assert event.action is MessageAction.MESSAGE_CREATE
        assert event.action_name == "message.create" and event.dedup_key == "m:m-1"
        assert event.version == {"serial": SERIAL, "timestamp": 1_000}  # TM2s1, TM2s2
    (bare,) = decode_envelope(B.message("ch", Message("n", 1, id="x"), "r").to_dict())
    assert bare.version is None  # no serial (protocol < 2): nothing to say


def test_summaries_are_told_apart_by_when_they_came() -> None:
    def summary(count: int, now: int) -> Any:
        annotations = {"summary": {"reaction:total.v1": {"total": count}}}
        msg = original(action=4, annotations=annotations, data=None)
        return B.message("ch", msg, "r", now_ms=now)

    first, second, back = summary(1, 5_000), summary(2, 5_001), summary(1, 5_002)
    keys = {first.dedup_key, second.dedup_key, back.dedup_key}
    assert len(keys) == 3 and all(k.startswith("m:m-1@summary:") for k in keys)
    assert first.serial == SERIAL and first.timestamp == 5_000  # never moves a checkpoint
    for event in every_layout(back):
        assert event.action_name == "message.summary"
        assert event.annotations == {"summary": {"reaction:total.v1": {"total": 1}}}
        assert event.dedup_key == back.dedup_key


def test_the_dead_letter_replay_rebuilds_the_operation() -> None:
    update = B.message("ch", operation(2, "v3", 3_000), "r")
    rebuilt = envelope_from_dict(update.to_dict())
    assert (rebuilt.dedup_key, rebuilt.serial, rebuilt.timestamp) == ("m:m-1@v3", "v3", 3_000)
    summary = B.message("ch", original(action=4, annotations={"summary": {}}), "r", now_ms=7)
    assert envelope_from_dict(summary.to_dict()).dedup_key == summary.dedup_key


def test_action_names() -> None:
    names = [message_action_name(a) for a in (None, 0, 1, 2, 3, 4, 5, 9)]
    assert names == [
        "message.create", "message.create", "message.update", "message.delete", "meta",
        "message.summary", "message.append", "action.9",
    ]  # fmt: skip
    presence = B.presence("ch", PresenceMessage(2, id="c:1:0", client_id="b", timestamp=5), "r")
    (event,) = decode_envelope(presence.to_dict())
    assert event.action is PresenceAction.ENTER and event.action_name == "enter"
    (life,) = decode_envelope(B.lifecycle("ch", "attached", "r", now_ms=1).to_dict())
    assert life.action is None and life.action_name is None
