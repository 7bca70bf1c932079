"""``ably-bridge publish`` against the emulator: text, JSON, pre-encoded, encrypted, errors."""

from __future__ import annotations

import base64
import io
import json

import pytest

from ably_bridge import AblyRest, generate_random_key
from ably_bridge.emulator import Emulator
from tests.commands.conftest import RunTool


def rest(emulator: Emulator, **options: object) -> AblyRest:
    return AblyRest(
        key=emulator.root_key, endpoint="127.0.0.1", port=emulator.port, tls=False, **options
    )


def test_publish_text_prints_the_id(run_tool: RunTool, emulator: Emulator) -> None:
    result = run_tool("publish", "pub:text", "greet", "hello world")
    assert result.code == 0, result.err
    assert result.out.startswith("published greet to pub:text: id ")
    message_id = result.out.split("id ")[1].strip()
    [stored] = rest(emulator).channels.get("pub:text").history().items
    assert (stored.id, stored.name, stored.data) == (message_id, "greet", "hello world")


def test_publish_json_data_with_options_and_json_output(
    run_tool: RunTool, emulator: Emulator
) -> None:
    result = run_tool(
        "publish", "pub:json", "order", '{"id": 7, "items": [1, 2]}', "--json-data",
        "--client-id", "ops", "--id", "fixed-id:0", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert out["channel"] == "pub:json" and out["name"] == "order" and out["id"] == "fixed-id:0"
    assert out["serial"]
    [stored] = rest(emulator).channels.get("pub:json").history().items
    assert stored.data == {"id": 7, "items": [1, 2]}
    assert stored.client_id == "ops"


def test_publish_pre_encoded_base64_arrives_as_binary(
    run_tool: RunTool, emulator: Emulator
) -> None:
    payload = base64.b64encode(b"\x00\x01binary").decode()
    result = run_tool("publish", "pub:bin", "blob", payload, "--encoding", "base64")
    assert result.code == 0, result.err
    [stored] = rest(emulator).channels.get("pub:bin").history().items
    assert stored.data == b"\x00\x01binary"


def test_publish_reads_stdin(
    run_tool: RunTool, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("from a pipe\n"))
    assert run_tool("publish", "pub:stdin", "line", "-").code == 0
    [stored] = rest(emulator).channels.get("pub:stdin").history().items
    assert stored.data == "from a pipe"


def test_publish_encrypted_with_cipher_key_from_env(
    run_tool: RunTool, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = base64.b64encode(generate_random_key(256)).decode()
    monkeypatch.setenv("ABLY_CIPHER_KEY", key)
    result = run_tool("publish", "pub:secret", "note", "classified")
    assert result.code == 0, result.err
    [raw] = rest(emulator).channels.get("pub:secret").history().items
    assert raw.data != "classified"  # stored encrypted
    [decrypted] = rest(emulator).channels.get("pub:secret", cipher=key).history().items
    assert decrypted.data == "classified"


def test_publish_rejects_json_data_that_is_not_an_object(run_tool: RunTool) -> None:
    result = run_tool("publish", "pub:x", "n", "42", "--json-data")
    assert result.code == 2
    assert "JSON object or array" in result.err
    result = run_tool("publish", "pub:x", "n", "{oops", "--json-data")
    assert result.code == 2 and "not JSON" in result.err


def test_publish_with_wrong_secret_exits_1_and_never_prints_the_key(
    run_tool: RunTool, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_name = emulator.root_key.split(":")[0]
    wrong = f"{key_name}:WRONGSECRETVALUE"
    monkeypatch.setenv("ABLY_KEY", wrong)
    result = run_tool("publish", "pub:x", "n", "d")
    assert result.code == 1
    assert "error 40101 (HTTP 401)" in result.err
    assert "WRONGSECRETVALUE" not in result.err + result.out


def test_publish_unreachable_endpoint_exits_1(
    ably_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ably_bridge.commands import main

    # A port nothing listens on (the emulator's neighbour is not guaranteed free: port 9).
    code = main(["publish", "c", "n", "d", "--endpoint", "127.0.0.1", "--port", "9", "--no-tls"])
    assert code == 1
    assert "error" in capsys.readouterr().err
