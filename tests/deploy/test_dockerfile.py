"""deploy/Dockerfile, checked by structure (no Docker engine here): stages, user, commands."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field

import yaml

from ably_bridge.bridge.config import load_config
from tests.deploy.helpers import DEPLOY, ROOT, check_command, env_example_names, env_example_values

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line[:-1].strip()}" if line.endswith("\\") else f"{pending} {line}"
        if not line.endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    out = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages() -> list[Stage]:
    found: list[Stage] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            match = re.match(r"^(\S+)(?:\s+AS\s+(\S+))?$", args, re.IGNORECASE)
            assert match, f"bad FROM {args}"
            found.append(Stage(match[1], match[2]))
        elif found:
            found[-1].instructions.append((keyword, args))
    return found


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"{args} is not in exec (JSON array) form"
    return [str(v) for v in value]


def test_multi_stage_build() -> None:
    build, runtime = stages()
    assert (build.name, runtime.name) == ("build", "runtime")
    assert any(a.startswith("--from=build ") for a in runtime.all("COPY"))
    # No compiler or sources in the runtime image: only the built wheels come over.
    assert not any(a.split()[0] in ("ably_bridge", "workers") for a in runtime.all("COPY"))


def test_the_runtime_runs_as_a_non_root_user() -> None:
    runtime = stages()[-1]
    user = runtime.last("USER")
    assert user is not None
    name = user.split(":")[0]
    assert name not in ("root", "0")
    assert any(f"--uid {name}" in run or f"-u {name}" in run for run in runtime.all("RUN"))
    k8s = yaml.safe_load_all((DEPLOY / "kubernetes" / "bridge-statefulset.yaml").read_text())
    statefulset = next(d for d in k8s if d["kind"] == "StatefulSet")
    assert str(statefulset["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == name


def test_entrypoint_and_cmd_are_cli_commands() -> None:
    runtime = stages()[-1]
    entrypoint = exec_form(runtime.last("ENTRYPOINT") or "[]")
    command = exec_form(runtime.last("CMD") or "[]")
    assert entrypoint == ["ably-bridge"]
    check_command([*entrypoint, *command], "Dockerfile ENTRYPOINT + CMD")
    config = command[command.index("--config") + 1]
    copied = [a.split()[-2:] for a in runtime.all("COPY") if a.split()[-1] == config]
    assert copied, f"{config} is not copied into the image"
    source = copied[0][0]
    assert load_config(ROOT / source, env_example_values()).health.port == int(
        runtime.last("EXPOSE") or 0
    )


def test_healthcheck_is_a_valid_command() -> None:
    runtime = stages()[-1]
    healthcheck = runtime.last("HEALTHCHECK")
    assert healthcheck is not None
    _, _, cmd = healthcheck.partition(" CMD ")
    argv = exec_form(cmd.strip())
    check_command(argv, "Dockerfile HEALTHCHECK")
    used = set(re.findall(r"environ\.get\('([A-Z_]+)'", " ".join(argv)))
    assert used <= env_example_names()
    assert "/healthz" in argv[-1]


def test_graceful_stop_signal() -> None:
    assert stages()[-1].last("STOPSIGNAL") == "SIGTERM"


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for stage in stages():
        for args in stage.all("COPY"):
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            if args.startswith("--from="):
                continue
            for source in parts[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert _included(source, patterns), f"COPY {source}: excluded by .dockerignore"


def _included(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern[1:] if negate else pattern
        if bare == "**" or fnmatch.fnmatch(path, bare) or fnmatch.fnmatch(path + "/x", bare):
            included = negate
    return included
