"""Stats (TS12, both wire shapes) and ChannelDetails (CHD/CHS/CHO/CHM)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ably_bridge.errors import EncodingError
from ably_bridge.protocol.stats import (
    ChannelDetails,
    ChannelStatus,
    Stats,
    interval_time_from_id,
    unit_from_interval_id,
)

V3_ITEM = {
    "intervalId": "2024-01-01:10:05",
    "unit": "minute",
    "schema": "https://schemas.ably.com/json/app-stats-0.0.5.json",
    "appId": "appId",
    "inProgress": "2024-01-01:10:05:30",
    "entries": {
        "messages.all.all.count": 5,
        "messages.inbound.realtime.messages.count": 3,
        "connections.all.peak": 1.5,
        "bogus.flag": True,
        "bogus.text": "x",
    },
}


def test_v3_entries_form() -> None:
    stats = Stats.from_dict(V3_ITEM)
    assert stats.interval_id == "2024-01-01:10:05"
    assert stats.unit == "minute"
    assert stats.app_id == "appId"
    assert stats.in_progress == "2024-01-01:10:05:30"
    assert stats.schema is not None
    assert stats.interval_time == datetime(2024, 1, 1, 10, 5, tzinfo=UTC)
    assert stats.entries == {
        "messages.all.all.count": 5,
        "messages.inbound.realtime.messages.count": 3,
        "connections.all.peak": 1.5,
    }
    again = Stats.from_dict(stats.to_dict())
    assert again == stats


def test_legacy_nested_form_is_flattened_with_its_own_keys() -> None:
    legacy = {
        "intervalId": "2024-02-03:04",
        "unit": "hour",
        "inbound": {"realtime": {"messages": {"count": 5, "data": 50}, "note": "skip"}},
        "channels": {"peak": 2},
        "apiRequests": {"succeeded": 7.0},
        "label": "top-level text is not a stat",
        "count": 9,
    }
    stats = Stats.from_dict(legacy)
    assert stats.entries == {
        "inbound.realtime.messages.count": 5,
        "inbound.realtime.messages.data": 50,
        "channels.peak": 2,
        "apiRequests.succeeded": 7.0,
        "count": 9,
    }
    assert stats.interval_time == datetime(2024, 2, 3, 4, tzinfo=UTC)


def test_entries_win_over_nested_duplicates() -> None:
    stats = Stats.from_dict({"entries": {"channels.peak": 1}, "channels": {"peak": 99}})
    assert stats.entries == {"channels.peak": 1}
    assert stats.to_dict() == {"entries": {"channels.peak": 1}}


@pytest.mark.parametrize(
    ("interval_id", "expected", "unit"),
    [
        ("2024-01-01:10:05", datetime(2024, 1, 1, 10, 5, tzinfo=UTC), "minute"),
        ("2024-01-01:10", datetime(2024, 1, 1, 10, tzinfo=UTC), "hour"),
        ("2024-01-01", datetime(2024, 1, 1, tzinfo=UTC), "day"),
        ("2024-07", datetime(2024, 7, 1, tzinfo=UTC), "month"),
        ("2024-13-01", None, "day"),
        ("2024-01-01:25", None, "hour"),
        ("2024", None, None),
        ("2024-01:10", None, None),
        ("2024-01-01:10:05:30", None, None),
        ("2024-0a-01", None, None),
        ("\uff12\uff10\uff12\uff14-01", None, None),  # full-width digits
        ("", None, None),
        (None, None, None),
    ],
)
def test_interval_ids(interval_id: str | None, expected: datetime | None, unit: str | None) -> None:
    assert interval_time_from_id(interval_id) == expected
    assert unit_from_interval_id(interval_id) == unit


def test_unit_is_inferred_only_when_missing() -> None:
    assert Stats.from_dict({"intervalId": "2024-01-01:10"}).unit == "hour"
    assert Stats.from_dict({"intervalId": "2024-01-01:10", "unit": "day"}).unit == "day"
    assert Stats(interval_id="2024-03").interval_time == datetime(2024, 3, 1, tzinfo=UTC)


def test_stats_tolerates_odd_values_but_not_non_maps() -> None:
    stats = Stats.from_dict({"intervalId": 5, "unit": None, "entries": "x", "appId": ["a"]})
    assert stats == Stats()
    with pytest.raises(EncodingError):
        Stats.from_dict([])  # type: ignore[arg-type]


CHANNEL_DETAILS = {
    "channelId": "ch",
    "status": {
        "isActive": True,
        "occupancy": {
            "metrics": {
                "connections": 1,
                "presenceConnections": 1,
                "presenceMembers": 0,
                "presenceSubscribers": 1,
                "publishers": 1,
                "subscribers": 1,
                "objectPublishers": 0,
                "objectSubscribers": 0,
            }
        },
    },
}


def test_channel_details_from_the_protocol_example() -> None:
    details = ChannelDetails.from_dict(CHANNEL_DETAILS)
    assert details.channel_id == "ch"
    assert details.status.is_active is True
    assert details.status.metrics["presenceSubscribers"] == 1
    assert len(details.status.metrics) == 8
    assert details.to_dict() == CHANNEL_DETAILS
    assert ChannelDetails.from_dict(details.to_dict()) == details


@pytest.mark.parametrize(
    ("raw", "active", "metrics"),
    [
        ({"channelId": "c"}, False, {}),
        ({"channelId": "c", "status": "x"}, False, {}),
        ({"channelId": "c", "status": {"isActive": "yes"}}, False, {}),
        ({"channelId": "c", "status": {"occupancy": {"metrics": "x"}}}, False, {}),
        (
            {
                "status": {
                    "isActive": True,
                    "occupancy": {"metrics": {"a": 2.0, "b": 1.5, "c": "x"}},
                }
            },
            True,
            {"a": 2},
        ),
    ],
)
def test_channel_details_tolerates_missing_parts(
    raw: dict[str, Any], active: bool, metrics: dict[str, int]
) -> None:
    details = ChannelDetails.from_dict(raw)
    assert details.status.is_active is active
    assert details.status.metrics == metrics


def test_channel_details_rejects_non_maps() -> None:
    with pytest.raises(EncodingError):
        ChannelDetails.from_dict("ch")  # type: ignore[arg-type]
    with pytest.raises(EncodingError):
        ChannelStatus.from_dict(None)  # type: ignore[arg-type]
