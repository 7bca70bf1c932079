"""REST plumbing shared by the route modules: formats, bodies, errors, pagination.

Owns how a REST reply is rendered (JSON or msgpack by ``Accept`` / ``?format=``,
``envelope=`` mode), the error envelope with ``X-Ably-Errorcode`` and
``X-Ably-Errormessage`` headers (ably-protocol.md 7.1), request-body decoding,
common query-parameter parsing (RSL2b limits and directions) and ``Link``
headers in the ``./resource?query`` form with rels first/current/next (TG).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlencode

from aiohttp import web

from ably_bridge.emulator import wire
from ably_bridge.emulator.proto import error
from ably_bridge.errors import AblyException

log = logging.getLogger(__name__)

# Query parameters that carry secrets: never echoed into Link headers.
SECRET_PARAMS = frozenset({"key", "access_token", "accessToken"})
MAX_LIMIT = 1000


def protocol_version(request: web.Request) -> int:
    """``X-Ably-Version`` as an int; requests without it get legacy behaviour (7.9)."""
    raw = request.headers.get("X-Ably-Version") or request.query.get("v")
    try:
        return int(raw) if raw else 1
    except ValueError:
        return 1


def reply_format(request: web.Request) -> wire.Format:
    return wire.response_format(request.headers.get("Accept"), request.query.get("format"))


def respond(
    request: web.Request,
    body: Any,
    status: int = 200,
    headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
) -> web.Response:
    """Render ``body`` in the format the client asked for; honours ``envelope=``."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    envelope = request.query.get("envelope")
    fmt = reply_format(request)
    if envelope in ("json", "msgpack"):
        fmt = "msgpack" if envelope == "msgpack" else "json"
        body = {"statusCode": status, "response": body, "headers": dict(pairs)}
        status = 200
        pairs = []
    if status == 204:
        response = web.Response(status=204)
    else:
        payload = wire.encode(body, fmt)
        if isinstance(payload, str):
            response = web.Response(
                text=payload, status=status, content_type=wire.JSON_TYPE, charset="utf-8"
            )
        else:
            response = web.Response(body=payload, status=status, content_type=wire.MSGPACK_TYPE)
    for name, value in pairs:
        response.headers.add(name, value)
    return response


def error_response(request: web.Request, exc: AblyException) -> web.Response:
    """The error envelope ``{"error": ErrorInfo}`` plus ``X-Ably-Error*`` headers."""
    message = " ".join(exc.message.split())
    printable = "".join(c if " " <= c < "\x7f" else "?" for c in message[:500])
    headers = [("X-Ably-Errorcode", str(exc.code)), ("X-Ably-Errormessage", printable)]
    return respond(request, {"error": exc.to_dict()}, exc.status_code, headers)


async def read_body(request: web.Request) -> tuple[Any, wire.Format]:
    """Decode the request body by Content-Type (40001 when empty or unreadable)."""
    raw = await request.read()
    if not raw:
        raise error(40001, "request body is empty")
    fmt = wire.format_of_content_type(request.headers.get("Content-Type"))
    return wire.decode(raw, fmt), fmt


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
