"""What the deployment tests share: the repository's paths, env.example, command checks.

:func:`check_command` takes a command line from a deployment file (Procfile,
Compose, Kubernetes, systemd, Dockerfile) and proves it would start: an
``ably-bridge`` command must parse with the package CLI's own parser (the
options of every subcommand included), a ``celery -A MODULE SUB`` command must
name an importable Celery app and parse with Celery's own click command, and
``python -m MODULE`` must name an importable module.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / "env.example"

# Programs a deployment file may run besides ours (checked by name only).
EXTERNAL = {"redis-server", "redis-cli", "sh", "/bin/kill", "kill"}
# Variables the platform sets (not ours to document).
PLATFORM_VARS = {"HOSTNAME", "MAINPID", "PATH", "HOME"}

_ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, $NAME, $(NAME); not $$NAME (Compose escape).
_VAR_REF = re.compile(
    r"(?<!\$)\$(?:"
    r"\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}"  # ${NAME...}
    r"|\(([A-Z_][A-Z0-9_]*)\)"  # $(NAME), Kubernetes
    r"|([A-Za-z_][A-Za-z0-9_]*))"  # $NAME
)


def env_example_names() -> set[str]:
    """Every variable env.example lists, set or commented out."""
    return set(_ENV_LINE.findall(ENV_EXAMPLE.read_text()))


def env_example_values() -> dict[str, str]:
    """The variables env.example sets (uncommented lines)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def variable_refs(text: str) -> set[str]:
    """The variables a command or a file interpolates."""
    return {next(g for g in m.groups() if g) for m in _VAR_REF.finditer(text)}


def expand(text: str, values: dict[str, str]) -> str:
    """Interpolate ``${X:-d}``, ``${X}``, ``$X`` and ``$(X)`` with ``values`` (or the default)."""

    def sub(match: re.Match[str]) -> str:
        whole = match.group(0)
        name = next(g for g in match.groups() if g)
        default = ""
        if whole.startswith("${") and ":-" in whole:
            default = whole[whole.index(":-") + 2 : -1]
        return values.get(name, default) or default or f"<{name}>"

    return _VAR_REF.sub(sub, text)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def check_command(argv: list[str], where: str) -> None:
    """Assert that ``argv`` (already interpolated) is a valid command of this project."""
    assert argv, f"{where}: empty command"
    program = Path(argv[0]).name if argv[0].startswith("/opt/") else argv[0]
    if program == "ably-bridge":
        _check_ably_bridge(argv[1:], where)
    elif program == "celery":
        _check_celery(argv[1:], where)
    elif program in ("python", "python3") and argv[1:2] == ["-m"]:
        assert importlib.util.find_spec(argv[2]) is not None, f"{where}: no module {argv[2]}"
    elif program in ("python", "python3") and argv[1:2] == ["-c"]:
        compile(argv[2], where, "exec")
    else:
        assert program in EXTERNAL, f"{where}: unknown program {argv[0]!r}"


def _check_ably_bridge(args: list[str], where: str) -> None:
    from ably_bridge.cli import build_parser

    parser = build_parser()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            parsed = parser.parse_args(args)
        except SystemExit:
            command = shlex.join(args)
            pytest.fail(f"{where}: `ably-bridge {command}` is not valid: {stderr.getvalue()}")
    assert getattr(parsed, "handler", None) is not None, f"{where}: no subcommand in {args}"


def _check_celery(args: list[str], where: str) -> None:
    import click
    from celery import Celery
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery as celery_group

    app_name: str | None = None
    rest = list(args)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option in ("-A", "--app"):
            app_name = rest.pop(0)
        elif option.startswith("--app="):
            app_name = option.split("=", 1)[1]
        else:
            pytest.fail(f"{where}: celery option {option} is not checked here")
    assert app_name, f"{where}: celery without -A"
    module = importlib.import_module(app_name.split(":")[0])
    app = getattr(module, "celery", None) or getattr(module, "app", None)
    assert isinstance(app, Celery), f"{where}: {app_name} has no Celery app"
    assert rest, f"{where}: celery without a subcommand"
    command = celery_group.commands.get(rest[0])
    assert command is not None, f"{where}: celery has no subcommand {rest[0]!r}"
    obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    try:
        command.make_context(rest[0], rest[1:], obj=obj)
    except click.ClickException as exc:
        pytest.fail(f"{where}: `celery {shlex.join(args)}`: {exc.format_message()}")
