"""Where ``ably-bridge dev`` speaks: text lines for people, or one JSON object a line for scripts.

This module owns :class:`Console` and :class:`LogToFile` (the stack's own
logging - emulator, publisher - goes to ``dev.log`` while it runs, so the
console shows only what it means to show). Every line goes through a
:class:`~ably_bridge.devstack.terminal.SafeStream`, so a reader that goes away
(``make dev | tee``, then Ctrl-C) silences the console instead of crashing the
shutdown.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from ably_bridge.devstack.feed import Sighting, format_sighting
from ably_bridge.devstack.summary import Snapshot, format_json, format_text
from ably_bridge.devstack.terminal import SafeStream

__all__ = ["Console", "LogToFile"]


class Console:
    """Text lines, or JSON objects (one a line) with ``--json``."""

    def __init__(self, json_mode: bool, out: TextIO | None = None, err: TextIO | None = None):
        self.json_mode = json_mode
        self.out = SafeStream(out or sys.stdout)
        self.err = SafeStream(err or sys.stderr)
        self._lock = threading.RLock()  # re-entrant: the signal handler may print too

    def _write(self, stream: SafeStream, text: str) -> None:
        with self._lock:
            stream.write(text + "\n")

    def event(self, name: str, lines: list[str], **fields: Any) -> None:
        if self.json_mode:
            self._write(self.out, json.dumps({"event": name, **fields}))
        else:
            for line in lines:
                self._write(self.out, line)

    def summary(self, snapshot: Snapshot) -> None:
        self._write(self.out, format_json(snapshot) if self.json_mode else format_text(snapshot))

    def sighting(self, sighting: Sighting) -> None:
        """One of your events at one stage (see :mod:`ably_bridge.devstack.feed`)."""
        if self.json_mode:
            self._write(self.out, json.dumps(sighting.as_dict()))
        else:
            for line in format_sighting(sighting):
                self._write(self.out, line)

    def error(self, message: str, details: list[str] | None = None) -> None:
        text = f"ably-bridge dev: {message}"
        for line in details or []:
            text += f"\n    {line}"
        self._write(self.err, text)
        if self.json_mode:
            self._write(self.out, json.dumps({"event": "error", "message": message}))


class LogToFile:
    """Sends this process's logging (emulator, publisher) to a file while the stack runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: list[logging.Handler] = []
        self._handler: logging.Handler | None = None

    def __enter__(self) -> LogToFile:
        root = logging.getLogger()
        self._saved = list(root.handlers)
        for handler in self._saved:
            root.removeHandler(handler)
        self._handler = logging.FileHandler(self.path, encoding="utf-8")
        self._handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(self._handler)
        return self

    def __exit__(self, *_: object) -> None:
        root = logging.getLogger()
        if self._handler is not None:
            root.removeHandler(self._handler)
            self._handler.close()
        for handler in self._saved:
            root.addHandler(handler)
