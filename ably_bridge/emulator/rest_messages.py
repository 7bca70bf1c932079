"""REST routes for one message of a channel: get, change, versions, annotations (RSL11-15, RSAN).

``GET /channels/<ch>/messages/<serial>`` answers the latest version,
``PATCH`` the same path applies an update, delete or append (the body is a
Message whose ``action`` says which; default update) and answers
``{"versionSerial": ...}``, ``GET .../versions`` pages through every version,
oldest first. ``POST .../annotations`` publishes annotations to it and
``GET .../annotations`` pages through them, oldest first. The rules live in
:mod:`.mutations` and :mod:`.message_annotations`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ably_bridge.emulator import codec, message_annotations, mutations
from ably_bridge.emulator.channels import Page
from ably_bridge.emulator.context import RUNTIME
from ably_bridge.emulator.errors import error
from ably_bridge.emulator.names import parse_channel_name
from ably_bridge.emulator.rest import _credentials, _require
from ably_bridge.emulator.rest_params import channel_param, int_param, limit_param, link_headers
from ably_bridge.emulator.rest_replies import read_body, respond


def _serial(request: web.Request) -> str:
    return request.match_info["serial"]


async def get_message(request: web.Request) -> web.Response:
    creds = _credentials(request)
    parsed = parse_channel_name(channel_param(request))
    _require(creds, parsed.resource, "history")
    channel = creds.app.channels.get(parsed.base)
    if channel is None:
        raise error(40400, "no such message", 404)
    return respond(request, mutations.latest(channel, _serial(request)))


async def change_message(request: web.Request) -> web.Response:
    creds = _credentials(request)
    name = channel_param(request)
    body, fmt = await read_body(request)
    if not isinstance(body, dict):
        raise error(40001, "the body must be one message")
    item: dict[str, Any] = codec.ingest(body, fmt)
    codec.check_fields(item)
    item["serial"] = _serial(request)
    item.setdefault("action", mutations.UPDATE)
    version_serial = mutations.apply(
        request.app[RUNTIME].state, creds, name, item, conn=None, identity=creds.client_id
    )
    return respond(request, {"versionSerial": version_serial})


async def message_versions(request: web.Request) -> web.Response:
    creds = _credentials(request)
    parsed = parse_channel_name(channel_param(request))
    _require(creds, parsed.resource, "history")
    channel = creds.app.channels.get(parsed.base)
    if channel is None:
        raise error(40400, "no such message", 404)
    versions = mutations.versions_of(channel, _serial(request))
    query = request.query
    try:
        limit = max(1, min(1000, int(query.get("limit", "100"))))
        start = int(query.get("cursor", "0"))
    except ValueError as exc:
        raise error(40003, "invalid limit or cursor") from exc
    if query.get("direction") == "backwards":
        versions = versions[::-1]
    page = Page(
        versions[start : start + limit],
        str(start + limit) if start + limit < len(versions) else None,
    )
    return respond(request, page.items, headers=link_headers(request, page.next_cursor))


async def publish_annotations(request: web.Request) -> web.Response:
    """RSAN1c6: one annotation or a list, for the message named in the path."""
    creds = _credentials(request)
    body, fmt = await read_body(request)
    items = body if isinstance(body, list) else [body]
    ingested = [codec.ingest(i, fmt) if isinstance(i, dict) else i for i in items]
    message_annotations.publish(
        request.app[RUNTIME].state,
        creds,
        channel_param(request),
        ingested,
        conn=None,
        identity=creds.client_id,
        message_serial=_serial(request),
    )
    return respond(request, {}, 201)


async def get_annotations(request: web.Request) -> web.Response:
    """RSAN3b: a message's annotations, oldest first, paginated."""
    creds = _credentials(request)
    parsed = parse_channel_name(channel_param(request))
    _require(creds, parsed.resource, "history")
    start = int_param(request.query, "cursor", 0) or 0
    items, cursor = message_annotations.page(
        creds.app.channels.get(parsed.base),
        _serial(request),
        limit_param(request.query),
        max(0, start),
    )
    return respond(request, items, headers=link_headers(request, cursor))


def add_routes(app: web.Application) -> None:
    one = "/channels/{channel:[^/]+}/messages/{serial:[^/]+}"
    app.router.add_get(one + "/annotations", get_annotations)
    app.router.add_post(one + "/annotations", publish_annotations)
    app.router.add_get(one, get_message)
    app.router.add_patch(one, change_message)
    app.router.add_get(f"{one}/versions", message_versions)
