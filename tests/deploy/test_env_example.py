"""deploy/env.example lists every variable the bridge, the workers and the tools read."""

from __future__ import annotations

import json
import re

import workers.app
from ably_bridge.bridge.config import ENV_OVERRIDES
from ably_bridge.commands.common import TOOL_ENV
from tests.deploy.helpers import DEPLOY, ENV_EXAMPLE, ROOT, env_example_names, env_example_values


def test_bridge_overrides_are_listed() -> None:
    assert set(ENV_OVERRIDES) <= env_example_names()


def test_worker_variables_are_listed() -> None:
    documented = set(re.findall(r"``([A-Z][A-Z0-9_]+)``", workers.app.__doc__ or ""))
    assert len(documented) > 20
    assert documented <= env_example_names(), documented - env_example_names()


def test_tool_variables_are_listed() -> None:
    assert set(TOOL_ENV) <= env_example_names()


def test_no_variable_is_listed_twice() -> None:
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert len(names) == len(set(names))


def test_every_listed_variable_is_used_somewhere() -> None:
    sources = [
        *ROOT.joinpath("ably_bridge").rglob("*.py"),
        *ROOT.joinpath("workers").rglob("*.py"),
        *ROOT.joinpath("examples").rglob("*.py"),
        *(p for p in DEPLOY.rglob("*") if p.is_file() and p != ENV_EXAMPLE),
        ROOT / "Procfile",
    ]
    text = "\n".join(p.read_text(errors="replace") for p in sources)
    unused = {name for name in env_example_names() if name not in text}
    assert not unused, f"env.example lists variables nothing reads: {unused}"


def test_the_example_key_is_the_emulator_development_key() -> None:
    app = json.loads((DEPLOY / "compose" / "emulator-app.json").read_text())
    key = app["keys"][0]
    assert env_example_values()["ABLY_KEY"] == f"{app['appId']}.{key['id']}:{key['value']}"
    assert "not-for-production" in key["value"]
