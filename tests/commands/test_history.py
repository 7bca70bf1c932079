"""``ably-bridge history``: JSON lines export, limits, directions, file output, progress."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ably_bridge import AblyRest
from ably_bridge.emulator import Emulator
from tests.commands.conftest import RunTool


@pytest.fixture
def filled(emulator: Emulator, request: pytest.FixtureRequest) -> str:
    """A channel with 25 messages named m0..m24, published in order."""
    channel = f"hist:{request.node.name}"
    rest = AblyRest(key=emulator.root_key, endpoint="127.0.0.1", port=emulator.port, tls=False)
    ch = rest.channels.get(channel)
    for start in range(0, 25, 5):
        ch.publish(messages=[_msg(i) for i in range(start, start + 5)])
    return channel


def _msg(i: int) -> object:
    from ably_bridge import Message

    return Message(f"m{i}", {"n": i} if i % 2 else f"text {i}")


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_history_exports_every_message_as_json_lines(run_tool: RunTool, filled: str) -> None:
    result = run_tool("history", filled, "--page-size", "7", "--no-progress")
    assert result.code == 0, result.err
    rows = lines(result.out)
    assert [r["name"] for r in rows] == [f"m{i}" for i in reversed(range(25))]
    assert rows[0]["data"] == "text 24" and rows[1]["data"] == {"n": 23}
    assert all("id" in r and "timestamp" in r for r in rows)
    assert result.err == ""  # no progress, no summary on stdout exports


def test_history_limit_and_forwards(run_tool: RunTool, filled: str) -> None:
    result = run_tool("history", filled, "--limit", "4", "--direction", "forwards")
    assert result.code == 0, result.err
    assert [r["name"] for r in lines(result.out)] == ["m0", "m1", "m2", "m3"]


def test_history_time_window(run_tool: RunTool, filled: str) -> None:
    later = str(int(time.time() * 1000) + 60_000)
    result = run_tool("history", filled, "--start", later)
    assert result.code == 0 and result.out == ""
    result = run_tool("history", filled, "--start", "1h", "--end", later, "--limit", "3")
    assert [r["name"] for r in lines(result.out)] == ["m24", "m23", "m22"]


def test_history_to_file_with_json_summary(run_tool: RunTool, filled: str, tmp_path: Path) -> None:
    target = tmp_path / "export.jsonl"
    result = run_tool("history", filled, "--output", str(target), "--json", "--no-progress")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["count"] == 25 and summary["output"] == str(target)
    assert len(lines(target.read_text())) == 25


def test_history_progress_bar_on_stderr(run_tool: RunTool, filled: str) -> None:
    result = run_tool("history", filled, "--progress", "--limit", "10", "--page-size", "3")
    assert result.code == 0, result.err
    assert len(lines(result.out)) == 10  # stdout stays pure JSON lines
    assert "\r" in result.err and "100%" in result.err and "#" in result.err
    assert "exported 10 messages" in result.err


def test_history_presence(run_tool: RunTool, emulator: Emulator) -> None:
    from ably_bridge import AblyRealtime

    with AblyRealtime(
        key=emulator.root_key, endpoint="127.0.0.1", port=emulator.port, tls=False,
        client_id="hist-user",
    ) as rt:  # fmt: skip
        rt.channels.get("hist:presence").presence.enter("here", timeout=5)
    result = run_tool("history", "hist:presence", "--presence")
    assert result.code == 0, result.err
    actions = [r["action"] for r in lines(result.out)]
    assert "enter" in actions


def test_history_start_after_end_is_usage(run_tool: RunTool) -> None:
    result = run_tool("history", "x", "--start", "2000", "--end", "1000")
    assert result.code == 2 and "--start is after --end" in result.err


def test_history_unwritable_output_exits_1(run_tool: RunTool, tmp_path: Path) -> None:
    result = run_tool("history", "x", "--output", str(tmp_path / "missing" / "f.jsonl"))
    assert result.code == 1 and "No such file" in result.err
