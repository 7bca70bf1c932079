"""ABLY_PORT and ABLY_TLS point the bridge at the local emulator, as for the tools and workers."""

from __future__ import annotations

import pytest

from ably_bridge.bridge.config import ConfigError, parse_config

KEY = "appX.keyY:SuperSecretValue123"
RAW = {
    "redis": {"url": "redis://127.0.0.1:6379/0"},
    "routes": [{"id": "r", "channels": ["a"], "targets": [{"type": "redis_stream", "key": "k"}]}],
}


def test_port_and_tls_from_the_environment_win_over_the_file() -> None:
    raw = {**RAW, "ably": {"endpoint": "127.0.0.1", "port": 9000, "tls": True}}
    env = {"ABLY_KEY": KEY, "ABLY_PORT": "8080", "ABLY_TLS": "false", "ABLY_ENDPOINT": "h"}
    ably = parse_config(raw, env).ably
    assert (ably.endpoint, ably.port, ably.tls) == ("h", 8080, False)


def test_without_them_the_file_decides() -> None:
    raw = {**RAW, "ably": {"port": 9000, "tls": False}}
    ably = parse_config(raw, {"ABLY_KEY": KEY}).ably
    assert (ably.port, ably.tls) == (9000, False)
    assert parse_config(RAW, {"ABLY_KEY": KEY}).ably.tls is True


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"ABLY_PORT": "http"}, "ABLY_PORT: must be a port number, not 'http'"),
        ({"ABLY_PORT": "70000"}, "ably.port: must be a port number 1-65535"),
        ({"ABLY_TLS": "maybe"}, "ABLY_TLS: must be true or false, not 'maybe'"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(RAW, {"ABLY_KEY": KEY, **env})
    assert problem in info.value.problems
