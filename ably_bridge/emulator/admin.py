"""The emulator's own HTTP API under ``/_emulator``: health, apps, connections, faults.

Not part of Ably's API; no credentials (the emulator is a loopback dev
server), but requests from other web sites are refused (:mod:`.origin`) and
fault arguments are checked before anything is scheduled (:mod:`.fault_args`).
Fault endpoints take a JSON object of keyword arguments for the matching
:class:`~ably_bridge.emulator.faults.Faults` method, e.g.
``POST /_emulator/faults/fail_rest {"count": 2, "status": 503, "code": 50300}``,
and answer ``{"affected": n}`` where that method counts something.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ably_bridge.emulator import codec, fault_args
from ably_bridge.emulator.context import RUNTIME
from ably_bridge.emulator.errors import error
from ably_bridge.emulator.rest_replies import respond

log = logging.getLogger(__name__)

PREFIX = "/_emulator"
FAULTS = frozenset(
    {
        "fail_rest",
        "refuse_connections",
        "drop_connections",
        "disconnect",
        "delay_frames",
        "stall",
        "stop_heartbeats",
        "stop_reading",
        "channel_fault",
        "expire_tokens",
        "forget_connections",
        "clear",
    }
)


async def health(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    return respond(
        request,
        {
            "ok": True,
            "apps": len(runtime.state.apps),
            "connections": len(runtime.hub.sessions),
            "delivered": runtime.hub.delivered,
        },
    )


def connection_rows(request: web.Request) -> list[dict[str, Any]]:
    runtime = request.app[RUNTIME]
    app_id = request.query.get("app_id")
    return [
        {
            "connectionId": conn.id,
            "appId": conn.app_id,
            "clientId": conn.client_id,
            "active": conn.active,
            "channels": sorted(runtime.hub.sessions[conn.id].attachments)
            if conn.id in runtime.hub.sessions
            else [],
        }
        for conn in runtime.state.connections.values()
        if app_id is None or conn.app_id == app_id
    ]


async def connections(request: web.Request) -> web.Response:
    return respond(request, connection_rows(request))


async def faults_describe(request: web.Request) -> web.Response:
    return respond(request, request.app[RUNTIME].faults.describe())


async def fault(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in FAULTS:
        raise error(40400, f"unknown fault {name!r}", 404)
    raw = await request.read()
    fmt = codec.format_of_content_type(request.headers.get("Content-Type"))
    kwargs = codec.decode(raw, fmt) if raw else {}
    if not isinstance(kwargs, dict):
        raise error(40001, "fault arguments must be a JSON object")
    method = getattr(request.app[RUNTIME].faults, name)
    fault_args.check(method, kwargs)
    result = method(**kwargs)
    log.info("fault %s injected", name)
    return respond(request, {"affected": result if isinstance(result, int) else None})


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/health", health)
    app.router.add_get(f"{PREFIX}/connections", connections)
    app.router.add_get(f"{PREFIX}/faults", faults_describe)
    app.router.add_post(f"{PREFIX}/faults/{{name}}", fault)
