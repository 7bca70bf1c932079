"""``ably-bridge subscribe`` in-process: messages, name filter, presence, --count, --timeout."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ably_bridge import AblyRealtime, AblyRest
from ably_bridge.emulator import Emulator
from tests.commands.conftest import RunTool


@pytest.fixture
def rest(emulator: Emulator) -> Iterator[AblyRest]:
    with AblyRest(
        key=emulator.root_key, endpoint="127.0.0.1", port=emulator.port, tls=False
    ) as client:
        yield client


def when_attached(emulator: Emulator, channel: str, action: Callable[[], None]) -> None:
    """Run ``action`` in a thread once a connection (the tool's) has attached ``channel``."""
    rest = AblyRest(key=emulator.root_key, endpoint="127.0.0.1", port=emulator.port, tls=False)

    def go() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if rest.channels.get(channel).status().status.metrics.get("subscribers"):
                break
            time.sleep(0.02)
        action()

    threading.Thread(target=go, daemon=True).start()


def test_subscribe_prints_json_lines_and_exits_after_count(
    run_tool: RunTool, emulator: Emulator, rest: AblyRest
) -> None:
    channel = rest.channels.get("sub:json")

    def publish() -> None:
        channel.publish("skip", "not this one")
        channel.publish("greet", "one")
        channel.publish("greet", {"n": 2})

    when_attached(emulator, "sub:json", publish)
    result = run_tool(
        "subscribe", "sub:json", "--name", "greet", "--count", "2", "--timeout", "10", "--json"
    )
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.out.splitlines()]
    assert [(e["type"], e["name"], e["data"]) for e in events] == [
        ("message", "greet", "one"),
        ("message", "greet", {"n": 2}),
    ]
    assert all(e["channel"] == "sub:json" and e["id"] for e in events)
    assert "attached to sub:json" in result.err


def test_subscribe_presence_in_text_form(run_tool: RunTool, emulator: Emulator) -> None:
    def enter() -> None:
        with AblyRealtime(
            key=emulator.root_key, endpoint="127.0.0.1", port=emulator.port, tls=False,
            client_id="alice",
        ) as rt:  # fmt: skip
            rt.channels.get("sub:presence").presence.enter("hi", timeout=5)
            rt.channels.get("sub:presence").publish("chat", "hello", timeout=5)

    when_attached(emulator, "sub:presence", enter)
    # Enter, the message, and the leave when the client closes, in the channel's
    # order: messages and presence events go through one queue.
    result = run_tool("subscribe", "sub:presence", "--presence", "--count", "3", "--timeout", "10")
    assert result.code == 0, result.err
    out = result.out.splitlines()
    assert len(out) == 3, out
    assert " presence enter alice hi" in out[0], out
    assert " chat [alice] hello" in out[1], out
    assert " presence leave alice" in out[2], out


def test_subscribe_timeout_without_count_exits_0(run_tool: RunTool) -> None:
    started = time.monotonic()
    result = run_tool("subscribe", "sub:quiet", "--timeout", "0.3", "--quiet")
    assert result.code == 0, result.err
    assert result.out == "" and result.err == ""
    assert time.monotonic() - started < 10


def test_subscribe_timeout_before_count_exits_1(run_tool: RunTool) -> None:
    result = run_tool("subscribe", "sub:quiet", "--count", "3", "--timeout", "0.3")
    assert result.code == 1
    assert "timed out after 0.3s with 0 of 3 events" in result.err


def test_subscribe_refused_channel_exits_1(
    run_tool: RunTool, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    restricted = emulator.create_app({"keys": [{"capability": '{"allowed:*":["subscribe"]}'}]})
    monkeypatch.setenv("ABLY_KEY", restricted["keys"][0]["keyStr"])
    try:
        result = run_tool("subscribe", "forbidden", "--timeout", "5")
    finally:
        emulator.delete_app(restricted["appId"])
    assert result.code == 1
    assert "error 40160" in result.err
    secret = str(restricted["keys"][0]["keyStr"]).split(":")[1]
    assert secret not in result.err
