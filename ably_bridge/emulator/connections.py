"""The realtime connection registry: live and resumable connections (RTN15, RTN16).

:class:`Connection` is a connection as the server remembers it across
transports; :class:`ConnectionRegistry` opens them, finds the one a
resume/recover key names, keeps the ACK/NACK sent per msgSerial (RTN19a), and
ends them: a lost transport keeps the state for ``connectionStateTtl`` and
leaves presence after a delay (11.7), CLOSE leaves at once (RTN12), and
connections past their TTL are swept.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ably_bridge.clock import Timer
from ably_bridge.emulator import presence
from ably_bridge.emulator.apps import random_id
from ably_bridge.emulator.errors import error

if TYPE_CHECKING:
    from ably_bridge.emulator.state import Credentials, EmulatorState

_KEY_PART = re.compile(r"[A-Za-z0-9]{1,64}")  # connection ids and key secrets (random_id)


# an ACK or NACK: its action, the serials of an ACK's ``res``, a NACK's error
StoredReply = tuple[int, "tuple[str | None, ...] | None", "dict[str, Any] | None"]


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
    # msgSerial -> the ACK/NACK sent for it, to answer re-sent messages (11.3, RTN19a),
    # as (action, serials, error): see ConnectionRegistry.remember_result
    results: OrderedDict[int, StoredReply] = field(default_factory=OrderedDict)
    presence_channels: set[str] = field(default_factory=set)
    leave_timer: Timer | None = None

    def __repr__(self) -> str:
        return f"Connection({self.id!r}, app={self.app_id!r}, active={self.active})"


class ConnectionRegistry:
    """Every realtime connection of one emulator, by id."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self.by_id: dict[str, Connection] = {}

    def by_key(self, key: Any, app_id: str) -> Connection:
        conn_id = str(key).partition("!")[0]
        conn = self.by_id.get(conn_id)
        if conn is None or conn.key != key or conn.app_id != app_id:
            raise error(40006, "invalid connectionKey in message")
        return conn

    def open(self, creds: Credentials, client_id: str | None, echo: bool) -> Connection:
        if len(self.by_id) % 256 == 255:
            self.sweep()
        conn_id = random_id(10)
        while conn_id in self.by_id:
            conn_id = random_id(10)
        conn = Connection(
            id=conn_id,
            key=self._connection_key(conn_id),
            app_id=creds.app.app_id,
            creds=creds,
            client_id=client_id,
            echo=echo,
        )
        self.by_id[conn_id] = conn
        self._state.count_stat(creds.app.app_id, "connections.all.opened")
        return conn

    def sweep(self) -> None:
        """Forget disconnected connections whose connectionStateTtl has passed."""
        cutoff = self._state.now_ms() - self._state.config.connection_state_ttl_ms
        for conn in list(self.by_id.values()):
            if not conn.active and (conn.disconnected_at_ms or 0) < cutoff:
                self.forget(conn)

    def remember_result(self, conn: Connection, msg_serial: int, reply: dict[str, Any]) -> None:
        """Keep the ACK/NACK of ``msg_serial`` (the last 1,000) as a tuple of strings: one is
        kept per publish, and a tuple of atomic values leaves the garbage collector's
        care at its first pass, where a dict of lists would weigh on every full pass."""
        if msg_serial > conn.last_msg_serial:
            conn.last_msg_serial = msg_serial
        res = reply.get("res")
        serials = tuple(res[0]["serials"]) if res else None
        conn.results[msg_serial] = (reply["action"], serials, reply.get("error"))
        if len(conn.results) > 1000:
            conn.results.popitem(last=False)

    @staticmethod
    def result(conn: Connection, msg_serial: int) -> dict[str, Any] | None:
        """The ACK/NACK sent for ``msg_serial``, if remembered (RTN19a)."""
        stored = conn.results.get(msg_serial)
        if stored is None:
            return None
        action, serials, err = stored
        reply: dict[str, Any] = {"action": action, "msgSerial": msg_serial, "count": 1}
        if serials is not None:
            reply["res"] = [{"serials": list(serials)}]
        if err is not None:
            reply["error"] = err
        return reply

    @staticmethod
    def _connection_key(conn_id: str) -> str:
        return f"{conn_id}!{random_id(24)}"

    def find_resumable(self, connection_key: str, app_id: str) -> Connection:
        """The connection a resume/recover key names, or 80018 (malformed) / 80008 (gone)."""
        conn_id, sep, secret = connection_key.partition("!")
        if not sep or not _KEY_PART.fullmatch(conn_id) or not _KEY_PART.fullmatch(secret):
            raise error(80018, "invalid connection key")  # not a key this server could issue
        conn = self.by_id.get(conn_id)
        if conn is None or conn.key != connection_key or conn.app_id != app_id:
            raise error(80008, "unable to recover connection: not found or expired")
        if not conn.active and conn.disconnected_at_ms is not None:
            gone_for = self._state.now_ms() - conn.disconnected_at_ms
            if gone_for > self._state.config.connection_state_ttl_ms:
                self.forget(conn)
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

    def lost(self, conn: Connection) -> None:
        """Transport gone without CLOSE: keep state for resume, LEAVE members later (11.7)."""
        if not conn.active:
            return
        conn.active = False
        conn.disconnected_at_ms = self._state.now_ms()
        if conn.presence_channels:
            delay = self._state.config.presence_leave_delay_ms / 1000.0
            conn.leave_timer = self._state.schedule(delay, lambda: self._synthetic_leave(conn))

    def _synthetic_leave(self, conn: Connection) -> None:
        conn.leave_timer = None
        if not conn.active and self.by_id.get(conn.id) is conn:
            presence.leave_all(self._state, conn)

    def closed(self, conn: Connection) -> None:
        """CLOSE: discard state and remove members at once (RTN12)."""
        presence.leave_all(self._state, conn)
        self.forget(conn)

    def forget(self, conn: Connection) -> None:
        if conn.leave_timer is not None:
            conn.leave_timer.cancel()
            conn.leave_timer = None
        if conn.presence_channels:
            presence.leave_all(self._state, conn)
        self.by_id.pop(conn.id, None)
