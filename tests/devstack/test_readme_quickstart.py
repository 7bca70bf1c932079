"""The README's run command, followed literally on a fresh copy with a fresh virtualenv.

The test reads the first command of the first ``sh`` block of README.md (the
quick start: ``make dev``), copies the repository's files (``git ls-files``,
untracked-but-not-ignored files included) into a temporary directory, and runs
that command there with a ``VENV`` the Makefile creates from scratch, plus
``DEV_ARGS`` to make the run finite and machine-readable. It passes when the
stack came up, a published message reached the Redis Stream and the Celery
task, the command exited 0, and no process of the run is left.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.readme_support import copy_repository

from .conftest import assert_flowed, assert_no_children_left, clean_env, run_process

ROOT = Path(__file__).resolve().parents[2]
DEV_ARGS = "--port 0 --duration 10 --json --summary-interval 1"


def readme_run_command(readme: str) -> str:
    """The first command of the first ```sh block, without its comment."""
    match = re.search(r"^```sh\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no ```sh block"
    for line in match.group(1).splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            return command
    raise AssertionError("the first ```sh block of README.md has no command")


def test_readme_run_command_is_found() -> None:
    assert readme_run_command("# x\n\n```sh\nmake dev    # run it\nmake test\n```\n") == "make dev"
    assert readme_run_command((ROOT / "README.md").read_text()).split()[0] == "make"


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_readme_run_command_on_a_fresh_copy(tmp_path: Path) -> None:
    for tool in ("git", "make", "redis-server"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on the PATH")
    command = readme_run_command((ROOT / "README.md").read_text())
    workdir = tmp_path / "ably-bridge"
    assert copy_repository(workdir) > 50
    venv = tmp_path / "venv"
    dev_args = f"{DEV_ARGS} --log-dir {tmp_path / 'logs'}"
    argv = [*shlex.split(command), f"VENV={venv}", f"DEV_ARGS={dev_args}"]
    started = time.monotonic()
    run = run_process(argv, env=clean_env(), cwd=workdir, timeout=360)
    elapsed = time.monotonic() - started
    print(f"{command!r} on a fresh copy took {elapsed:.1f}s", file=sys.stderr)
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert (venv / "bin" / "ably-bridge").exists()  # the Makefile made the venv
    start = run.started
    assert start["redis_started"] is True
    assert_flowed(run)
    stopped = run.of("stopped")
    assert stopped and stopped[-1]["exit_code"] == 0
    assert_no_children_left(start)
