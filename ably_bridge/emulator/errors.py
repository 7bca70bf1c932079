"""How the emulator refuses: an Ably error code paired with its HTTP status.

:func:`error` builds an :class:`AblyException` with the HTTP status Ably pairs
with each code (ably-protocol.md section 10): the code's first three digits,
except for the codes listed in ``_STATUS``.
"""

from __future__ import annotations

from ably_bridge.errors import AblyException

# HTTP statuses that do not follow the "first three digits" rule.
_STATUS: dict[int, int] = {
    40009: 413,
    40171: 403,
    80002: 400,
    80006: 400,
    80008: 400,
    80016: 410,
    80017: 400,
    80018: 400,
    80019: 401,
    80022: 410,
    90001: 400,
    91000: 400,
    91005: 400,
}


def status_for(code: int) -> int:
    """The HTTP status Ably pairs with ``code``."""
    if code in _STATUS:
        return _STATUS[code]
    head = code // 100
    return head if 400 <= head <= 599 else 500


def error(code: int, message: str, status: int | None = None) -> AblyException:
    """An Ably error with the status that goes with ``code`` unless one is given."""
    return AblyException(message, code, status if status is not None else status_for(code))
