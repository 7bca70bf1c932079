"""The Procfile: its process types, and that every command and variable exists."""

from __future__ import annotations

import shlex

import pytest

from ably_bridge.bridge.config import check_config
from tests.deploy.helpers import (
    ROOT,
    check_command,
    env_example_names,
    env_example_values,
    expand,
    variable_refs,
)

PROCFILE = ROOT / "Procfile"


def processes() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in PROCFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        assert sep and name.strip().isidentifier(), f"bad Procfile line: {line!r}"
        assert name not in found, f"duplicate process type {name}"
        found[name.strip()] = command.strip()
    return found


def test_process_types() -> None:
    assert set(processes()) == {"bridge", "worker", "emulator"}


@pytest.mark.parametrize("name", ["bridge", "worker", "emulator"])
def test_every_command_exists(name: str) -> None:
    argv = shlex.split(expand(processes()[name], env_example_values()))
    check_command(argv, f"Procfile {name}")
    for arg in argv:
        if arg.endswith((".yaml", ".json")):
            assert (ROOT / arg).is_file(), f"Procfile {name}: {arg} does not exist"


def test_every_variable_is_in_env_example() -> None:
    used = set().union(*(variable_refs(command) for command in processes().values()))
    assert used, "the Procfile is expected to take its settings from the environment"
    assert used <= env_example_names(), f"missing from env.example: {used - env_example_names()}"


def test_the_bridge_config_of_the_procfile_is_valid() -> None:
    argv = shlex.split(expand(processes()["bridge"], env_example_values()))
    config = argv[argv.index("--config") + 1]
    assert check_config(ROOT / config, env_example_values()) == []
