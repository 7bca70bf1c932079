"""The dev stack's terminal: Ctrl-C reaches the stack (not make); a closed stdout is no crash.

This module owns two small pieces of terminal handling for ``ably-bridge dev``:

* :func:`own_foreground` - under ``make dev``, a Ctrl-C is sent to the whole
  foreground process group, ``make`` included, and ``make`` answers a SIGINT by
  exiting with status 130 whatever its recipe returns. So when the stack runs
  under make (``MAKELEVEL`` is set) in the terminal's foreground group, it moves
  into a process group of its own and makes that group the terminal's
  foreground: Ctrl-C then reaches only the stack, which stops cleanly and
  exits 0, and ``make`` returns that 0. The terminal's foreground is given back
  on the way out (the shell takes it back anyway when ``make`` ends).
* :class:`SafeStream` - a text stream that stops writing, silently, once its
  reader has gone (``make dev | tee log`` and a Ctrl-C that ends ``tee`` first):
  the stack still shuts everything down and exits 0 instead of dying on a
  ``BrokenPipeError`` with its final summary half written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from typing import TextIO

__all__ = ["SafeStream", "own_foreground"]


def _terminal_fd() -> int | None:
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            continue
        if os.isatty(fd):
            return fd
    return None


@contextlib.contextmanager
def own_foreground(env: Mapping[str, str] | None = None) -> Iterator[bool]:
    """Take the terminal's foreground for this process's own group while under make.

    Yields whether it did. Does nothing when not under make, without a terminal,
    in the background, or where process groups are not available.
    """
    env = os.environ if env is None else env
    fd = _terminal_fd()
    taken = False
    previous = 0
    if env.get("MAKELEVEL") and fd is not None and hasattr(os, "tcsetpgrp"):
        try:
            previous = os.tcgetpgrp(fd)
            if previous == os.getpgrp() and os.getpgrp() != os.getpid():
                os.setpgid(0, 0)
                _set_foreground(fd, os.getpgrp())
                taken = True
        except OSError:
            taken = False
    try:
        yield taken
    finally:
        if taken and fd is not None:
            with contextlib.suppress(OSError):
                _set_foreground(fd, previous)


def _set_foreground(fd: int, pgrp: int) -> None:
    # A process that is not in the foreground group gets SIGTTOU on tcsetpgrp.
    saved = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, saved)


class SafeStream:
    """Writes to ``stream`` until its reader goes away, then drops what follows."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.closed = False

    def write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.closed = True
            self._detach()

    def _detach(self) -> None:
        # Python flushes sys.stdout at exit; point the descriptor at /dev/null so
        # that last flush cannot raise (and print "Exception ignored ...") either.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
