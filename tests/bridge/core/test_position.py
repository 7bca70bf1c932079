"""Positions: the JSON a checkpoint holds, written directly, is json's own text."""

from __future__ import annotations

import json

import pytest

from ably_bridge.bridge.core.position import Position, presence_track, route_of_track


@pytest.mark.parametrize(
    "position",
    [
        Position(1700000000000, "conn:1:0", "01700000000000-000@x:0"),
        Position(0),
        Position(5, 'a"b\\c\n\u00e9\u2028\U0001f600', None),
        Position(-3, None, "s\x00"),
        Position(True, "x"),  # type: ignore[arg-type]  # (not an int: json's own path)
        Position(1.5, "x"),  # type: ignore[arg-type]
    ],
)
def test_to_json_is_the_compact_ascii_json_of_its_fields(position: Position) -> None:
    text = position.to_json()
    expected = {"id": position.id, "serial": position.serial, "timestamp": position.timestamp}
    assert text == json.dumps(expected, separators=(",", ":"))
    back = Position.from_json(text)
    assert (back.id, back.serial, back.timestamp) == (
        position.id,
        position.serial,
        int(position.timestamp),
    )


def test_a_presence_track_names_its_route() -> None:
    assert route_of_track(presence_track("r")) == ("r", True)
    assert route_of_track("r") == ("r", False)
