"""The dev stack's reaper: a watcher process that outlives ``ably-bridge dev`` if it is killed.

This module owns both sides of one pipe:

- :class:`Reaper`, used by the dev stack, starts ``python -m
  ably_bridge.devstack.reaper`` in a session of its own and tells it, one line
  at a time, which process groups to watch (``+<pgid>``) and when the run ended
  in order (``bye``);
- :func:`main`, the watcher, reads those lines. When its standard input ends
  without ``bye`` (the dev stack died, SIGKILL included, which no handler in
  the dev stack can catch), it sends SIGTERM to every group it was told about,
  waits up to a grace period, then SIGKILLs what is left, and exits.

Every child of the dev stack runs in a session of its own (so Ctrl-C reaches
only the dev stack, which stops them in order); without the reaper, killing
the dev stack would leave the bridge, the worker and redis-server running.
The reaper needs no OS-specific call (no ``prctl``) and no polling: the kernel
closes the pipe when its writer dies, however it dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import IO

__all__ = ["Reaper", "main"]

GRACE_SECONDS = 5.0


class Reaper:
    """The dev stack's end of the pipe (see the module docstring)."""

    def __init__(self, *, grace: float = GRACE_SECONDS) -> None:
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "ably_bridge.devstack.reaper", f"{grace:g}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def watch(self, pgid: int) -> None:
        """Ask the reaper to stop process group ``pgid`` if the dev stack dies."""
        self._send(f"+{pgid}\n")

    def close(self, timeout: float = 5.0) -> None:
        """The run ended in order: the reaper exits without stopping anything."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.write(b"bye\n")
            proc.stdin.close()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def _send(self, line: str) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        # A reaper that died cannot protect anything; the run goes on without it.
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.write(line.encode("ascii"))
            proc.stdin.flush()


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_all(groups: Iterable[int], signum: int) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def reap(groups: set[int], grace: float) -> set[int]:
    """SIGTERM every group, wait up to ``grace`` seconds, SIGKILL the rest; the groups killed."""
    _signal_all(groups, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    stubborn = {g for g in groups if _alive(g)}
    _signal_all(stubborn, signal.SIGKILL)
    return stubborn


def serve(lines: IO[bytes], grace: float) -> int:
    """Read watch lines until ``bye`` (exit 0) or end of input (reap, exit 1)."""
    groups: set[int] = set()
    for raw in lines:
        line = raw.strip()
        if line == b"bye":
            return 0
        if line.startswith(b"+") and line[1:].isdigit():
            groups.add(int(line[1:]))
    reap(groups, grace)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    grace = float(args[0]) if args else GRACE_SECONDS
    # A Ctrl-C in the dev stack's terminal does not reach this session; SIGTERM still ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return serve(sys.stdin.buffer, grace)


if __name__ == "__main__":
    raise SystemExit(main())
