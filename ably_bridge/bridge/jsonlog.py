"""JSON log lines for the daemon: one object per record, channel and message id included.

This module owns :class:`JsonFormatter` and :func:`configure_logging`. A record
becomes ``{"time", "level", "logger", "message"}`` plus any of the context
fields ``channel``, ``message_id``, ``route``, ``sink``, ``reason`` passed with
``extra=``, plus ``exc`` for exceptions. Payloads are never logged unless
``log_payloads`` is on, and then only through the ``payload`` extra field;
secrets never reach a log line because configuration values are
:class:`~ably_bridge.bridge.secret.Secret` and print redacted.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "configure_logging"]

logger = logging.getLogger(__name__)

CONTEXT_FIELDS = ("channel", "message_id", "route", "sink", "reason", "event")


class JsonFormatter(logging.Formatter):
    """Formats records as compact JSON objects (one per line)."""

    def __init__(self, *, payloads: bool = False) -> None:
        super().__init__()
        self.payloads = payloads

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if self.payloads and "payload" in record.__dict__:
            out["payload"] = record.__dict__["payload"]
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(
    level: str = "INFO",
    *,
    fmt: str = "json",
    payloads: bool = False,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Route the root logger to ``stream`` (stderr) as JSON (or text); returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(payloads=payloads))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return handler
