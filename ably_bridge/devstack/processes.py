"""Child processes of the dev stack: started with a log file, watched, stopped in order.

This module owns :class:`Child` (one process: its argv, environment and log
file; ``start``, ``exited``, ``stop`` and ``tail``) and :class:`Supervisor`
(the children of one run: which one died early, and stopping them all in the
reverse order of their start).

Every child runs in a session of its own, so a Ctrl-C in the terminal reaches
only ``ably-bridge dev``, which then stops the children in a deliberate order
(publisher first, the redis-server last). Stopping is SIGTERM, a bounded
wait, then SIGKILL of the child's whole process group. A supervisor made
with ``reaper=True`` also tells a :class:`~ably_bridge.devstack.reaper.Reaper`
about each child, so that the children stop even when the dev stack itself is
killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from ably_bridge.devstack.reaper import Reaper

__all__ = ["Child", "Supervisor"]

log = logging.getLogger(__name__)


class Child:
    """One supervised process writing stdout and stderr to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_timeout: float = 15.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"Child({self.name!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (an exit after that is expected)."""
        return self._stopping

    def start(self) -> Child:
        """Start the process (raises OSError when the program cannot be run)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - argv is built by the dev stack
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError:
            self._log.close()
            self._log = None
            raise
        log.info("started %s (pid %d): %s", self.name, self._proc.pid, " ".join(self.argv))
        return self

    def exited(self) -> int | None:
        """The exit status if the process has ended (negative: killed by that signal)."""
        if self._proc is None:
            return None
        return self._proc.poll()

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL the process group."""
        self._stopping = True
        proc = self._proc
        if proc is None:
            return None
        timeout = self.stop_timeout if timeout is None else timeout
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs: killing it", self.name, timeout)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        log.info("%s (pid %d) exited with %s", self.name, proc.pid, proc.returncode)
        return proc.returncode

    def tail(self, lines: int = 20) -> list[str]:
        """The last ``lines`` lines of the log file (empty when there is none)."""
        try:
            with self.log_path.open("rb") as handle:
                last = deque(handle, maxlen=lines)
        except OSError:
            return []
        return [line.decode("utf-8", "replace").rstrip("\n") for line in last]


class Supervisor:
    """The children of one run, in start order."""

    def __init__(self, *, reaper: bool = False) -> None:
        self.children: list[Child] = []
        self._want_reaper = reaper
        self._reaper: Reaper | None = None

    def add(self, child: Child) -> Child:
        """Supervise ``child`` (started already, or started later through :meth:`start`)."""
        self.children.append(child)
        if child.pid is not None and self._want_reaper:
            if self._reaper is None:
                self._reaper = Reaper()
            self._reaper.watch(child.pid)  # its own session: the pid is the group id
        return child

    def start(self, child: Child) -> Child:
        """Start ``child`` and supervise it."""
        child.start()
        return self.add(child)

    def died(self) -> Child | None:
        """The first child that exited without being asked to, if any."""
        for child in self.children:
            if not child.stopping and child.exited() is not None:
                return child
        return None

    @property
    def reaper_pid(self) -> int | None:
        """The pid of the reaper watching the children (None before the first child)."""
        return self._reaper.pid if self._reaper is not None else None

    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children if c.pid is not None}

    def stop(self, name: str, timeout: float | None = None) -> int | None:
        for child in self.children:
            if child.name == name:
                return child.stop(timeout)
        return None

    def stop_all(self, timeout: float | None = None) -> None:
        """Stop every child, the last started first."""
        for child in reversed(self.children):
            started = time.monotonic()
            child.stop(timeout)
            log.debug("%s stopped in %.1fs", child.name, time.monotonic() - started)
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None
