"""The dead-letter stream: events the bridge could not deliver, with the reason.

This module owns :class:`DeadLetterWriter`. Undecodable events, oversized
events, events for unknown targets and events a sink rejected for good are
written to one Redis Stream (``dead_letter.stream``, trimmed to about
``dead_letter.maxlen`` entries) so that they never block their channel. Each
entry has the fields ``reason``, ``code``, ``error``, ``route``, ``channel``,
``source``, ``event_id``, ``time`` (ms) and ``event`` (the envelope JSON, or
the best description of the raw event there is).

Writing a dead letter **never raises**: a failure is logged and counted
(:attr:`DeadLetterWriter.dropped`), because a broken dead-letter stream must
not stop delivery of the good events.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ably_bridge.clock import Clock, SystemClock
from ably_bridge.envelope import Envelope, dumps

if TYPE_CHECKING:
    import redis

__all__ = ["DeadLetter", "DeadLetterWriter", "Reason"]

logger = logging.getLogger(__name__)

_MAX_EVENT_TEXT = 1_048_576  # an oversized event is stored truncated, not dropped


class Reason(StrEnum):
    """Why an event was dead-lettered."""

    UNDECODABLE = "undecodable"
    OVERSIZED = "oversized"
    UNKNOWN_TARGET = "unknown_target"
    REJECTED = "rejected"  # a sink refused it with a non-retryable error
    RETRIES_EXHAUSTED = "retries_exhausted"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered event as written to the stream."""

    reason: Reason
    route: str
    channel: str
    event: Envelope | Any
    code: int = 0
    error: str = ""
    source: str = ""
    event_id: str = ""

    def fields(self, now_ms: int) -> dict[str, str]:
        if isinstance(self.event, Envelope):
            text = self.event.to_json()
            source = self.source or self.event.source
            event_id = self.event_id or self.event.event_id
        else:
            text = _describe(self.event)
            source, event_id = self.source, self.event_id
        truncated = len(text) > _MAX_EVENT_TEXT
        out = {
            "reason": str(self.reason),
            "code": str(self.code),
            "error": self.error,
            "route": self.route,
            "channel": self.channel,
            "source": source,
            "event_id": event_id,
            "time": str(now_ms),
            "event": text[:_MAX_EVENT_TEXT] if truncated else text,
        }
        if truncated:
            out["truncated"] = "1"
        return out


def _describe(event: Any) -> str:
    """JSON of ``event`` when possible, else its repr (a dead letter must always write)."""
    to_dict = getattr(event, "to_dict", None)
    try:
        if callable(to_dict):
            try:
                return dumps(to_dict(binary=False))
            except TypeError:
                return dumps(to_dict())
        return dumps(event)
    except (TypeError, ValueError):
        return repr(event)


def _describe_letter(letter: DeadLetter) -> tuple[str, str, str, str, str]:
    source = letter.source or getattr(letter.event, "source", "?")
    return source, letter.channel, letter.route, str(letter.reason), letter.error


def _log_fields(letter: DeadLetter) -> dict[str, Any]:
    """Context of a dead letter's log line; ``payload`` is written only with log_payloads."""
    event = letter.event
    event_id = letter.event_id or getattr(event, "event_id", "")
    payload = event.to_dict() if isinstance(event, Envelope) else _describe(event)
    return {
        "channel": letter.channel,
        "route": letter.route,
        "reason": str(letter.reason),
        "message_id": event_id or None,
        "payload": payload,
    }


class DeadLetterWriter:
    """Appends dead letters to a Redis Stream; never raises."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        *,
        maxlen: int = 100_000,
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self.stream = stream
        self.maxlen = maxlen
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self.written = 0
        self.dropped = 0

    def write(self, letter: DeadLetter) -> bool:
        """Write one dead letter; False (logged, counted) if Redis refused."""
        return self.write_many([letter]) == 1

    def write_many(self, letters: list[DeadLetter]) -> int:
        """Write several in one round trip; the number written."""
        if not letters:
            return 0
        try:
            now_ms = self._clock.time_ms()
            pipe = self._client.pipeline(transaction=False)
            for letter in letters:
                pipe.xadd(
                    self.stream,
                    letter.fields(now_ms),  # type: ignore[arg-type]
                    maxlen=self.maxlen,
                    approximate=True,
                )
            results = pipe.execute(raise_on_error=False)
        except Exception as exc:  # any failure here must not reach the data path
            self._count(0, len(letters))
            logger.error(
                "dead-letter stream %s unavailable; %d event(s) lost from it: %s",
                self.stream,
                len(letters),
                type(exc).__name__,
            )
            for letter in letters:  # with log_payloads on, the log keeps what Redis could not
                logger.warning(
                    "dead letter not written: %s event on %s (route %s): %s %s",
                    *_describe_letter(letter),
                    extra=_log_fields(letter),
                )
            return 0
        ok = sum(1 for r in results if not isinstance(r, Exception))
        self._count(ok, len(letters) - ok)
        if ok != len(letters):
            logger.error(
                "dead-letter stream %s refused %d event(s)", self.stream, len(letters) - ok
            )
        for letter in letters:
            logger.warning(
                "dead-lettered %s event on %s (route %s): %s %s",
                *_describe_letter(letter),
                extra=_log_fields(letter),
            )
        return ok

    def _count(self, written: int, dropped: int) -> None:
        with self._lock:
            self.written += written
            self.dropped += dropped
