"""How a REST request body is read and a reply rendered, errors included.

Owns the reply format (JSON or msgpack by ``Accept`` / ``?format=``),
``envelope=`` mode, the error envelope with ``X-Ably-Errorcode`` and
``X-Ably-Errormessage`` headers (ably-protocol.md 7.1), request-body decoding
and the protocol version a request asks for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ably_bridge.emulator import codec
from ably_bridge.emulator.errors import error
from ably_bridge.errors import AblyException

log = logging.getLogger(__name__)


def protocol_version(request: web.Request) -> int:
    """``X-Ably-Version`` as an int; requests without it get legacy behaviour (7.9)."""
    raw = request.headers.get("X-Ably-Version") or request.query.get("v")
    try:
        return int(raw) if raw else 1
    except ValueError:
        return 1


def reply_format(request: web.Request) -> codec.Format:
    return codec.response_format(request.headers.get("Accept"), request.query.get("format"))


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
        payload = codec.encode(body, fmt)
        if isinstance(payload, str):
            response = web.Response(
                text=payload, status=status, content_type=codec.JSON_TYPE, charset="utf-8"
            )
        else:
            response = web.Response(body=payload, status=status, content_type=codec.MSGPACK_TYPE)
    for name, value in pairs:
        response.headers.add(name, value)
    return response


def error_response(request: web.Request, exc: AblyException) -> web.Response:
    """The error envelope ``{"error": ErrorInfo}`` plus ``X-Ably-Error*`` headers."""
    message = " ".join(exc.message.split())
    printable = "".join(c if " " <= c < "\x7f" else "?" for c in message[:500])
    headers = [("X-Ably-Errorcode", str(exc.code)), ("X-Ably-Errormessage", printable)]
    return respond(request, {"error": exc.to_dict()}, exc.status_code, headers)


async def read_body(request: web.Request) -> tuple[Any, codec.Format]:
    """Decode the request body by Content-Type (40001 when empty or unreadable)."""
    raw = await request.read()
    if not raw:
        raise error(40001, "request body is empty")
    fmt = codec.format_of_content_type(request.headers.get("Content-Type"))
    return codec.decode(raw, fmt), fmt
