"""REST routes of the emulator (ably-protocol.md section 7 and the sandbox API of 9).

Time, token requests, channel publish/history (also at ``/history``),
presence and presence history, channel status and enumeration, batch
publish/presence, stats and ``/apps``. Authentication, error envelopes and
formats come from :mod:`.auth`, :mod:`.rest_replies` and :mod:`.rest_params`;
the logic lives in :mod:`.state`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ably_bridge.emulator import apps, auth, codec, meta, origin, stats
from ably_bridge.emulator import capability as caps
from ably_bridge.emulator.channels import query_history
from ably_bridge.emulator.context import RUNTIME, Runtime
from ably_bridge.emulator.errors import error
from ably_bridge.emulator.names import parse_channel_name
from ably_bridge.emulator.rest_params import (
    backwards_param,
    channel_param,
    int_param,
    limit_param,
    link_headers,
)
from ably_bridge.emulator.rest_replies import error_response, protocol_version, read_body, respond
from ably_bridge.emulator.state import Credentials
from ably_bridge.errors import AblyException

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def _credentials(request: web.Request) -> Credentials:
    runtime = _runtime(request)
    creds = auth.from_rest_request(
        runtime.state,
        request.headers.get("Authorization"),
        request.query,
        request.headers.get("X-Ably-ClientId"),
        runtime.tls,
    )
    runtime.state.count_stat(creds.app.app_id, "apiRequests.all.succeeded")
    return creds


def _require(creds: Credentials, resource: str, operation: str) -> None:
    if not caps.allows(creds.capability, resource, operation):
        raise error(40160, f"{operation} not permitted on {resource!r}")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into Ably's error envelope; inject scheduled REST faults."""
    runtime = _runtime(request)
    try:
        admin_api = request.path.startswith("/_emulator")
        if admin_api or request.headers.get("Upgrade", "").lower() == "websocket":
            origin.check(
                host_header=request.headers.get("Host"),
                origin=request.headers.get("Origin"),
                fetch_site=request.headers.get("Sec-Fetch-Site"),
                bind_host=runtime.bind_host,
                allowed_origins=runtime.state.config.allowed_origins,
                admin=admin_api,
            )
        if not admin_api:
            failure = runtime.faults.take_rest_failure(
                request.path, request.headers.get("Authorization"), request.query
            )
            if failure is not None:
                raise error(failure.code, failure.message, failure.status)
        return await handler(request)
    except AblyException as exc:
        if exc.code >= 50000:
            log.warning("%s %s -> %d %s", request.method, request.path, exc.code, exc.message)
        else:
            log.info("%s %s -> %d %s", request.method, request.path, exc.code, exc.message)
        return error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(request, error(40400, f"no route for {request.path}", 404))
        if exc.status == 405:  # Ably answers a known path with another method as not found
            return error_response(
                request, error(40400, f"no route for {request.method} {request.path}", 404)
            )
        if exc.status == 413:
            return error_response(request, error(40009, "request body too large", 413))
        if exc.status >= 400:
            return error_response(request, error(exc.status * 100, exc.reason, exc.status))
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(request, error(50000, "internal error"))


async def get_time(request: web.Request) -> web.Response:
    return respond(request, [_runtime(request).state.now_ms()])


async def request_token(request: web.Request) -> web.Response:
    """``POST /keys/{keyName}/requestToken`` (RSA8, RSA9)."""
    runtime = _runtime(request)
    body, _ = await read_body(request)
    caller = None
    if request.headers.get("Authorization") or "key" in request.query:
        caller = _credentials(request)
    token = auth.request_token(runtime.state, request.match_info["keyName"], body, caller)
    return respond(request, token.details())


def _publish_items(body: Any) -> list[Any]:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        return [body]
    raise error(40001, "publish body must be a message or a list of messages")


