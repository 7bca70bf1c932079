"""Configuration keys added for ``ably-bridge run``: logging, the Ably port/TLS, drain timeout."""

from __future__ import annotations

import pytest

from ably_bridge.bridge.config import ConfigError
from tests.bridge.daemon_fakes import make_config


def test_defaults() -> None:
    config = make_config()
    assert config.log_format == "json" and config.log_payloads is False
    assert config.ably.port is None and config.ably.tls is True
    assert config.delivery.drain_timeout == 30.0


def test_values() -> None:
    config = make_config(
        log_format="text",
        log_payloads=True,
        ably={"endpoint": "127.0.0.1", "port": 8080, "tls": False},
        delivery={"drain_timeout": 5},
    )
    assert config.log_format == "text" and config.log_payloads is True
    assert (config.ably.port, config.ably.tls) == (8080, False)
    assert config.delivery.drain_timeout == 5.0


def test_problems_are_reported_with_their_paths() -> None:
    with pytest.raises(ConfigError) as err:
        make_config(
            log_format="xml",
            log_payloads="yes",
            ably={"port": 70000, "tls": "no"},
            delivery={"drain_timeout": -1},
        )
    problems = err.value.problems
    assert "log_format: must be one of json, text" in problems
    assert "log_payloads: must be true or false" in problems
    assert "ably.port: must be a port number 1-65535" in problems
    assert "ably.tls: must be true or false" in problems
    assert "delivery.drain_timeout: must be >= 0" in problems
