"""Log lines of the daemon: JSON (or text), context fields, payloads only on request, no secrets.

This module owns :class:`JsonFormatter`, :class:`TextFormatter` and
:func:`configure_logging`. A JSON record becomes ``{"time", "level", "logger",
"message"}`` plus any of the context fields ``channel``, ``message_id``,
``route``, ``sink``, ``reason``, ``event``, ``code`` passed with ``extra=``, plus
``exc`` for exceptions.

* **Payloads** (``log_payloads``): a log line about one event (a dead letter, for
  example) passes the event as the ``payload`` extra field. It is dropped unless
  ``log_payloads`` is on; then it is written, cut at :data:`MAX_PAYLOAD_CHARS`
  (JSON: the ``payload`` field; text: `` payload=...`` at the end of the line).
* **Secrets**: every line, whatever library wrote it, goes through
  :func:`~ably_bridge.bridge.secret.redact_text` last: a password in any URL
  form, and every secret value the configuration holds, is replaced by ``***``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from ably_bridge.bridge.secret import redact_text

__all__ = [
    "CONTEXT_FIELDS",
    "MAX_PAYLOAD_CHARS",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
]

logger = logging.getLogger(__name__)

CONTEXT_FIELDS = ("channel", "message_id", "route", "sink", "reason", "event", "code")
MAX_PAYLOAD_CHARS = 16_384


def _payload(record: logging.LogRecord) -> Any:
    value = record.__dict__["payload"]
    if isinstance(value, (bytes, bytearray)):
        value = value.hex()
    if not isinstance(value, (str, int, float, bool, type(None))):
        value = json.loads(json.dumps(value, default=str))
    if isinstance(value, str) and len(value) > MAX_PAYLOAD_CHARS:
        value = value[:MAX_PAYLOAD_CHARS] + f"...({len(value)} characters)"
    return value


class JsonFormatter(logging.Formatter):
    """Formats records as compact JSON objects (one per line), credentials redacted."""

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
            out["payload"] = _payload(record)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact_text(json.dumps(out, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``time level logger: message``, the payload at the end when asked, credentials redacted."""

    def __init__(self, *, payloads: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.payloads = payloads

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if self.payloads and "payload" in record.__dict__:
            line += " payload=" + json.dumps(_payload(record), default=str, ensure_ascii=False)
        return redact_text(line)


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
        handler.setFormatter(TextFormatter(payloads=payloads))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return handler