def unenveloped_message(request: web.Request, raw: bytes) -> dict[str, Any]:
    """``enveloped=false``: the body is the data, metadata in headers or params (7.2).

    ``text/*`` bodies are strings, ``application/json`` bodies JSON values
    (strings stay strings, anything else is kept as JSON text with encoding
    ``json``), msgpack bodies likewise, anything else binary. ``X-Ably-Encoding``
    / ``encoding`` names steps the client already applied, e.g. ``base64``.
    """
    ctype = (request.headers.get("Content-Type") or "application/octet-stream").lower()
    data: Any = raw
    encoding: str | None = None
    if ctype.startswith("text/"):
        data = raw.decode("utf-8", "replace")
    elif "json" in ctype or "msgpack" in ctype:
        value = codec.decode(raw, codec.format_of_content_type(ctype))
        if isinstance(value, str | bytes) or value is None:
            data = value
        else:
            data, encoding = codec.encode(value, "json"), "json"

    def meta(field: str) -> str | None:
        return request.headers.get(f"X-Ably-{field}") or request.query.get(
            field[0].lower() + field[1:]
        )

    message: dict[str, Any] = {"data": data}
    for field, key in (("MessageId", "id"), ("Name", "name"), ("ConnectionKey", "connectionKey")):
        if meta(field):
            message[key] = meta(field)
    client_id = request.query.get("clientId")
    if client_id:
        message["clientId"] = client_id
    declared = meta("Encoding")
    if declared:
        encoding = f"{encoding}/{declared}" if encoding else declared
    if encoding:
        message["encoding"] = encoding
    if declared and isinstance(data, bytes):
        message["data"] = data.decode("utf-8", "replace")  # encoded text, e.g. base64
    return codec.ingest(message, "json")


async def publish(request: web.Request) -> web.Response:
    """``POST /channels/{ch}/messages`` -> 201 {channel, messageId, serials} (RSL1)."""
    creds = _credentials(request)
    name = channel_param(request)
    if request.query.get("enveloped") == "false":
        items: list[Any] = [unenveloped_message(request, await request.read())]
    else:
        body, fmt = await read_body(request)
        items = [codec.ingest(m, fmt) if isinstance(m, dict) else m for m in _publish_items(body)]
    result = _runtime(request).state.publish(creds, name, items, params=dict(request.query))
    _runtime(request).state.count_stat(creds.app.app_id, "messages.inbound.rest.messages.count")
    return respond(
        request,
        {"channel": name, "messageId": result.message_id, "serials": result.serials},
        201,
    )


async def history(request: web.Request) -> web.Response:
    """``GET /channels/{ch}/messages`` and ``/history`` (RSL2, RTL10b untilAttach)."""
    creds = _credentials(request)
    parsed = parse_channel_name(channel_param(request))
    _require(creds, parsed.resource, "history")
    query = request.query
    channel = creds.app.channels.get(parsed.base)
    until = query.get("fromSerial") or query.get("from_serial")
    page = query_history(
        channel.history if channel else [],
        start=int_param(query, "start"),
        end=int_param(query, "end"),
        backwards=backwards_param(query),
        limit=limit_param(query),
        cursor=query.get("cursor"),
        until_serial=until,
    )
    return respond(request, page.items, headers=link_headers(request, page.next_cursor))


async def presence_get(request: web.Request) -> web.Response:
    """``GET /channels/{ch}/presence``: current members, action PRESENT (RSP3)."""
    creds = _credentials(request)
    parsed = parse_channel_name(channel_param(request))
    _require(creds, parsed.resource, "subscribe")
    query = request.query
    channel = creds.app.channels.get(parsed.base)
    members = channel.members(query.get("clientId"), query.get("connectionId")) if channel else []
    offset = int_param(query, "cursor", 0) or 0
    limit = limit_param(query)
    items = members[offset : offset + limit]
    more = str(offset + limit) if offset + limit < len(members) else None
    return respond(request, items, headers=link_headers(request, more))


