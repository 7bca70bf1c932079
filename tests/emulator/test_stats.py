"""Stats in the current (``entries``) form: derived ``all`` totals and ``inProgress`` (TS12)."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import pytest
import requests

from ably_bridge.emulator import Emulator

from .conftest import basic, rest_post

FIXTURES = [
    {
        "intervalId": "2021-02-03:15:03",
        "inbound": {"realtime": {"messages": {"count": 50, "data": 5000}}},
        "outbound": {"realtime": {"messages": {"count": 20, "data": 2000}}},
    },
    {
        "intervalId": "2021-02-03:15:04",
        "inbound": {"rest": {"messages": {"count": 5}}, "realtime": {"presence": {"count": 2}}},
        "persisted": {"presence": {"count": 7}},
        "all": {"all": {"count": 999}},  # explicit totals win over derived ones
    },
]


def _get(emu: Emulator, key: str, fmt: str, **params: Any) -> list[dict[str, Any]]:
    accept = "application/x-msgpack" if fmt == "msgpack" else "application/json"
    r = requests.get(
        emu.url + "/stats",
        params=params,
        headers={"X-Ably-Version": "6", "Accept": accept},
        auth=basic(key),
        timeout=5,
    )
    assert r.status_code == 200, r.text
    body = msgpack.unpackb(r.content) if fmt == "msgpack" else r.json()
    return list(body)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_entries_carry_the_all_totals(emulator: Emulator, root_key: str, fmt: str) -> None:
    assert rest_post(emulator, "/stats", root_key, FIXTURES).status_code == 201
    first, second = _get(
        emulator,
        root_key,
        fmt,
        start="2021-02-03:15:03",
        end="2021-02-03:15:04",
        direction="forwards",
    )
    e = first["entries"]
    assert e["messages.inbound.realtime.messages.count"] == 50
    assert e["messages.inbound.all.messages.count"] == 50
    assert e["messages.inbound.realtime.all.count"] == 50
    assert e["messages.inbound.all.all.data"] == 5000
    assert e["messages.outbound.all.messages.count"] == 20
    assert e["messages.all.messages.count"] == 70
    assert e["messages.all.all.count"] == 70
    assert first["schema"].startswith("https://") and first["appId"] and first["unit"] == "minute"
    assert "inProgress" not in first  # 2021 is over
    e2 = second["entries"]
    assert e2["messages.inbound.all.all.count"] == 7
    assert e2["messages.inbound.all.presence.count"] == 2
    assert e2["messages.persisted.all.count"] == 7
    assert e2["messages.all.all.count"] == 999
    hour = _get(emulator, root_key, fmt, start="2021-02-03:15", end="2021-02-03:15", unit="hour")
    assert hour[0]["entries"]["messages.inbound.all.all.count"] == 57


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_current_interval_is_in_progress(emulator: Emulator, root_key: str, fmt: str) -> None:
    rest_post(emulator, "/channels/stats-now/messages", root_key, {"data": "x"})
    now = int(time.time() * 1000)
    for unit in ("minute", "hour", "day", "month"):
        items = _get(emulator, root_key, fmt, end=str(now + 120_000), unit=unit, limit="1")
        assert isinstance(items[0]["inProgress"], str), unit
        assert items[0]["entries"]["messages.inbound.rest.messages.count"] >= 1


def test_legacy_form_unchanged(emulator: Emulator, root_key: str) -> None:
    rest_post(emulator, "/stats", root_key, FIXTURES[:1])
    r = requests.get(
        emulator.url + "/stats",
        params={"start": "2021-02-03:15:03", "end": "2021-02-03:15:03"},
        auth=basic(root_key),
        timeout=5,
    )
    item = r.json()[0]
    assert item["inbound"]["realtime"]["messages"]["count"] == 50
    assert "entries" not in item and "inProgress" not in item
