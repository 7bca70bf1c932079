"""Wire enumerations (TR2, TR3, TB2d, TP2, TM5) and the mode helpers."""

from __future__ import annotations

import pytest

from ably_bridge.errors import AblyException
from ably_bridge.protocol.actions import (
    MODE_MASK,
    Action,
    ChannelMode,
    Flag,
    MessageAction,
    PresenceAction,
    action_from_wire,
    message_action_from_wire,
    modes_from_flags,
    modes_to_flags,
    presence_action_from_wire,
)


def test_actions_are_numbered_as_on_the_wire() -> None:
    assert [a.value for a in Action] == list(range(22))
    assert Action.HEARTBEAT.value == 0
    assert Action.CONNECTED.value == 4
    assert Action.ERROR.value == 9
    assert Action.ATTACHED.value == 11
    assert Action.MESSAGE.value == 15
    assert Action.SYNC.value == 16
    assert Action.AUTH.value == 17
    assert Action.OBJECT_SYNC.value == 20
    assert Action.ANNOTATION.value == 21


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        (Flag.HAS_PRESENCE, 1),
        (Flag.HAS_BACKLOG, 2),
        (Flag.RESUMED, 4),
        (Flag.TRANSIENT, 16),
        (Flag.ATTACH_RESUME, 32),
        (Flag.HAS_OBJECTS, 128),
        (Flag.PRESENCE, 65536),
        (Flag.PUBLISH, 131072),
        (Flag.SUBSCRIBE, 262144),
        (Flag.PRESENCE_SUBSCRIBE, 524288),
        (Flag.ANNOTATION_PUBLISH, 2097152),
        (Flag.ANNOTATION_SUBSCRIBE, 4194304),
        (Flag.OBJECT_SUBSCRIBE, 16777216),
        (Flag.OBJECT_PUBLISH, 33554432),
    ],
)
def test_flag_values_match_the_protocol_table(flag: Flag, value: int) -> None:
    assert int(flag) == value


def test_channel_modes_are_exactly_the_flags_from_bit_16() -> None:
    mode_flags = {f.name: f.value for f in Flag if f.value >= 1 << 16}
    assert {m.name: m.value for m in ChannelMode} == mode_flags
    assert sum(mode_flags.values()) == MODE_MASK
    assert MODE_MASK & 0xFFFF == 0


def test_modes_from_attached_flags_ignore_non_mode_bits() -> None:
    # ATTACHED example from ably-protocol.md 1.6: HAS_PRESENCE + three modes.
    modes = modes_from_flags(917505)
    assert modes == ChannelMode.PUBLISH | ChannelMode.SUBSCRIBE | ChannelMode.PRESENCE_SUBSCRIBE
    assert ChannelMode.PRESENCE not in modes
    assert modes_from_flags(int(Flag.HAS_PRESENCE | Flag.RESUMED)) == ChannelMode(0)


def test_modes_to_flags_accepts_members_and_names_in_any_case() -> None:
    flags = modes_to_flags(
        ["subscribe", "PRESENCE_SUBSCRIBE", " annotation-publish ", ChannelMode.PUBLISH]
    )
    assert flags == int(
        Flag.SUBSCRIBE | Flag.PRESENCE_SUBSCRIBE | Flag.ANNOTATION_PUBLISH | Flag.PUBLISH
    )
    assert modes_to_flags(["message_subscribe"]) == int(Flag.SUBSCRIBE)
    assert modes_to_flags([]) == 0
    assert modes_from_flags(modes_to_flags(["Object-Publish"])) == ChannelMode.OBJECT_PUBLISH


def test_modes_to_flags_rejects_unknown_names() -> None:
    with pytest.raises(AblyException) as caught:
        modes_to_flags(["subscribe", "teleport"])
    assert caught.value.code == 40000
    assert "teleport" in caught.value.message


def test_presence_and_message_actions() -> None:
    assert [a.name for a in PresenceAction] == ["ABSENT", "PRESENT", "ENTER", "LEAVE", "UPDATE"]
    assert [a.value for a in PresenceAction] == [0, 1, 2, 3, 4]
    assert [a.value for a in MessageAction] == [0, 1, 2, 3, 4, 5]
    assert MessageAction.MESSAGE_APPEND.value == 5
    assert MessageAction.META.value == 3


def test_unknown_wire_actions_stay_plain_ints() -> None:
    assert action_from_wire(15) is Action.MESSAGE
    assert action_from_wire(99) == 99
    assert type(action_from_wire(99)) is int
    assert presence_action_from_wire(2) is PresenceAction.ENTER
    assert type(presence_action_from_wire(7)) is int
    assert message_action_from_wire(1) is MessageAction.MESSAGE_UPDATE
    assert type(message_action_from_wire(42)) is int