async def presence_history(request: web.Request) -> web.Response:
    """``GET /channels/{ch}/presence/history`` (RSP4)."""
    creds = _credentials(request)
    parsed = parse_channel_name(channel_param(request))
    _require(creds, parsed.resource, "history")
    query = request.query
    channel = creds.app.channels.get(parsed.base)
    page = query_history(
        channel.presence_history if channel else [],
        start=int_param(query, "start"),
        end=int_param(query, "end"),
        backwards=backwards_param(query),
        limit=limit_param(query),
        cursor=query.get("cursor"),
    )
    return respond(request, page.items, headers=link_headers(request, page.next_cursor))


async def channel_status(request: web.Request) -> web.Response:
    """``GET /channels/{ch}`` (RSL8)."""
    creds = _credentials(request)
    name = channel_param(request)
    _require(creds, parse_channel_name(name).resource, "channel-metadata")
    return respond(request, meta.channel_details(_runtime(request).state, creds.app, name))


async def channels_list(request: web.Request) -> web.Response:
    """``GET /channels``: active channels, ``prefix``, ``by=id|value`` (v3+ default id)."""
    creds = _credentials(request)
    runtime = _runtime(request)
    if not caps.allows_app_wide(creds.capability, "channel-metadata"):
        raise error(40160, "channel enumeration needs channel-metadata on '*'")
    query = request.query
    prefix = query.get("prefix", "")
    default_by = "id" if protocol_version(request) >= 3 else "value"
    by_id = query.get("by", default_by) == "id"
    limit = limit_param(query)
    cursor = query.get("cursor")
    names = sorted(
        name
        for name in creds.app.channels
        if name.startswith(prefix)
        and (cursor is None or name > cursor)
        and meta.channel_details(runtime.state, creds.app, name)["status"]["isActive"]
    )
    page, more = names[:limit], len(names) > limit
    items: list[Any] = (
        list(page) if by_id else [meta.channel_details(runtime.state, creds.app, n) for n in page]
    )
    return respond(request, items, headers=link_headers(request, page[-1] if more else None))


async def batch_publish(request: web.Request) -> web.Response:
    """``POST /messages``: BatchPublishSpec or a list of them (RSC22, 7.9)."""
    creds = _credentials(request)
    state = _runtime(request).state
    body, fmt = await read_body(request)
    specs = body if isinstance(body, list) else [body]
    modern = protocol_version(request) >= 3
    answers: list[Any] = []
    any_failed = False
    for spec in specs:
        if not isinstance(spec, dict) or "channels" not in spec or "messages" not in spec:
            raise error(40001, "batch spec needs channels and messages")
        channels = spec["channels"] if isinstance(spec["channels"], list) else [spec["channels"]]
        messages = _publish_items(spec["messages"])
        results: list[dict[str, Any]] = []
        for name in channels:
            try:
                items = [codec.ingest(m, fmt) if isinstance(m, dict) else m for m in messages]
                result = state.publish(creds, name, items)
                results.append(
                    {"channel": name, "messageId": result.message_id, "serials": result.serials}
                )
            except AblyException as exc:
                any_failed = True
                results.append({"channel": name, "error": exc.to_dict()})
        failures = sum(1 for r in results if "error" in r)
        if modern:
            answers.append(
                {
                    "successCount": len(results) - failures,
                    "failureCount": failures,
                    "results": results,
                }
            )
        else:
            answers.extend(results)
    if modern:
        return respond(request, answers if isinstance(body, list) else answers[0], 201)
    if any_failed:
        err = error(40020, "batched response includes errors")
        return respond(
            request,
            {"error": err.to_dict(), "batchResponse": answers},
            400,
            [("X-Ably-Errorcode", "40020")],
        )
    return respond(request, answers, 201)


