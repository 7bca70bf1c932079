"""Realtime protocol handler: one :class:`Session` per WebSocket.

A session reads ProtocolMessages, turns them into state operations and writes
replies through its :class:`~ably_bridge.emulator.outbox.Outbox` (batched
transport writes; faults can delay or stall frames there).
It implements connect (RTN2 query parameters, CONNECTED with
connectionDetails, resume/recover RTN15/RTN16), HEARTBEAT echo (RTN13),
ATTACH/DETACH with modes, params, rewind and channelSerial resume
(RTL4, RTL5, RTL15), publish with ACK/NACK and msgSerial de-duplication
(RTN7, RTL6), presence with SYNC (RTP), AUTH (RTC8) and CLOSE (RTN12).
The fan-out of channel events to sessions is :mod:`.fanout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import WSMsgType, web

from ably_bridge.clock import Timer
from ably_bridge.emulator import actions as p
from ably_bridge.emulator import auth, channel_ops, codec
from ably_bridge.emulator.channels import Channel
from ably_bridge.emulator.connections import Connection
from ably_bridge.emulator.context import RUNTIME, Runtime
from ably_bridge.emulator.errors import error
from ably_bridge.emulator.fanout import Attachment
from ably_bridge.emulator.outbox import WS_PING, Outbox, PublicSender, ws_frame
from ably_bridge.emulator.state import Credentials
from ably_bridge.errors import AblyException
from ably_bridge.shortcuts import enabled as shortcut_enabled

log = logging.getLogger(__name__)


class Session:
    """One realtime WebSocket transport and the connection it carries."""

    def __init__(self, runtime: Runtime, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.runtime = runtime
        self.state = runtime.state
        self.request = request
        self.ws = ws
        query = request.query
        # RTN2a: the client picks the format; without ``format`` Ably speaks JSON
        # (ably-python sends no ``format`` when use_binary_protocol is off).
        self.fmt: codec.Format = "msgpack" if query.get("format") == "msgpack" else "json"
        self.heartbeats = query.get("heartbeats") == "true"
        self.conn: Connection | None = None
        self.attachments: dict[str, Attachment] = {}
        self.replaced = False
        self.closing = False
        self.closed_cleanly = False
        self.out = Outbox(
            lambda: request.transport,
            runtime.hub.flusher,
            self.state.clock,
            self.state.schedule,
            self._start_close,
            self.abort,
            None if shortcut_enabled("aiohttp.raw_frames") else PublicSender(ws),
        )
        self.heartbeats_stopped = False
        self.heartbeat_timer: Timer | None = None
        self.expiry_timer: Timer | None = None
        self.close_task: asyncio.Task[None] | None = None
        self.close_started = asyncio.Event()

    def __repr__(self) -> str:
        return f"Session(conn={self.conn!r}, fmt={self.fmt})"

    # -- output ------------------------------------------------------------
    def send_pm(self, pm: dict[str, Any]) -> None:
        self.out.send(ws_frame(codec.encode(pm, self.fmt)))

    def close_after_pending(self) -> None:
        """Close the WebSocket once the frames queued so far are out."""
        self.closing = True
        self.out.send(None)

    def send_error_and_close(self, exc: AblyException, action: int = p.ERROR) -> None:
        self.send_pm({"action": action, "error": exc.to_dict()})
        self.close_after_pending()

    def _start_close(self) -> None:
        self.close_task = asyncio.get_running_loop().create_task(self._close_ws())
        self.close_started.set()

    async def _close_ws(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            if self.out.public is not None:  # the frames before the close go first
                await self.out.public.drained()
            await self.ws.close()

    def gone(self) -> bool:
        """Has the transport ended?"""
        return bool(self.ws.closed)

    def _heartbeat(self) -> None:
        """Keepalive every heartbeat interval, on the emulator's clock (RTN23).

        ``heartbeats=true``: a HEARTBEAT ProtocolMessage; otherwise a WebSocket
        ping frame, which clients that can see pings count as activity (RTN23b;
        ably-js in node does, and drops an idle transport without either).
        """
        if self.gone():
            return
        if not self.heartbeats_stopped:
            if self.heartbeats:
                self.send_pm({"action": p.HEARTBEAT})
            else:
                self.out.send(WS_PING)
        self.heartbeat_timer = self.state.schedule(
            self.state.config.heartbeat_seconds(), self._heartbeat
        )

    def abort(self) -> None:
        """Drop the transport abruptly: no CLOSE frame, no DISCONNECTED (a network failure)."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    # -- lifecycle ---------------------------------------------------------
    async def run(self) -> None:
        try:
            if await self._connect():
                self.heartbeat_timer = self.state.schedule(
                    self.state.config.heartbeat_seconds(), self._heartbeat
                )
                await self._read_loop()
            if self.closing:
                await self._drain(2.0)  # let queued frames and the close go out
        finally:
            await self._cleanup()

    async def _drain(self, timeout: float) -> None:
        """Wait (bounded) for the close to go out; a fault may still delay or stall it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self.close_started.wait(), timeout)
            if self.close_task is not None:
                remaining = max(0.0, deadline - loop.time())
                await asyncio.wait_for(asyncio.shield(self.close_task), remaining)

    async def _cleanup(self) -> None:
        for timer in (self.expiry_timer, self.heartbeat_timer):
            if timer is not None:
                timer.cancel()
        self.out.flush()
        self.out.cancel()
        conn = self.conn
        for att in self.attachments.values():
            if conn is not None:
                self.runtime.hub.detach(self._channel(att.base), conn.id, att.name)
        self.attachments.clear()
        if conn is not None and not self.replaced:
            if self.runtime.hub.sessions.get(conn.id) is self:
                del self.runtime.hub.sessions[conn.id]
            if not self.closed_cleanly and conn.id in self.state.connections:
                self.state.sessions.lost(conn)
        if self.close_task is not None and not self.close_task.done():
            self.close_task.cancel()
        await self._end_transport()

    async def _end_transport(self) -> None:
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()

    def _channel(self, base: str) -> Channel | None:
        if self.conn is None:
            return None
        app = self.state.apps.get(self.conn.app_id)
        return None if app is None else app.channels.get(base)

    async def _connect(self) -> bool:
        """Authenticate, resume or create the connection and send CONNECTED (RTN2, RTN15)."""
        query = self.request.query
        refusal = self.runtime.faults.take_connect_refusal(query)
        if refusal is not None:
            if refusal.code is None:
                self.abort()
            else:
                self.send_error_and_close(error(refusal.code, refusal.message, refusal.status))
            return False
        try:
            creds, identity = self._authenticate(query)
        except AblyException as exc:
            log.info("realtime connect refused: %s (%d)", exc.message, exc.code)
            self.send_error_and_close(exc)
            return False
        echo = query.get("echo", "true") != "false"
        resume_key = query.get("resume") or query.get("recover")
        resume_error: AblyException | None = None
        conn: Connection | None = None
        if resume_key:
            try:
                conn = self.state.sessions.find_resumable(resume_key, creds.app.app_id)
                if conn.client_id != identity:
                    raise error(80008, "unable to resume: clientId differs")
            except AblyException as exc:
                resume_error, conn = exc, None
        if conn is not None:
            old = self.runtime.hub.sessions.get(conn.id)
            if old is not None:
                old.replaced = True
                old.abort()
            self.state.sessions.resume(conn, creds)  # RTN15c6: same id, fresh key
            conn.echo = echo
        else:
            conn = self.state.sessions.open(creds, identity, echo)
        self.conn = conn
        self.runtime.hub.sessions[conn.id] = self
        connected = self._connected_pm()
        if resume_error is not None:
            connected["error"] = resume_error.to_dict()  # RTN15c7
        self.send_pm(connected)
        self._arm_expiry()
        log.debug("connection %s up (resume=%s)", conn.id, bool(resume_key))
        return True

    def _authenticate(self, query: Any) -> tuple[Credentials, str | None]:
        version = query.get("v")
        if version is not None:
            try:
                if int(version) < 2:
                    raise error(40017, f"unsupported protocol version {version}")
            except ValueError as exc:
                raise error(40017, "invalid protocol version") from exc
        if query.get("key"):
            if self.runtime.state.config.require_tls_for_basic and not self.runtime.tls:
                raise error(40103, "cannot use Basic auth over non-TLS connections")
            creds = auth.from_key(self.state, query["key"])
        else:
            token = query.get("accessToken") or query.get("access_token")
            if not token:
                raise error(40101, "no key or token supplied", 401)
            creds = auth.from_token(self.state, token)
        return creds, auth.connection_identity(creds, query.get("clientId"))

    def _connected_pm(self) -> dict[str, Any]:
        assert self.conn is not None
        cfg = self.state.config
        details: dict[str, Any] = {
            "connectionKey": self.conn.key,
            "maxMessageSize": cfg.max_message_size,
            "maxFrameSize": cfg.max_frame_size,
            "maxInboundRate": cfg.max_inbound_rate,
            "maxOutboundRate": cfg.max_outbound_rate,
            "connectionStateTtl": cfg.connection_state_ttl_ms,
            "maxIdleInterval": cfg.max_idle_interval_ms,
            "serverId": cfg.server_id,
            "siteCode": cfg.site_code,
        }
        if self.conn.client_id is not None:
            details["clientId"] = self.conn.client_id
        return {
            "action": p.CONNECTED,
            "connectionId": self.conn.id,
            "connectionKey": self.conn.key,
            "connectionDetails": details,
        }

    def _arm_expiry(self) -> None:
        """DISCONNECTED 40142 when the connection's token expires (RTN15h, 11.2)."""
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
            self.expiry_timer = None
        token = self.conn.creds.token if self.conn is not None else None
        if token is None:
            return
        delay = max(0.0, (token.expires_ms - self.state.now_ms()) / 1000.0)
        self.expiry_timer = self.state.schedule(delay, self._token_expired)

    def _token_expired(self) -> None:
        self.expiry_timer = None
        conn = self.conn
        if conn is None or conn.creds.token is None or self.gone():
            return
        if conn.creds.token.expires_ms > self.state.now_ms():
            self._arm_expiry()  # renewed meanwhile
            return
        log.info("token of connection %s expired", conn.id)
        self.send_error_and_close(error(40142, "token expired", 401), p.DISCONNECTED)

    async def _read_loop(self) -> None:
        max_frame = self.state.config.max_frame_size
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                raw: str | bytes = msg.data
                fmt: codec.Format = "json"
            elif msg.type == WSMsgType.BINARY:
                raw, fmt = msg.data, "msgpack"
            else:
                break
            if len(raw) > max_frame:
                log.warning("frame of %d bytes from %r exceeds maxFrameSize", len(raw), self)
                self.send_error_and_close(error(40009, "frame exceeds maxFrameSize"))
                return
            try:
                pm = codec.decode(raw, fmt)
            except AblyException as exc:
                log.warning("malformed frame from %r: %s", self, exc.message)
                self.send_error_and_close(exc)
                return
            if not self.handle(pm, fmt):
                return

    def handle(self, pm: Any, fmt: codec.Format) -> bool:
        """Act on one decoded ProtocolMessage; False when the transport is to end."""
        if not isinstance(pm, dict) or not isinstance(pm.get("action"), int):
            log.warning("malformed frame from %r: no action", self)
            self.send_error_and_close(
                error(40000, "protocol message must be an object with an action")
            )
            return False
        conn = self.conn
        if conn is not None and self.state.connections.get(conn.id) is not conn:
            # The connection was forgotten (or closed) while frames of its transport were
            # still queued: they belong to no connection now. Acting on them made ghost
            # members - an ENTER with the forgotten connectionId that no LEAVE ever ends.
            log.debug("dropping a frame from the forgotten connection %s", conn.id)
            return False
        try:
            self.dispatch(pm, fmt)
        except AblyException as exc:
            self.send_error_and_close(exc)
            return False
        except Exception:
            log.exception("internal error handling action %s", pm.get("action"))
            self.send_error_and_close(error(50000, "internal error"))
            return False
        return not self.closed_cleanly

    # -- dispatch ------------------------------------------------------------
    def dispatch(self, pm: dict[str, Any], fmt: codec.Format) -> None:
        action = pm["action"]
        if action == p.HEARTBEAT:
            reply: dict[str, Any] = {"action": p.HEARTBEAT}
            if pm.get("id") is not None:
                reply["id"] = pm["id"]  # RTN13e: the ping's id comes back
            self.send_pm(reply)
        elif action == p.CLOSE:
            self.closed_cleanly = True
            assert self.conn is not None
            self.state.sessions.closed(self.conn)
            self.send_pm({"action": p.CLOSED})
            self.close_after_pending()
        elif action == p.ATTACH:
            channel_ops.attach(self, pm)
        elif action == p.DETACH:
            channel_ops.detach(self, pm)
        elif action in (p.MESSAGE, p.PRESENCE, p.ANNOTATION):
            channel_ops.publish(self, pm, fmt)
        elif action == p.AUTH:
            self._reauth(pm)
        elif action == p.SYNC:
            channel_ops.sync(self, pm)
        else:
            log.debug("ignoring action %s from %r", action, self)

    def _reauth(self, pm: dict[str, Any]) -> None:
        """AUTH with a new token on a live connection (RTC8a, 11.9)."""
        conn = self.conn
        assert conn is not None
        body = pm.get("auth")
        token = body.get("accessToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise error(40101, "AUTH needs auth.accessToken")
        creds = auth.from_token(self.state, token)
        if creds.app is not conn.creds.app:
            raise error(40102, "new token is for a different app")
        if creds.client_id not in ("*", conn.client_id) and not (
            conn.client_id is None and conn.creds.basic
        ):
            raise error(40102, "new token's clientId is incompatible with the connection")
        conn.creds = creds
        self._arm_expiry()
        self.send_pm(self._connected_pm())
        channel_ops.recheck_capabilities(self)


async def handle_websocket(request: web.Request) -> web.StreamResponse:
    """``GET /`` with an Upgrade header: run a realtime session until the socket ends."""
    runtime = request.app[RUNTIME]
    ws = web.WebSocketResponse(max_msg_size=0, autoping=True, compress=False)
    try:
        await ws.prepare(request)
    except (ConnectionError, RuntimeError) as exc:  # the client left during the handshake
        log.debug("WebSocket handshake abandoned: %s", exc)
        return ws
    session = Session(runtime, request, ws)
    await session.run()
    return ws
