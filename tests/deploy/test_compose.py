"""deploy/docker-compose.yml: the Compose schema, commands, variables, files and shutdown."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from typing import Any

import jsonschema
import pytest
import yaml

from ably_bridge import __version__
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

COMPOSE = DEPLOY / "docker-compose.yml"
OUR_IMAGE = f"ably-bridge:{__version__}"  # the tag every deploy file uses
IMAGE_ENTRYPOINT = ["ably-bridge"]  # deploy/Dockerfile's ENTRYPOINT


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def compose_schema() -> dict[str, Any]:
    # The Compose specification's schema as vendored by check-jsonschema (no network).
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def interpolated(value: Any) -> Any:
    """Compose interpolation of ``${VAR:-default}`` with env.example's values."""
    if isinstance(value, str):
        return expand(value, env_example_values()).replace("$$", "$")
    if isinstance(value, list):
        return [interpolated(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolated(v) for k, v in value.items()}
    return value


def test_valid_against_the_compose_specification() -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_catches_mistakes() -> None:
    broken = compose()
    broken["services"]["bridge"]["stop_grace_period"] = {"seconds": 45}
    broken["services"]["worker"]["restrat"] = "always"
    validator = jsonschema.Draft202012Validator(compose_schema())
    assert len(list(validator.iter_errors(broken))) >= 2


def test_services() -> None:
    assert set(compose()["services"]) == {"redis", "emulator", "bridge", "worker"}


def _command(service: dict[str, Any]) -> list[str]:
    entrypoint = service.get("entrypoint", IMAGE_ENTRYPOINT)
    command = service.get("command", [])
    parts = [*entrypoint, *command] if isinstance(command, list) else shlex.split(command)
    return [str(p) for p in interpolated(parts)]


@pytest.mark.parametrize("name", ["emulator", "bridge", "worker", "redis"])
def test_every_command_exists(name: str) -> None:
    service = compose()["services"][name]
    if service.get("image") == OUR_IMAGE:
        check_command(_command(service), f"compose {name}")
    else:
        check_command([str(p) for p in service["command"]], f"compose {name}")
    test = service.get("healthcheck", {}).get("test")
    if test:
        test = interpolated(test)
        argv = test[1:] if test[0] == "CMD" else shlex.split(test[1])
        check_command(argv, f"compose {name} healthcheck")


def test_every_variable_is_in_env_example() -> None:
    lines = COMPOSE.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    refs = variable_refs(re.sub(r"\$\$\w+", "", text)) - PLATFORM_VARS
    names = set(refs)
    for service in compose()["services"].values():
        environment = service.get("environment", {})
        names |= set(environment if isinstance(environment, dict) else [])
    missing = names - env_example_names()
    assert not missing, f"missing from deploy/env.example: {missing}"


def test_mounted_files_and_build_context_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            assert (context / build["dockerfile"]).is_file()


def _bridge_config_path() -> str:
    bridge = compose()["services"]["bridge"]
    mounts = dict(reversed(v.split(":")[:2]) for v in bridge["volumes"])
    argv = _command(bridge)
    return str(mounts[argv[argv.index("--config") + 1]])


def test_the_bridge_config_is_valid_with_the_compose_environment() -> None:
    environment = interpolated(compose()["services"]["bridge"]["environment"])
    config = load_config(DEPLOY / _bridge_config_path(), environment)
    # A host (with a dot), not a routing policy name: "emulator" would mean
    # emulator.realtime.ably.net (REC1b).
    assert config.ably.endpoint == "emulator.internal"
    emulator = compose()["services"]["emulator"]
    assert "emulator.internal" in emulator["networks"]["default"]["aliases"]
    # Loopback and the container's own address (the published port forwards to it).
    bridge = compose()["services"]["bridge"]
    assert config.health.host == f"127.0.0.1,{bridge['hostname']}"
    assert "0.0.0.0" not in str(compose()["services"])
    assert config.ably.tls is False


def test_stop_grace_period_covers_the_drain() -> None:
    bridge = compose()["services"]["bridge"]
    config = load_config(DEPLOY / _bridge_config_path(), interpolated(bridge["environment"]))
    grace = bridge["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace[:-1]) >= config.delivery.drain_timeout + 10


def test_the_emulator_app_matches_the_key() -> None:
    emulator = compose()["services"]["emulator"]
    argv = _command(emulator)
    assert argv[argv.index("--host") + 1] == "emulator.internal"
    app = json.loads((DEPLOY / "compose" / "emulator-app.json").read_text())
    key = interpolated(compose()["x-ably-env"]["ABLY_KEY"])
    assert key == f"{app['appId']}.{app['keys'][0]['id']}:{app['keys'][0]['value']}"
