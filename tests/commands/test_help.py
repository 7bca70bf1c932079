"""``--help`` of every tool, usage errors (exit 2), and the key never shown."""

from __future__ import annotations

import pytest

from ably_bridge.commands import TOOLS, build_parser, main, register
from ably_bridge.commands.common import TOOL_ENV

CONNECTION_OPTIONS = ["--key", "--key-file", "--endpoint", "--port", "--tls", "--no-tls"]
PROTOCOL_OPTIONS = ["--binary", "--json-protocol"]

# Options each tool's help must explain (besides the connection options).
TOOL_OPTIONS = {
    "publish": ["CHANNEL", "NAME", "DATA", "--json-data", "--encoding", "--client-id",
                "--cipher-key", "--id", "--json"],
    "subscribe": ["CHANNEL", "--name", "--presence", "--count", "--timeout", "--json",
                  "--cipher-key", "--connect-timeout"],
    "history": ["CHANNEL", "--limit", "--direction", "--start", "--end", "--output",
                "--progress", "--presence", "--page-size", "--json"],
    "presence": ["CHANNEL", "--client-id", "--connection-id", "--json"],
    "stats": ["--unit", "--limit", "--direction", "--start", "--end", "--json"],
    "token": ["--client-id", "--capability", "--ttl", "--request", "--json"],
}  # fmt: skip


def help_text(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_every_tool_has_a_help_check() -> None:
    assert set(TOOL_OPTIONS) == set(TOOLS)


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_help_explains_every_option(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(name, capsys)
    assert text.startswith(f"usage: ably-bridge {name}")
    for option in [*TOOL_OPTIONS[name], *CONNECTION_OPTIONS, *PROTOCOL_OPTIONS]:
        assert option in text, f"{name} --help does not mention {option}"
    # Each option line carries an explanation, and the exit codes are documented.
    assert "Exit 0" in text.replace("\n", " ")
    for env in ("ABLY_KEY", "ABLY_ENDPOINT", "ABLY_PORT", "ABLY_TLS"):
        assert f"${env}" in text


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_help_never_shows_the_key(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLY_KEY", "appx.keyx:TOPSECRETVALUE")
    monkeypatch.setenv("ABLY_CIPHER_KEY", "CIPHERSECRETVALUE")
    text = help_text(name, capsys)
    assert "TOPSECRETVALUE" not in text and "CIPHERSECRETVALUE" not in text


def test_top_level_help_lists_every_tool(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for name in TOOLS:
        assert name in text


def test_register_adds_the_tools_to_another_parser() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="x")
    subparsers = parser.add_subparsers(dest="command")
    register(subparsers)
    args = parser.parse_args(["publish", "c", "n", "d"])
    assert callable(args.handler)
    assert set(subparsers.choices) == set(TOOLS)


def test_no_tool_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["publish", "chat"],  # NAME and DATA missing
        ["publish", "c", "n", "d", "--json-data", "--encoding", "base64"],  # exclusive
        ["subscribe", "c", "--count", "0"],
        ["subscribe", "c", "--timeout", "soon"],
        ["history", "c", "--direction", "sideways"],
        ["history", "c", "--start", "yesterday-ish"],
        ["history", "c", "--page-size", "5000"],
        ["stats", "--unit", "week"],
        ["stats", "--limit", "0"],
        ["token", "--capability", "not json"],
        ["token", "--capability", '{"chat": "subscribe"}'],
        ["token", "--ttl", "-5"],
        ["presence", "c", "--port", "99999"],
        ["presence", "c", "--binary", "--json-protocol"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_missing_key_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ABLY_KEY", raising=False)
    monkeypatch.delenv("ABLY_KEY_FILE", raising=False)
    assert main(["presence", "chat"]) == 2
    err = capsys.readouterr().err
    assert "usage: ably-bridge presence" in err
    assert "no API key" in err


def test_malformed_key_is_a_usage_error_and_not_echoed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLY_KEY", "not-a-key-SECRETPART")
    assert main(["stats"]) == 2
    err = capsys.readouterr().err
    assert "malformed" in err and "SECRETPART" not in err


def test_bad_environment_value_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLY_KEY", "app.key:secret")
    monkeypatch.setenv("ABLY_TLS", "maybe")
    assert main(["stats"]) == 2
    assert "ABLY_TLS must be true or false" in capsys.readouterr().err


def test_tool_environment_variables_are_documented() -> None:
    text = build_parser().format_help()
    assert "publish" in text
    assert set(TOOL_ENV) >= {"ABLY_KEY", "ABLY_ENDPOINT", "ABLY_PORT", "ABLY_TLS"}
