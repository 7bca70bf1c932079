"""The emulator's state and the operations on it; no sockets, no event loop.

:class:`EmulatorState` owns apps (keys, namespaces, channels), issued tokens
and TokenRequest nonces, and implements the channel operations both REST and
realtime perform: publish (RSL1, RTL6 with the server-side checks of
ably-protocol.md 11), stats counters, and the messages the server publishes
itself (metachannel events, :meth:`EmulatorState.publish_system`). The
realtime connections live in its :class:`~.connections.ConnectionRegistry`
(``sessions``), the presence members they make in :mod:`.presence`. Changes
that subscribers must see are handed to a listener hook (``on_event``) that
the realtime layer installs for fan-out.

Time comes from an injected :class:`~ably_bridge.clock.Clock`; delayed work
(synthetic presence LEAVE, token expiry) is scheduled through ``schedule``,
which the server routes onto its event loop. Everything here runs on one
thread (the server's loop), so nothing is locked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.clock import Clock, SystemClock, Timer
from ably_bridge.emulator import capability as caps
from ably_bridge.emulator import codec, mutations
from ably_bridge.emulator.actions import (
    MESSAGE,
    P_ENTER,
)
from ably_bridge.emulator.apps import App, Key, Token, build_app, random_id
from ably_bridge.emulator.channels import Channel
from ably_bridge.emulator.config import EmulatorConfig
from ably_bridge.emulator.connections import Connection, ConnectionRegistry
from ably_bridge.emulator.errors import error
from ably_bridge.emulator.names import ChannelName, parse_channel_name

log = logging.getLogger(__name__)

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
    # operations granted per channel resource, for the capability they were computed from
    _granted: dict[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False)
    _granted_for: caps.Capability | None = field(default=None, init=False, repr=False)

    @property
    def basic(self) -> bool:
        return self.token is None

    def operations(self, resource: str) -> frozenset[str]:
        """What ``capability`` grants on ``resource`` (6.4), worked out once per resource:
        every publish asks. A capability is never changed in place; a new one starts over."""
        granted = self._granted
        if self._granted_for is not self.capability:
            granted.clear()
            self._granted_for = self.capability
        ops = granted.get(resource)
        if ops is None:
            if len(granted) >= 4096:
                granted.clear()
            ops = granted[resource] = caps.operations_for(self.capability, resource)
        return ops

    def __repr__(self) -> str:
        kind = "token" if self.token else "basic"
        return f"Credentials({self.key.key_name!r}, {kind}, client_id={self.client_id!r})"


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
        self.sessions = ConnectionRegistry(self)
        self.connections: dict[str, Connection] = self.sessions.by_id
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
                event = codec.ingest(member, "json")
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
        if operation not in creds.operations(parsed.resource):
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
        if params and str(params.get("_forceNack", "")).lower() == "true":
            raise error(40099, "forced NACK (_forceNack=true)", 400)
        # Plain loops below, not generators: this runs for every publish, mostly of one message.
        for message in messages:
            if not isinstance(message, dict):
                raise error(40001, "each message must be an object")
        if identity is None:
            identity = conn.client_id if conn is not None else creds.client_id
        total = 0
        for message in messages:
            total += codec.data_size(message)
        if total > self.config.max_message_size:
            raise error(
                40009,
                f"message size {total} exceeds maxMessageSize {self.config.max_message_size}",
            )
        with_ids = 0
        for message in messages:
            codec.check_fields(message)
            if message.get("id"):
                with_ids += 1
        operations = False
        for message in messages:
            if mutations.is_operation(message):
                operations = True
                break
        if operations:  # updates, deletes, appends
            version_serials: list[str | None] = [
                mutations.apply(self, creds, channel_name, m, conn=conn, identity=identity)
                for m in messages
            ]
            return PublishResult("", version_serials)
        if with_ids and with_ids != len(messages):
            raise error(40031, "either every message or none must carry a client-specified id")
        prepared: list[dict[str, Any]] = []
        for message in messages:
            item = dict(message)
            key = item.pop("connectionKey", None)
            publisher, ident = conn, identity
            if key is not None:  # TM2h: published on behalf of a realtime connection
                publisher = self.sessions.by_key(key, creds.app.app_id)
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
            if None in item.values():
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
            origin = conn.id if conn is not None else None
            if origin is None:
                origins = {m.get("connectionId") for m in stored}
                if len(origins) == 1:
                    origin = origins.pop()
            self.emit(channel, MESSAGE, stored, origin)
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
        self.emit(channel, MESSAGE, stored, None)

    def emit_message(self, channel: Channel, item: dict[str, Any], origin: str | None) -> None:
        """Announce one message (a new version of a changed message) to subscribers."""
        self.emit(channel, MESSAGE, [item], origin)

    def emit(
        self, channel: Channel, action: int, items: list[dict[str, Any]], origin: str | None
    ) -> None:
        if self.on_event is not None:
            self.on_event(channel, action, items, origin)

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
