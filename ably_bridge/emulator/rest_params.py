"""REST query parameters and pagination: channel names, limits, directions, ``Link`` headers.

Parses the common query parameters (RSL2b limits and directions) and renders
``Link`` headers in the ``./resource?query`` form with rels first/current/next
(TG); secrets in the query never reach a ``Link`` header.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote, urlencode

from aiohttp import web

from ably_bridge.emulator.errors import error

# Query parameters that carry secrets: never echoed into Link headers.
SECRET_PARAMS = frozenset({"key", "access_token", "accessToken"})
MAX_LIMIT = 1000


def channel_param(request: web.Request) -> str:
    name = request.match_info["channel"]
    return unquote(name) if "%" in name else name


def int_param(query: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise error(40003, f"invalid value for parameter {name}: {raw[:40]!r}") from exc


def limit_param(query: Mapping[str, str], default: int = 100) -> int:
    limit = int_param(query, "limit", default)
    assert limit is not None
    if limit < 1 or limit > MAX_LIMIT:
        raise error(40003, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def backwards_param(query: Mapping[str, str], default: str = "backwards") -> bool:
    direction = query.get("direction", default)
    if direction not in ("backwards", "forwards"):
        raise error(40003, f"invalid direction {direction[:20]!r}")
    return direction == "backwards"


def link_headers(request: web.Request, next_cursor: str | None) -> list[tuple[str, str]]:
    """``Link`` headers for a paginated reply: first, current and (if any) next (TG)."""
    segment = request.path.rstrip("/").rsplit("/", 1)[-1]
    query = {k: v for k, v in request.query.items() if k not in SECRET_PARAMS}
    base = {k: v for k, v in query.items() if k != "cursor"}
    links = [
        ("Link", f'<./{segment}?{urlencode(base)}>; rel="first"'),
        ("Link", f'<./{segment}?{urlencode(query)}>; rel="current"'),
    ]
    if next_cursor is not None:
        links.append(
            ("Link", f'<./{segment}?{urlencode({**base, "cursor": next_cursor})}>; rel="next"')
        )
    return links
