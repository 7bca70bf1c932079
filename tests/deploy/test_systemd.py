"""deploy/systemd: unit files whose commands, users, variables and stop timeouts make sense."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from ably_bridge.bridge.config import load_config
from tests.deploy.helpers import (
    DEPLOY,
    PLATFORM_VARS,
    check_command,
    env_example_names,
    env_example_values,
    expand,
    variable_refs,
)

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def unit_env(service: configparser.SectionProxy) -> dict[str, str]:
    values: dict[str, str] = {}
    for assignment in shlex.split(service.get("Environment", "")):
        name, _, value = assignment.partition("=")
        values[name] = value
    if service.get("EnvironmentFile") == "/etc/ably-bridge/env":
        values.update(env_example_values())  # the env file is a copy of env.example
    return values


def test_units() -> None:
    assert [p.name for p in UNITS] == ["ably-bridge-worker.service", "ably-bridge.service"]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_unit_commands_exist(path: Path) -> None:
    parsed = unit(path)
    service = parsed["Service"]
    assert parsed["Install"]["WantedBy"] == "multi-user.target"
    env = unit_env(service)
    for key in ("ExecStartPre", "ExecStart"):
        if key not in service:
            continue
        line = service[key]
        refs = variable_refs(line) - PLATFORM_VARS
        assert refs <= env_example_names(), f"{path.name} {key}: {refs - env_example_names()}"
        check_command(shlex.split(expand(line, env)), f"{path.name} {key}")


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_runs_unprivileged_and_stops_gracefully(path: Path) -> None:
    service = unit(path)["Service"]
    assert service["User"] not in ("root", "0")
    assert service["NoNewPrivileges"] == "yes"
    assert service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"] == "/etc/ably-bridge/env"


def test_bridge_stop_timeout_covers_the_drain_and_reload_is_sighup() -> None:
    service = unit(DEPLOY / "systemd" / "ably-bridge.service")["Service"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    argv = shlex.split(service["ExecStart"])
    config_path = argv[argv.index("--config") + 1]
    # The unit's config is the operator's; the drain default applies unless they change it.
    assert config_path == "/etc/ably-bridge/bridge.yaml"
    drain = load_config(DEPLOY / "compose" / "bridge.yaml", env_example_values())
    assert int(service["TimeoutStopSec"]) >= drain.delivery.drain_timeout + 10
