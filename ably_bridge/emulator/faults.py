"""Fault injection: scoped, one-shot or counted misbehaviours for tests.

:class:`Faults` runs on the server's event loop. REST-side faults are
consumed by a middleware (:meth:`Faults.take_rest_failure`), connect-time
refusals by the realtime handler; the rest act at once on live sessions
through the hub. Every fault names its scope (an app, a connectionId, a
channel), so tests running side by side on one emulator do not disturb each
other. The admin HTTP API (``/_emulator/...``, see :mod:`.admin`) and the
Python API (``Emulator.faults``) both call these methods.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ably_bridge.emulator import actions as p
from ably_bridge.emulator.errors import error

if TYPE_CHECKING:
    from ably_bridge.emulator.context import Runtime
    from ably_bridge.emulator.realtime import Session

log = logging.getLogger(__name__)


@dataclass
class RestFailure:
    remaining: int
    status: int
    code: int
    message: str
    app_id: str | None
    path_prefix: str | None


@dataclass
class ConnectRefusal:
    remaining: int
    code: int | None  # None: close the socket without a frame
    status: int | None
    message: str
    app_id: str | None


def app_of_credentials(authorization: str | None, query: Mapping[str, str]) -> str | None:
    """Best-effort app id of a request, read from its credentials without verifying them."""
    candidate = query.get("key") or query.get("accessToken") or query.get("access_token")
    if not candidate and authorization:
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                candidate = base64.b64decode(value).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                return None
        elif "." in value:
            candidate = value
        else:
            try:
                candidate = base64.b64decode(value + "=" * (-len(value) % 4)).decode(
                    "utf-8", "replace"
                )
            except (binascii.Error, ValueError):
                return None
    if not candidate or "." not in candidate:
        return None
    return candidate.split(".", 1)[0]


class Faults:
    """Pending and immediate faults of one emulator."""

    def __init__(self, runtime: Runtime | None = None) -> None:
        self.runtime = runtime
        self.rest_failures: list[RestFailure] = []
        self.connect_refusals: list[ConnectRefusal] = []

    # -- consumed by handlers ---------------------------------------------------
    def take_rest_failure(
        self, path: str, authorization: str | None, query: Mapping[str, str]
    ) -> RestFailure | None:
        if not self.rest_failures:
            return None
        app_id = app_of_credentials(authorization, query)
        for failure in self.rest_failures:
            if failure.app_id is not None and failure.app_id != app_id:
                continue
            if failure.path_prefix is not None and not path.startswith(failure.path_prefix):
                continue
            failure.remaining -= 1
            if failure.remaining <= 0:
                self.rest_failures.remove(failure)
            return failure
        return None

    def take_connect_refusal(self, query: Mapping[str, str]) -> ConnectRefusal | None:
        if not self.connect_refusals:
            return None
        app_id = app_of_credentials(None, query)
        for refusal in self.connect_refusals:
            if refusal.app_id is not None and refusal.app_id != app_id:
                continue
            refusal.remaining -= 1
            if refusal.remaining <= 0:
                self.connect_refusals.remove(refusal)
            return refusal
        return None

    # -- scheduling faults ------------------------------------------------------
    def fail_rest(
        self,
        count: int = 1,
        status: int = 500,
        code: int = 50000,
        message: str = "injected failure",
        app_id: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Fail the next ``count`` matching REST requests with ``status``/``code``."""
        self.rest_failures.append(RestFailure(count, status, code, message, app_id, path_prefix))

    def refuse_connections(
        self,
        count: int = 1,
        code: int | None = None,
        status: int | None = None,
        message: str = "injected connection refusal",
        app_id: str | None = None,
    ) -> None:
        """Refuse the next ``count`` connection attempts: ERROR ``code``, or just close."""
        self.connect_refusals.append(ConnectRefusal(count, code, status, message, app_id))

    def clear(self) -> None:
        """Cancel pending REST failures and connection refusals; un-stall every session."""
        self.rest_failures.clear()
        self.connect_refusals.clear()
        for session in self._sessions(None, None):
            session.out.delay_s = 0.0
            session.out.stall(False)
            session.heartbeats_stopped = False

    # -- immediate faults on sessions -----------------------------------------
    def _sessions(self, connection_id: str | None, app_id: str | None) -> list[Session]:
        assert self.runtime is not None
        sessions = list(self.runtime.hub.sessions.values())
        return [
            s
            for s in sessions
            if s.conn is not None
            and (connection_id is None or s.conn.id == connection_id)
            and (app_id is None or s.conn.app_id == app_id)
        ]

    def drop_connections(self, connection_id: str | None = None, app_id: str | None = None) -> int:
        """Close matching transports abruptly (no frame): clients see a network failure."""
        sessions = self._sessions(connection_id, app_id)
        for session in sessions:
            session.abort()
        return len(sessions)

    def disconnect(
        self,
        connection_id: str | None = None,
        app_id: str | None = None,
        code: int = 80003,
        status: int | None = None,
        message: str = "injected disconnect",
        action: str = "disconnected",
    ) -> int:
        """Send DISCONNECTED (or ERROR with ``action='error'``) with ``code``, then close."""
        frame_action = p.ERROR if action == "error" else p.DISCONNECTED
        sessions = self._sessions(connection_id, app_id)
        for session in sessions:
            session.send_error_and_close(error(code, message, status), frame_action)
        return len(sessions)

    def delay_frames(
        self, seconds: float, connection_id: str | None = None, app_id: str | None = None
    ) -> int:
        """Delay every outgoing frame of matching sessions by ``seconds`` (0 to stop).

        Frames keep their order; the delay is measured on the emulator's clock.
        """
        sessions = self._sessions(connection_id, app_id)
        for session in sessions:
            session.out.delay_s = max(0.0, float(seconds))
        return len(sessions)

    def stall(
        self, stalled: bool = True, connection_id: str | None = None, app_id: str | None = None
    ) -> int:
        """Hold (or release) every outgoing frame of matching sessions."""
        sessions = self._sessions(connection_id, app_id)
        for session in sessions:
            session.out.stall(stalled)
        return len(sessions)

    def held(self, connection_id: str | None = None, app_id: str | None = None) -> int:
        """Frames that :meth:`stall` holds back from matching sessions (what a test waits on)."""
        return sum(session.out.held for session in self._sessions(connection_id, app_id))

    def stop_reading(
        self, stopped: bool = True, connection_id: str | None = None, app_id: str | None = None
    ) -> int:
        """Stop (or resume) reading the sockets of matching sessions: a peer whose
        network path hung. Their clients' sends back up in the kernel buffers."""
        sessions = self._sessions(connection_id, app_id)
        for session in sessions:
            transport = session.request.transport
            if transport is None:
                continue
            if stopped:
                transport.pause_reading()
            else:
                transport.resume_reading()
        return len(sessions)

    def stop_heartbeats(
        self, stopped: bool = True, connection_id: str | None = None, app_id: str | None = None
    ) -> int:
        """Stop (or resume) the periodic HEARTBEATs of sessions that asked for them (RTN23b).

        Clients then see no inbound traffic and must time out by themselves (RTN23a).
        """
        sessions = self._sessions(connection_id, app_id)
        for session in sessions:
            session.heartbeats_stopped = stopped
        return len(sessions)

    def channel_fault(
        self,
        app_id: str,
        channel: str,
        action: str = "detached",
        code: int = 90198,
        status: int | None = 500,
        message: str = "injected channel fault",
        connection_id: str | None = None,
    ) -> int:
        """Server-initiated DETACHED (RTL13) or channel ERROR (RTL14) on attached sessions."""
        assert self.runtime is not None
        frame_action = p.ERROR if action == "error" else p.DETACHED
        count = 0
        for session in self._sessions(connection_id, app_id):
            for name, att in list(session.attachments.items()):
                if name != channel and att.base != channel:
                    continue
                session.attachments.pop(name, None)
                assert session.conn is not None
                app = session.state.apps.get(app_id)
                base = app.channels.get(att.base) if app is not None else None
                self.runtime.hub.detach(base, session.conn.id, name)
                err = error(code, message, status).to_dict()
                session.send_pm({"action": frame_action, "channel": name, "error": err})
                count += 1
        return count

    def expire_channel_continuity(self, app_id: str, channel: str | None = None) -> int:
        """Make every serial issued so far on ``channel`` (or all of the app's) unresumable.

        The next ATTACH carrying such a channelSerial gets ATTACHED without
        RESUMED and error 90003, as when Ably no longer holds the messages since
        that point: what a failed connection resume looks like to a channel.
        """
        assert self.runtime is not None
        app = self.runtime.state.apps.get(app_id)
        if app is None:
            return 0
        targets = [ch for name, ch in app.channels.items() if channel is None or name == channel]
        for target in targets:
            target.expire_continuity()
        return len(targets)

    def expire_tokens(self, app_id: str | None = None) -> int:
        """Expire every token now; live connections using one get DISCONNECTED 40142."""
        assert self.runtime is not None
        changed = self.runtime.state.expire_tokens(app_id)
        for session in self._sessions(None, app_id):
            if session.conn is not None and session.conn.creds.token is not None:
                session._token_expired()
        return len(changed)

    def forget_connections(
        self, connection_id: str | None = None, app_id: str | None = None
    ) -> int:
        """Discard connection state so the next resume fails (RTN15c7); drops transports too."""
        assert self.runtime is not None
        state = self.runtime.state
        targets = [
            c
            for c in list(state.connections.values())
            if (connection_id is None or c.id == connection_id)
            and (app_id is None or c.app_id == app_id)
        ]
        for conn in targets:
            session = self.runtime.hub.sessions.get(conn.id)
            state.sessions.forget(conn)
            if session is not None:
                session.abort()
        return len(targets)

    def describe(self) -> dict[str, Any]:
        return {
            "restFailures": [vars(f) for f in self.rest_failures],
            "connectRefusals": [vars(r) for r in self.connect_refusals],
        }
