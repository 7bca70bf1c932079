"""The exception a failed worker task carries back to the producer.

This module owns :class:`AblyTaskError` and :func:`task_error`. Celery stores a
task's exception in the result backend by type name and ``args``; an
:class:`~ably_bridge.errors.AblyException` would come back without its code
(its ``args`` hold only the message), so tasks raise :class:`AblyTaskError`,
whose ``args`` are ``(message, code, status_code)``: the producer's
``AsyncResult.get()`` re-raises it with the Ably code intact.

Messages are built from the Ably error message and code only - never from
request headers, options or credentials - so no secret reaches a result.
"""

from __future__ import annotations

import logging

from ably_bridge.errors import AblyException, ErrorCode

__all__ = ["AblyTaskError", "task_error"]

log = logging.getLogger(__name__)


class AblyTaskError(Exception):
    """A task failed; ``code`` is the Ably error code, ``status_code`` the HTTP status.

    ``retryable`` says whether the failure was transient (it then failed only
    because its retries or its idempotency window ran out).
    """

    def __init__(
        self,
        message: str,
        code: int = ErrorCode.INTERNAL_ERROR,
        status_code: int = 500,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, int(code), int(status_code), bool(retryable))
        self.message = message
        self.code = int(code)
        self.status_code = int(status_code)
        self.retryable = bool(retryable)

    def __str__(self) -> str:
        return f"{self.message} (code={self.code}, status={self.status_code})"

    def __repr__(self) -> str:
        return f"AblyTaskError({self.message!r}, code={self.code}, status_code={self.status_code})"


def task_error(exc: BaseException, *, retryable: bool = False, note: str = "") -> AblyTaskError:
    """The :class:`AblyTaskError` for ``exc``; non-Ably errors become 50000 without detail."""
    suffix = f" ({note})" if note else ""
    if isinstance(exc, AblyTaskError):
        return exc
    if isinstance(exc, AblyException):
        return AblyTaskError(exc.message + suffix, exc.code, exc.status_code, retryable)
    # An unexpected error: its text might echo arguments, so only its type is kept.
    return AblyTaskError(
        f"unexpected {type(exc).__name__}{suffix}", ErrorCode.INTERNAL_ERROR, 500, retryable
    )
