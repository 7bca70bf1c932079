"""Watching the realtime connections for a failure the bridge cannot recover from alone.

This module owns :class:`ConnectionWatch`. It listens to the state changes of
every realtime connection the bridge opens and:

* logs a FAILED connection with its Ably error code, **once** per code for the
  process (a pool of connections that all fail with 40101 is one line), naming
  what an operator should check: for a credential error (401xx, 403xx, 40400
  "no such app or key") the key in ``ABLY_KEY`` / ``ably.key_file``;
* logs a credential error that makes a connection retry (DISCONNECTED or
  SUSPENDED with a 401xx reason: an expired or revoked token) once, as a warning;
* answers :meth:`ConnectionWatch.failures` for the health probes: a FAILED
  connection stays FAILED (RTN14a: an invalid key fails it; only an explicit
  ``connect()`` leaves FAILED, RTN11d; and the key is read at start), so
  ``/readyz`` and ``/healthz`` report it until the process is restarted with a
  working key (``docs/security.md`` says why ``/healthz`` then answers 503).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ably_bridge.bridge.secret import redact_text

__all__ = ["ConnectionWatch", "is_credential_error"]

logger = logging.getLogger(__name__)


def is_credential_error(code: int | None) -> bool:
    """Ably codes that mean the credentials are wrong, revoked, expired or not allowed."""
    return code is not None and (40100 <= code < 40200 or 40300 <= code < 40400 or code == 40400)


def _state(value: Any) -> str:
    return str(getattr(value, "value", value)).lower()


class ConnectionWatch:
    """Failures of the realtime connections, logged once per code (module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: dict[int, tuple[int | None, str]] = {}
        self._last: dict[int, tuple[int | None, str, int]] = {}  # the last reason given
        self._logged: set[tuple[str, int | None]] = set()

    def observe(self, number: int, connection: Any) -> None:
        """Follow ``connection`` (an ``AblyRealtime.connection``), numbered ``number``."""
        connection.on(lambda change: self.update(number, _state(change.current), change.reason))
        # It may have failed before the listener was on (a fast refusal).
        self.update(number, _state(connection.state), connection.error_reason)

    def update(self, number: int, state: str, reason: Any) -> None:
        """Record the state of connection ``number`` and log what needs saying, once."""
        code = getattr(reason, "code", None)
        message = str(getattr(reason, "message", "") or reason or "no reason given")
        with self._lock:
            if reason is not None:
                self._last[number] = (code, redact_text(message)[:500], int(time.time() * 1000))
            if state == "failed":
                self._failed[number] = (code, message)
            elif state in ("connected", "closed", "initialized"):
                self._failed.pop(number, None)
            key = (state, code)
            first = key not in self._logged
            if first and (state == "failed" or is_credential_error(code)):
                self._logged.add(key)
            else:
                return
        fields = {"code": code, "reason": message}
        if state == "failed":
            logger.error(
                "realtime connection %d failed: Ably error %s (%s)%s",
                number, code, message, _advice(code), extra=fields,
            )  # fmt: skip
        elif state in ("disconnected", "suspended"):
            logger.warning(
                "realtime connection %d is %s: Ably error %s (%s); retrying%s",
                number, state, code, message, _advice(code), extra=fields,
            )  # fmt: skip

    def last_errors(self) -> dict[int, tuple[int | None, str, int]]:
        """Connection number -> (Ably code, message, epoch ms) of the last state change
        that gave a reason (for ``/status``)."""
        with self._lock:
            return dict(self._last)

    def failures(self) -> list[str]:
        """One line per FAILED connection (empty when none is), for the health probes."""
        with self._lock:
            failed = sorted(self._failed.items())
        return [
            f"realtime connection {number} failed: Ably error {code} ({message}){_advice(code)}"
            for number, (code, message) in failed
        ]


def _advice(code: int | None) -> str:
    if is_credential_error(code):
        return (
            "; check the Ably key (ABLY_KEY or ably.key_file): wrong, revoked, expired or "
            "without the capabilities the routes need. The bridge reads it at start: "
            "restart it once the key is fixed"
        )
    return ""
