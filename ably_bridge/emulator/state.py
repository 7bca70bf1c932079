"""The emulator's whole state and the operations on it; no sockets, no event loop.

:class:`EmulatorState` owns apps (keys, namespaces, channels), issued tokens,
TokenRequest nonces and the realtime connection registry, and implements the
operations both REST and realtime perform: publish (RSL1, RTL6 with the
server-side checks of ably-protocol.md 11), presence enter/update/leave
(RTP8-RTP10, 11.7), connection resume bookkeeping (RTN15, RTN16) and stats
counters, and stores the messages the server publishes itself (metachannel
events, :meth:`EmulatorState.publish_system`). Changes that subscribers must
see are handed to a listener hook (``on_event``) that the realtime layer
installs for fan-out.

Time comes from an injected :class:`~ably_bridge.clock.Clock`; delayed work
(synthetic presence LEAVE, token expiry) is scheduled through ``schedule``,
which the server routes onto its event loop. Everything here runs on one
thread (the server's loop), so nothing is locked.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.clock import Clock, SystemClock, Timer
from ably_bridge.emulator import capability as caps
from ably_bridge.emulator import mutations, wire
from ably_bridge.emulator.apps import App, Key, Token, build_app, random_id
from ably_bridge.emulator.channels import Channel
from ably_bridge.emulator.config import EmulatorConfig
from ably_bridge.emulator.names import ChannelName, parse_channel_name
from ably_bridge.emulator.proto import (
    MESSAGE,
    P_ENTER,
    P_LEAVE,
    P_PRESENT,
    P_UPDATE,
    PRESENCE,
    error,
)

log = logging.getLogger(__name__)

_KEY_PART = re.compile(r"[A-Za-z0-9]{1,64}")  # connection ids and key secrets (random_id)

EventListener = Callable[[Channel, int, list[dict[str, Any]], "str | None"], None]
Scheduler = Callable[[float, Callable[[], None]], Timer]


@dataclass(eq=False)
class Credentials:
    """Who is calling: the app, the key behind the credentials, rights and identity."""

    app: App
    key: Key
    capability: caps.Capability
    client_id: str | None  # None anonymous, "*" wildcard (RSA7b)
    token: Token | None = None

    @property
    def basic(self) -> bool:
        return self.token is None

    def __repr__(self) -> str:
        kind = "token" if self.token else "basic"
        return f"Credentials({self.key.key_name!r}, {kind}, client_id={self.client_id!r})"


@dataclass(eq=False)
class Connection:
    """A realtime connection as the server remembers it across transports (RTN15)."""

    id: str
    key: str
    app_id: str
    creds: Credentials
    client_id: str | None
    echo: bool = True
    active: bool = True
    disconnected_at_ms: int | None = None
    last_msg_serial: int = -1
    # msgSerial -> the ACK/NACK sent for it, to answer re-sent messages (11.3, RTN19a)
    results: OrderedDict[int, dict[str, Any]] = field(default_factory=OrderedDict)
    presence_channels: set[str] = field(default_factory=set)
    leave_timer: Timer | None = None

    def __repr__(self) -> str:
        return f"Connection({self.id!r}, app={self.app_id!r}, active={self.active})"


@dataclass(frozen=True)
class PublishResult:
    message_id: str
    serials: list[str | None]


class EmulatorState:
    """Apps, tokens, channels and connections of one emulator instance."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.clock: Clock = clock or SystemClock()
        self.apps: dict[str, App] = {}
        self.tokens: dict[str, Token] = {}
        self.nonces: dict[tuple[str, str], int] = {}
        self.connections: dict[str, Connection] = {}
        self.on_event: EventListener | None = None
        self.schedule: Scheduler = self.clock.call_later
        self.default_app_id: str | None = None
        self._stat_second = -1
        self._stat_interval = ""

    def now_ms(self) -> int:
        return self.clock.time_ms()

    # -- apps --------------------------------------------------------------
    def create_app(self, body: dict[str, Any] | None = None) -> App:
        """Create an app from a sandbox ``POST /apps`` body, loading its presence fixtures."""
        now = self.now_ms()
        if body is not None and not isinstance(body, dict):
            raise error(40001, "app body must be a JSON object")
        app = build_app(dict(body or {}), now, set(self.apps))
        for fixture in app.fixtures:
            name = fixture.get("name")
            if not isinstance(name, str):
                raise error(40001, "fixture channel needs a name")
            channel = app.channel(parse_channel_name(name).base)
            conn_id = f"fixture{random_id(6)}"
            for index, member in enumerate(fixture.get("presence") or []):
                if not isinstance(member, dict):
                    raise error(40001, "presence fixture must be an object")
                event = wire.ingest(member, "json")
                event.update(
                    action=P_ENTER,  # history shows the enter; the member set PRESENT
                    connectionId=conn_id,
                    id=f"{conn_id}:0:{index}",
                    timestamp=now,
                )
                event["serial"] = channel.next_serial()
                channel.apply_presence(event)
        self.apps[app.app_id] = app
        log.info("app %s created with %d keys", app.app_id, len(app.keys))
        return app

    def delete_app(self, app_id: str) -> None:
        app = self.apps.pop(app_id, None)
        if app is None:
            raise error(40400, f"no app {app_id}")
        for token, record in list(self.tokens.items()):
            if record.app_id == app_id:
                del self.tokens[token]
        for conn_id, conn in list(self.connections.items()):
            if conn.app_id == app_id:
                del self.connections[conn_id]
        log.info("app %s deleted", app_id)

    def app(self, app_id: str) -> App:
        found = self.apps.get(app_id)
        if found is None:
            raise error(40400, f"no app {app_id}")
        return found

    def find_key(self, key_name: str) -> Key | None:
        app_id, _, key_id = key_name.partition(".")
        app = self.apps.get(app_id)
        return None if app is None else app.keys.get(key_id)

    # -- tokens ------------------------------------------------------------
    def issue_token(
        self,
        key: Key,
        *,
        ttl_ms: int | None,
        capability: caps.Capability | None,
        client_id: str | None,
        ceiling: caps.Capability | None = None,
    ) -> Token:
        """Mint a token for ``key`` (capability narrowed to the key's, RSA9/6.4)."""
        ttl = self.config.default_token_ttl_ms if ttl_ms is None else int(ttl_ms)
        if ttl <= 0 or ttl > self.config.max_token_ttl_ms:
            raise error(40003, f"invalid ttl {ttl}")
        granted = ceiling if ceiling is not None else key.capability
        if capability is not None:
            granted = caps.intersect(capability, granted)
            if not granted:
                raise error(40160, "requested capability is not permitted by the key")
        if client_id is not None and (not isinstance(client_id, str) or client_id == ""):
            raise error(40012, "invalid clientId")
        now = self.now_ms()
        token = Token(
            token=f"{key.app_id}.{random_id(40)}",
            app_id=key.app_id,
            key_name=key.key_name,
            issued_ms=now,
            expires_ms=now + ttl,
            capability=granted,
            client_id=client_id,
        )
        self.tokens[token.token] = token
        self.count_stat(key.app_id, "apiRequests.tokenRequests.succeeded")
        return token

    def check_nonce(self, key_name: str, nonce: str, timestamp_ms: int) -> None:
        """Reject replayed TokenRequest nonces (40105) within the freshness window."""
        now = self.now_ms()
        window = self.config.token_request_window_ms
        if len(self.nonces) > 10_000:
            self.nonces = {k: t for k, t in self.nonces.items() if now - t <= 2 * window}
        if (key_name, nonce) in self.nonces:
            raise error(40105, "nonce value replayed")
        self.nonces[(key_name, nonce)] = timestamp_ms

    def expire_tokens(self, app_id: str | None = None) -> list[Token]:
        """Make every (matching) token expire now; returns the tokens changed."""
        now = self.now_ms()
        changed = []
        for token in self.tokens.values():
            if app_id is None or token.app_id == app_id:
                token.expires_ms = min(token.expires_ms, now)
                changed.append(token)
        return changed

    # -- clientId rules (RSA7, RSA15, 6.6) ----------------------------------
    @staticmethod
    def effective_client_id(identity: str | None, basic: bool, claimed: Any) -> str | None:
        """The clientId a message/presence item ends up with, or 40012."""
        if claimed is None:
            return identity if identity not in (None, "*") else None
        if not isinstance(claimed, str) or claimed in ("", "*"):
            raise error(40012, "invalid clientId")
        if identity == "*" or (identity is None and basic):
            return claimed
        if identity is None:
            raise error(40012, f"unidentified client may not use clientId {claimed!r}")
        if identity != claimed:
            raise error(40012, f"mismatched clientId {claimed!r} (credentials are {identity!r})")
        return claimed

    # -- publish (RSL1, RTL6) -------------------------------------------------
    def resolve_channel(self, creds: Credentials, name: Any, operation: str) -> ChannelName:
        parsed = parse_channel_name(name)
        if not caps.allows(creds.capability, parsed.resource, operation):
            raise error(40160, f"{operation} not permitted on channel {parsed.full!r}")
        return parsed

    def publish(
        self,
        creds: Credentials,
        channel_name: str,
        messages: list[Any],
        *,
        conn: Connection | None = None,
        msg_serial: int | None = None,
        params: dict[str, Any] | None = None,
        identity: str | None = None,
    ) -> PublishResult:
        """Validate, store and announce messages; returns their serials (RSL1n, TR4s)."""
        parsed = self.resolve_channel(creds, channel_name, "publish")
        params = params or {}
        if str(params.get("_forceNack", "")).lower() == "true":
            raise error(40099, "forced NACK (_forceNack=true)", 400)
        if not all(isinstance(m, dict) for m in messages):
            raise error(40001, "each message must be an object")
        if identity is None:
            identity = conn.client_id if conn is not None else creds.client_id
        total = sum(wire.data_size(m) for m in messages)
        if total > self.config.max_message_size:
            raise error(
                40009,
                f"message size {total} exceeds maxMessageSize {self.config.max_message_size}",
            )
        for message in messages:
            wire.check_fields(message)
        if any(mutations.is_operation(m) for m in messages):  # updates, deletes, appends
            if identity is None:
                identity = conn.client_id if conn is not None else creds.client_id
            version_serials: list[str | None] = [
                mutations.apply(self, creds, channel_name, m, conn=conn, identity=identity)
                for m in messages
            ]
            return PublishResult("", version_serials)
        with_ids = [m for m in messages if m.get("id")]
        if with_ids and len(with_ids) != len(messages):
            raise error(40031, "either every message or none must carry a client-specified id")
        prepared: list[dict[str, Any]] = []
        for message in messages:
            item = dict(message)
            key = item.pop("connectionKey", None)
            publisher, ident = conn, identity
            if key is not None:  # TM2h: published on behalf of a realtime connection
                publisher = self._connection_by_key(key, creds.app.app_id)
                ident = publisher.client_id
            client_id = self.effective_client_id(ident, creds.basic, item.get("clientId"))
            if client_id is not None:
                item["clientId"] = client_id
            if publisher is not None:
                item["connectionId"] = publisher.id
            if "name" in item and item["name"] is not None and not isinstance(item["name"], str):
                raise error(40013, "message name must be a string")
            prepared.append(item)
        channel = creds.app.channel(parsed.base)
        now = self.now_ms()
        if with_ids:
            base = str(messages[0]["id"]).rpartition(":")[0] or str(messages[0]["id"])
        elif conn is not None and msg_serial is not None:
            base = f"{conn.id}:{msg_serial}"  # TM2a: ids are connectionId:msgSerial:index
        else:
            base = random_id(12)
        serials: list[str | None] = []
        stored: list[dict[str, Any]] = []
        for index, item in enumerate(prepared):
            msg_id = item.get("id")
            if msg_id and msg_id in channel.idempotent_ids:
                serials.append(channel.idempotent_ids[msg_id])  # RSL1k: de-duplicated
                continue
            serial = channel.next_serial()
            if not msg_id:
                msg_id = f"{base}:{index}"
            item["id"] = msg_id
            item["serial"] = serial
            item.setdefault("timestamp", now)
            if not isinstance(item["timestamp"], int):
                item["timestamp"] = now
            for empty in [k for k, v in item.items() if v is None]:
                del item[empty]
            channel.remember_id(str(msg_id), serial, self.config.idempotency_window)
            channel.append_history(
                item, self.config.history_ttl_ms, self.config.history_max_per_channel, now
            )
            stored.append(item)
            serials.append(serial)
        channel.last_activity_ms = now
        if stored:
            self.count_stat(creds.app.app_id, "messages.all.all.count", len(stored))
            # The origin decides echo suppression; on-behalf messages count as their connection's.
            origins = {m.get("connectionId") for m in stored}
            origin = conn.id if conn is not None else None
            if origin is None and len(origins) == 1:
                origin = origins.pop()
            self._emit(channel, MESSAGE, stored, origin)
        return PublishResult(base, serials)

    def publish_system(self, app: App, channel_name: str, messages: list[dict[str, Any]]) -> None:
        """Store and announce messages the server itself publishes (metachannel events)."""
        channel = app.channel(channel_name)
        now = self.now_ms()
        base = random_id(12)
        stored = []
        for index, message in enumerate(messages):
            item = {**message, "id": f"{base}:{index}", "timestamp": now}
            item["serial"] = channel.next_serial()
            channel.append_history(
                item, self.config.history_ttl_ms, self.config.history_max_per_channel, now
            )
            stored.append(item)
        channel.last_activity_ms = now
        self._emit(channel, MESSAGE, stored, None)

    def _connection_by_key(self, key: Any, app_id: str) -> Connection:
        conn_id = str(key).partition("!")[0]
        conn = self.connections.get(conn_id)
        if conn is None or conn.key != key or conn.app_id != app_id:
            raise error(40006, "invalid connectionKey in message")
        return conn

    def emit_message(self, channel: Channel, item: dict[str, Any], origin: str | None) -> None:
        """Announce one message (a new version of a changed message) to subscribers."""
        self._emit(channel, MESSAGE, [item], origin)

    def _emit(
        self, channel: Channel, action: int, items: list[dict[str, Any]], origin: str | None
    ) -> None:
        if self.on_event is not None:
            self.on_event(channel, action, items, origin)

    # -- presence (RTP8-RTP10, 11.7) --------------------------------------------
    def presence_update(
        self,
        conn: Connection,
        channel_name: str,
        items: list[Any],
        msg_serial: int,
    ) -> None:
        """Apply PRESENCE items sent by ``conn`` and announce them; raises on rejection."""
        parsed = self.resolve_channel(conn.creds, channel_name, "presence")
        channel = conn.creds.app.channel(parsed.base)
        now = self.now_ms()
        events: list[dict[str, Any]] = []
        checked: list[tuple[dict[str, Any], str]] = []
        for item in items:
            if not isinstance(item, dict):
                raise error(40001, "presence item must be an object")
            wire.check_fields(item)
            client_id = self.effective_client_id(
                conn.client_id, conn.creds.basic, item.get("clientId")
            )
            if client_id is None:
                raise error(91000, "presence requires a clientId")  # RTP8j
            if item.get("action") not in (P_ENTER, P_UPDATE, P_LEAVE, P_PRESENT):
                raise error(40003, f"invalid presence action {item.get('action')!r}")
            checked.append((item, client_id))
        if sum(wire.data_size(i) for i, _ in checked) > self.config.max_message_size:
            raise error(40009, "presence message exceeds maxMessageSize")
        for index, (item, client_id) in enumerate(checked):
            member_key = f"{conn.id}:{client_id}"
            existing = channel.presence.get(member_key)
            action = int(item["action"])
            if action == P_LEAVE and existing is None:
                continue  # RTP10d: leaving when absent still ACKs
            if action in (P_ENTER, P_PRESENT) and existing is not None:
                action = P_UPDATE
            event = {k: v for k, v in item.items() if v is not None}
            event.update(
                action=action,
                clientId=client_id,
                connectionId=conn.id,
                timestamp=now,
                serial=channel.next_serial(),
            )
            event.setdefault("id", f"{conn.id}:{msg_serial}:{index}")
            if action == P_LEAVE and "data" not in event and existing is not None:
                for field_name in ("data", "encoding"):
                    if field_name in existing:
                        event[field_name] = existing[field_name]
            channel.apply_presence(event)
            events.append(event)
        if any(m.get("connectionId") == conn.id for m in channel.presence.values()):
            conn.presence_channels.add(channel.name)
        else:
            conn.presence_channels.discard(channel.name)
        if events:
            channel.last_activity_ms = now
            self._emit(channel, PRESENCE, events, conn.id)

    def leave_all(self, conn: Connection, channel_name: str | None = None) -> None:
        """Remove ``conn``'s members (all channels, or one) with server-made LEAVEs (RTP2b1)."""
        app = self.apps.get(conn.app_id)
        if app is None:
            conn.presence_channels.clear()
            return
        names = [channel_name] if channel_name is not None else sorted(conn.presence_channels)
        now = self.now_ms()
        for name in names:
            channel = app.channels.get(name)
            conn.presence_channels.discard(name)
            if channel is None:
                continue
            events = []
            for member in channel.members(connection_id=conn.id):
                event = {
                    k: v
                    for k, v in member.items()
                    if k in ("clientId", "data", "encoding", "extras")
                }
                # Not prefixed by the connectionId, so clients compare timestamps.
                event.update(
                    action=P_LEAVE,
                    connectionId=conn.id,
                    id=f"leave{random_id(8)}:0:0",
                    timestamp=now,
                    serial=channel.next_serial(),
                )
                channel.apply_presence(event)
                events.append(event)
            if events:
                self._emit(channel, PRESENCE, events, None)

    # -- connections (RTN15, RTN16) ----------------------------------------------
    def new_connection(self, creds: Credentials, client_id: str | None, echo: bool) -> Connection:
        if len(self.connections) % 256 == 255:
            self.sweep_connections()
        conn_id = random_id(10)
        while conn_id in self.connections:
            conn_id = random_id(10)
        conn = Connection(
            id=conn_id,
            key=self._connection_key(conn_id),
            app_id=creds.app.app_id,
            creds=creds,
            client_id=client_id,
            echo=echo,
        )
        self.connections[conn_id] = conn
        self.count_stat(creds.app.app_id, "connections.all.opened")
        return conn

    def sweep_connections(self) -> None:
        """Forget disconnected connections whose connectionStateTtl has passed."""
        cutoff = self.now_ms() - self.config.connection_state_ttl_ms
        for conn in list(self.connections.values()):
            if not conn.active and (conn.disconnected_at_ms or 0) < cutoff:
                self.forget_connection(conn)

    def remember_result(self, conn: Connection, msg_serial: int, reply: dict[str, Any]) -> None:
        conn.last_msg_serial = max(conn.last_msg_serial, msg_serial)
        conn.results[msg_serial] = reply
        while len(conn.results) > 1000:
            conn.results.popitem(last=False)

    @staticmethod
    def _connection_key(conn_id: str) -> str:
        return f"{conn_id}!{random_id(24)}"

    def find_resumable(self, connection_key: str, app_id: str) -> Connection:
        """The connection a resume/recover key names, or 80018 (malformed) / 80008 (gone)."""
        conn_id, sep, secret = connection_key.partition("!")
        if not sep or not _KEY_PART.fullmatch(conn_id) or not _KEY_PART.fullmatch(secret):
            raise error(80018, "invalid connection key")  # not a key this server could issue
        conn = self.connections.get(conn_id)
        if conn is None or conn.key != connection_key or conn.app_id != app_id:
            raise error(80008, "unable to recover connection: not found or expired")
        if not conn.active and conn.disconnected_at_ms is not None:
            gone_for = self.now_ms() - conn.disconnected_at_ms
            if gone_for > self.config.connection_state_ttl_ms:
                self.forget_connection(conn)
                raise error(80008, "unable to recover connection: connectionStateTtl elapsed")
        return conn

    def resume(self, conn: Connection, creds: Credentials) -> None:
        """Continue ``conn`` on a new transport with a fresh connectionKey (RTN15c6)."""
        if conn.leave_timer is not None:
            conn.leave_timer.cancel()
            conn.leave_timer = None
        conn.active = True
        conn.disconnected_at_ms = None
        conn.creds = creds
        conn.key = self._connection_key(conn.id)

    def connection_lost(self, conn: Connection) -> None:
        """Transport gone without CLOSE: keep state for resume, LEAVE members later (11.7)."""
        if not conn.active:
            return
        conn.active = False
        conn.disconnected_at_ms = self.now_ms()
        if conn.presence_channels:
            delay = self.config.presence_leave_delay_ms / 1000.0
            conn.leave_timer = self.schedule(delay, lambda: self._synthetic_leave(conn))

    def _synthetic_leave(self, conn: Connection) -> None:
        conn.leave_timer = None
        if not conn.active and self.connections.get(conn.id) is conn:
            self.leave_all(conn)

    def connection_closed(self, conn: Connection) -> None:
        """CLOSE: discard state and remove members at once (RTN12)."""
        self.leave_all(conn)
        self.forget_connection(conn)

    def forget_connection(self, conn: Connection) -> None:
        if conn.leave_timer is not None:
            conn.leave_timer.cancel()
            conn.leave_timer = None
        if conn.presence_channels:
            self.leave_all(conn)
        self.connections.pop(conn.id, None)

    # -- stats ---------------------------------------------------------------
    def count_stat(self, app_id: str, entry: str, amount: int = 1) -> None:
        if not self.config.stats_enabled:
            return
        app = self.apps.get(app_id)
        if app is None:
            return
        second = int(self.clock.time())
        if second != self._stat_second:
            self._stat_second = second
            self._stat_interval = time.strftime("%Y-%m-%d:%H:%M", time.gmtime(second))
        interval = self._stat_interval
        bucket = app.stats.setdefault(interval, {})
        bucket[entry] = bucket.get(entry, 0) + amount
