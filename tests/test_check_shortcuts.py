"""``python -m ably_bridge.check_shortcuts``, run as docs/dependencies.md shows it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from ably_bridge.shortcuts import ENV_VAR, SHORTCUTS
from tests.readme_support import ROOT, block


def _run(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (command,) = block("shortcuts-check").commands()
    argv = shlex.split(command)
    assert argv[:1] == [".venv/bin/python"] and argv[1:] == ["-m", "ably_bridge.check_shortcuts"]
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR} | extra_env
    return subprocess.run(
        [sys.executable, *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_every_shortcut_is_listed_and_taken_here() -> None:
    done = _run({})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(SHORTCUTS)
    assert all(line.split()[1] == "taken" for line in lines)
    for line, shortcut in zip(lines, SHORTCUTS.values(), strict=True):
        for library, tested in shortcut.libraries.items():
            assert f"{library} " in line and f"(tested {tested})" in line, line


def test_a_shortcut_switched_off_is_named_and_fails_the_check() -> None:
    done = _run({ENV_VAR: "redis.raw_pipeline"})
    assert done.returncode == 1
    (off,) = [line for line in done.stdout.splitlines() if "OFF" in line]
    assert off.startswith("redis.raw_pipeline") and "tested >=" in off
