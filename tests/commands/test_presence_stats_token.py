"""``ably-bridge presence``, ``stats`` and ``token`` against the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ably_bridge import AblyException, AblyRealtime, AblyRest, TokenRequest
from ably_bridge.emulator import Emulator
from tests.commands.conftest import RunTool


@pytest.fixture
def members(emulator: Emulator) -> Iterator[str]:
    """Two members present on ``pres:room`` for the duration of the test."""
    options = {"endpoint": "127.0.0.1", "port": emulator.port, "tls": False}
    with (
        AblyRealtime(key=emulator.root_key, client_id="alice", **options) as a,
        AblyRealtime(key=emulator.root_key, client_id="bob", **options) as b,
    ):
        a.channels.get("pres:room").presence.enter({"status": "online"}, timeout=5)
        b.channels.get("pres:room").presence.enter("away", timeout=5)
        yield "pres:room"


def test_presence_lists_members_as_json(run_tool: RunTool, members: str) -> None:
    result = run_tool("presence", members, "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["channel"] == members and doc["count"] == 2
    by_client = {m["clientId"]: m for m in doc["members"]}
    assert by_client["alice"]["data"] == {"status": "online"}
    assert by_client["bob"]["data"] == "away"
    assert all(m["action"] == "present" for m in doc["members"])


def test_presence_text_and_filter(run_tool: RunTool, members: str) -> None:
    result = run_tool("presence", members, "--client-id", "bob")
    assert result.code == 0, result.err
    rows = result.out.splitlines()
    assert rows[0].startswith("bob\t") and rows[0].endswith("\tpresent\taway")
    assert rows[-1] == f"1 member(s) present on {members}"


def test_presence_of_an_empty_channel_is_not_an_error(run_tool: RunTool) -> None:
    result = run_tool("presence", "pres:nobody", "--json")
    assert result.code == 0
    assert json.loads(result.out)["members"] == []


def test_stats_json_and_text(run_tool: RunTool, emulator: Emulator) -> None:
    AblyRest(
        key=emulator.root_key, endpoint="127.0.0.1", port=emulator.port, tls=False
    ).channels.get("stats:ch").publish("n", "d")
    result = run_tool("stats", "--unit", "hour", "--limit", "2", "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["unit"] == "hour" and 1 <= doc["count"] <= 2
    entries = doc["intervals"][0]["entries"]
    assert entries.get("messages.all.all.count", 0) >= 1
    text = run_tool("stats", "--limit", "1")
    assert text.code == 0
    assert "messages.all.all.count" in text.out and text.out.endswith("1 interval(s)\n")


def test_token_details(run_tool: RunTool, emulator: Emulator) -> None:
    result = run_tool(
        "token", "--client-id", "carol", "--ttl", "10m",
        "--capability", '{"chat:*":["history"]}', "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    details = json.loads(result.out)
    assert details["clientId"] == "carol"
    assert json.loads(details["capability"]) == {"chat:*": ["history"]}
    assert 590_000 <= details["expires"] - details["issued"] <= 610_000
    # The token works and is limited to its capability.
    client = AblyRest(token=details["token"], endpoint="127.0.0.1", port=emulator.port, tls=False)
    assert client.channels.get("chat:x").history().items == []
    with pytest.raises(AblyException) as info:
        client.channels.get("other").history()
    assert info.value.code == 40160
    secret = emulator.root_key.split(":")[1]
    assert secret not in result.out + result.err


def test_token_text_output(run_tool: RunTool) -> None:
    result = run_tool("token")
    assert result.code == 0, result.err
    labels = [line.split(":")[0] for line in result.out.splitlines()]
    assert labels == ["token", "issued", "expires", "client id", "capability"]


def test_token_request_is_signed_and_accepted(run_tool: RunTool, emulator: Emulator) -> None:
    result = run_tool("token", "--request", "--client-id", "dave", "--ttl", "60")
    assert result.code == 0, result.err
    raw = json.loads(result.out)
    request = TokenRequest.from_dict(raw)
    key_name, secret = emulator.root_key.split(":")
    assert request.key_name == key_name and request.client_id == "dave" and request.ttl == 60_000
    assert request.verify(secret)
    assert secret not in result.out
    client = AblyRest(
        auth_callback=lambda _params: request, endpoint="127.0.0.1", port=emulator.port, tls=False
    )
    details = client.auth.authorize()
    assert details.client_id == "dave"


def test_token_with_a_capability_beyond_the_key_exits_1(
    run_tool: RunTool, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLY_KEY", emulator.keys[2])  # subscribe/history/presence only
    result = run_tool("token", "--capability", '{"*":["publish"]}')
    assert result.code == 1
    assert "error 4" in result.err
