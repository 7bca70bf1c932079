"""The query of ``GET /status``: which channels, how many, from where (the cursor).

This module owns :class:`StatusQuery` and :func:`parse_query`, which turns the
raw query string into one or answers :class:`QueryError` (an HTTP status and
an Ably error code: 40002 for a parameter that does not exist, 40003 for a
value that is not allowed), so a typo is an error instead of a silently
unfiltered answer.

* ``route=ID`` - only channels some route ``ID`` takes;
* ``state=PHASE`` - only channels in that phase (``attaching``, ``backfilling``,
  ``live``, ``paused``, ``failed``, ``stopped``), or ``attention``: every channel
  not live, or live but behind (:data:`LAG_ATTENTION` seconds of checkpoint lag);
* ``limit=N`` - at most ``N`` channels (1-:data:`MAX_LIMIT`, default
  :data:`DEFAULT_LIMIT`);
* ``cursor=C`` - the ``next_cursor`` of the previous page. Channels come in
  name order; the cursor is the last name of a page (base64url), so a page is
  stable while channels come and go.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ably_bridge.bridge.tracks import PHASES

__all__ = [
    "ATTENTION",
    "DEFAULT_LIMIT",
    "LAG_ATTENTION",
    "MAX_LIMIT",
    "QueryError",
    "StatusQuery",
    "decode_cursor",
    "encode_cursor",
    "parse_query",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
ATTENTION = "attention"
LAG_ATTENTION = 10.0  # seconds of checkpoint lag after which a live channel needs attention
_PARAMS = ("route", "state", "limit", "cursor")
_MAX_QUERY = 4096


class QueryError(Exception):
    """A query ``/status`` cannot answer: an HTTP status, an Ably code, a message."""

    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class StatusQuery:
    """Which channels ``/status`` lists (see the module docstring)."""

    route: str | None = None
    state: str | None = None
    limit: int = DEFAULT_LIMIT
    after: str | None = None  # the cursor, decoded: list names after this one


def encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> str:
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise QueryError(40003, "cursor: not a cursor this endpoint gave") from None


def parse_query(query: str, routes: tuple[str, ...] | None = None) -> StatusQuery:
    """The :class:`StatusQuery` of a raw query string; ``routes``: the known route ids."""
    if len(query) > _MAX_QUERY:
        raise QueryError(40003, f"query longer than {_MAX_QUERY} characters")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise QueryError(40003, "query: not valid UTF-8 percent-encoding") from None
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in _PARAMS:
            raise QueryError(
                40002, f"unknown parameter {name[:64]!r} (known: {', '.join(_PARAMS)})"
            )
        if name in values:
            raise QueryError(40003, f"{name}: given more than once")
        values[name] = value
    route = values.get("route") or None
    if route is not None and routes is not None and route not in routes:
        raise QueryError(40003, f"route: no route {route[:64]!r} is configured")
    state = values.get("state") or None
    if state is not None and state not in (*PHASES, ATTENTION):
        raise QueryError(40003, f"state: one of {', '.join((*PHASES, ATTENTION))}")
    limit = DEFAULT_LIMIT
    if values.get("limit"):
        text = values["limit"]
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
            raise QueryError(40003, f"limit: a whole number from 1 to {MAX_LIMIT}")
        limit = int(text)
    after = decode_cursor(values["cursor"]) if values.get("cursor") else None
    return StatusQuery(route=route, state=state, limit=limit, after=after)