async def batch_presence(request: web.Request) -> web.Response:
    """``GET /presence?channels=a,b``: members of several channels (RSC24)."""
    creds = _credentials(request)
    separator = request.query.get("separator", ",")
    names = [n for n in request.query.get("channels", "").split(separator) if n]
    if not names:
        raise error(40003, "channels parameter is required")
    results: list[dict[str, Any]] = []
    for name in names:
        try:
            parsed = parse_channel_name(name)
            _require(creds, parsed.resource, "subscribe")
            channel = creds.app.channels.get(parsed.base)
            results.append({"channel": name, "presence": channel.members() if channel else []})
        except AblyException as exc:
            results.append({"channel": name, "error": exc.to_dict()})
    failures = sum(1 for r in results if "error" in r)
    if protocol_version(request) >= 3:
        body = {"successCount": len(results) - failures, "failureCount": failures}
        body["results"] = results  # type: ignore[assignment]
        return respond(request, body)
    if failures:
        err = error(40020, "batched response includes errors")
        return respond(request, {"error": err.to_dict(), "batchResponse": results}, 400)
    return respond(request, results)


async def get_stats(request: web.Request) -> web.Response:
    """``GET /stats`` in the v3+ ``entries`` form or the legacy nested form (section 8)."""
    creds = _credentials(request)
    if not caps.allows_app_wide(creds.capability, "stats"):
        raise error(40160, "stats not permitted")
    query = request.query
    page = stats.query(
        creds.app,
        unit=query.get("unit") or query.get("by") or "minute",
        start=query.get("start"),
        end=query.get("end"),
        backwards=backwards_param(query),
        limit=limit_param(query),
        cursor=query.get("cursor"),
        modern=protocol_version(request) >= 3,
        now_ms=_runtime(request).state.now_ms(),
    )
    return respond(request, page.items, headers=link_headers(request, page.next_cursor))


def _app_admin(request: web.Request, app_id: str | None = None) -> Credentials:
    """Credentials allowed to administer an app: Basic auth with its admin key.

    The admin key is the app's first key, the one the sandbox reply lists
    first and SDK test harnesses delete their apps with. A token is refused
    with 40162, another key of the app with 40160, any credential of another
    app with 40300 (issue 17 item 3).
    """
    creds = _credentials(request)
    if app_id is not None and creds.app.app_id != app_id:
        raise error(40300, "credentials are for another app", 403)
    if creds.token is not None:
        raise error(40162, "app administration needs Basic auth with the app's admin key")
    if creds.key is not creds.app.ordered_keys()[0]:
        raise error(40160, "app administration needs the app's admin key (its first key)")
    return creds


async def post_stats(request: web.Request) -> web.Response:
    """Sandbox ``POST /stats``: inject nested-format fixtures keyed by intervalId (9)."""
    creds = _app_admin(request)
    body, _ = await read_body(request)
    fixtures = body if isinstance(body, list) else [body]
    stats.inject(creds.app, fixtures)
    return respond(request, fixtures, 201)


async def post_apps(request: web.Request) -> web.Response:
    """Sandbox ``POST /apps`` with a test-app-setup.json body (no auth)."""
    body, _ = await read_body(request)
    app = _runtime(request).state.create_app(body)
    return respond(request, apps.app_response(app), 201)


async def delete_app(request: web.Request) -> web.Response:
    """Sandbox ``DELETE /apps/{id}`` with that app's admin key."""
    app_id = request.match_info["appId"]
    _app_admin(request, app_id)
    runtime = _runtime(request)
    runtime.faults.drop_connections(app_id=app_id)
    runtime.state.delete_app(app_id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    ch = "/channels/{channel:[^/]+}"
    app.router.add_get("/time", get_time)
    app.router.add_post("/keys/{keyName}/requestToken", request_token)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/stats", post_stats)
    app.router.add_get("/channels", channels_list)
    app.router.add_get(ch, channel_status)
    app.router.add_post(f"{ch}/messages", publish)
    app.router.add_get(f"{ch}/messages", history)
    app.router.add_get(f"{ch}/history", history)
    app.router.add_get(f"{ch}/presence", presence_get)
    app.router.add_get(f"{ch}/presence/history", presence_history)
    app.router.add_post("/messages", batch_publish)
    app.router.add_get("/presence", batch_presence)
    app.router.add_post("/apps", post_apps)
    app.router.add_delete("/apps/{appId}", delete_app)
