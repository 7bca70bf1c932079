"""What the documentation tests share: fenced blocks, a sandbox copy, a running dev stack.

* :func:`doc_blocks` / :func:`block` - the fenced blocks of the user-facing
  Markdown files, each with the ``<!-- block: ... -->`` marker on the line
  before it: an id (run by a test in ``tests/test_readme.py``) or
  ``not run (reason)``.
* :func:`make_sandbox` - a copy of the repository's files in an empty folder
  with ``.venv`` pointing at the running interpreter's environment, where a
  block's commands run as written (``make dev``, ``.venv/bin/ably-bridge``,
  ``./.ably-dev.env``) without touching the real tree.
* :class:`DevStackProcess` - ``make dev`` (or any command printing the dev
  stack's ``--json`` lines) in the background, with waits on its events.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "examples" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_MARKER = re.compile(r"^<!-- block: (?P<mark>.+?) -->$")
_NOT_RUN = re.compile(r"^not run \((?P<reason>.+)\)$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file."""

    path: Path
    line: int
    lang: str
    text: str
    mark: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def id(self) -> str | None:
        return None if self.mark is None or _NOT_RUN.match(self.mark) else self.mark

    @property
    def not_run_reason(self) -> str | None:
        found = _NOT_RUN.match(self.mark or "")
        return found.group("reason") if found else None

    def commands(self) -> list[str]:
        """A shell block's command lines (comments and blank lines left out)."""
        out = []
        for line in self.text.splitlines():
            command = line.split(" #", 1)[0].strip() if not line.startswith("#") else ""
            if command:
                out.append(command)
        return out


def doc_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            lang = line[3:].strip()
            end = index + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            before = lines[index - 1].strip() if index else ""
            marker = _MARKER.match(before)
            text = "\n".join(lines[index + 1 : end]) + "\n"
            found.append(
                Block(path, index + 1, lang, text, marker.group("mark") if marker else None)
            )
            index = end + 1
            continue
        index += 1
    return found


def all_blocks() -> list[Block]:
    return [b for path in DOCS for b in doc_blocks(path)]


def block(block_id: str) -> Block:
    matches = [b for b in all_blocks() if b.id == block_id]
    assert len(matches) == 1, f"block {block_id!r}: {len(matches)} found"
    return matches[0]


def copy_repository(destination: Path) -> int:
    """Copy the files git knows about (tracked, or untracked and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    copied = 0
    for raw in listed:
        if not raw:
            continue
        source = ROOT / raw.decode()
        if not source.is_file():  # deleted in the work tree
            continue
        target = destination / raw.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied += 1
    return copied


def make_sandbox(destination: Path) -> Path:
    """A copy of the repository whose ``.venv`` is this interpreter's environment."""
    assert copy_repository(destination) > 50
    (destination / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    # The environment is installed already: `make` in the copy must never rebuild it
    # (through the link, with the copy's paths in its scripts) because the copy's
    # pyproject.toml looks newer than the stamp of the environment.
    os.utime(destination / "pyproject.toml", (0, 0))
    return destination


_FOREIGN = ("ABLY_", "CELERY_", "REDIS_", "FLASK_", "TOKEN_SERVER_")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` as on a fresh machine: no Ably, Celery, Redis or example settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def with_dev_args(command: str, extra: str) -> list[str]:
    """``make dev DEV_ARGS="..."`` as argv, with ``extra`` appended to its ``DEV_ARGS``."""
    argv = shlex.split(command)
    for index, token in enumerate(argv):
        if token.startswith("DEV_ARGS="):
            argv[index] = f"{token} {extra}"
            return argv
    return [*argv, f"DEV_ARGS={extra}"]


class DevStackProcess:
    """A background command that prints the dev stack's JSON lines; waits on its events."""

    def __init__(self, argv: list[str], cwd: Path, env: Mapping[str, str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                text = line.strip()
                if text.startswith("{"):
                    with contextlib.suppress(ValueError):
                        self.events.append(json.loads(text))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """The first event matching ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    output = "".join(self.lines)[-4000:]
                    raise AssertionError(f"no matching event within {timeout}s:\n{output}")
                self._changed.wait(min(left, 0.5))

    def stop(self) -> None:
        """SIGTERM to the stack (make and its children), then wait for it to end."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(timeout=10)


def run_shell(script: str, cwd: Path, env: Mapping[str, str], timeout: float = 60) -> str:
    """Run ``script`` with ``bash -e``; its output, or an assertion error with it."""
    done = subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=dict(env), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{script}\n-> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout
