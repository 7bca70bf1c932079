"""Realtime presence of one channel (RTP): enter/update/leave, get, subscribe, history.

:class:`RealtimePresence` is ``channel.presence``. Actions are sent through the
loop thread and wait for the ACK (RTP8-RTP10, RTP14-RTP15); on an INITIALIZED
channel they attach it implicitly first (RTP8d) and the core holds them until
ATTACHED (RTP16b). ``get`` answers from the presence map once a SYNC is
complete (RTP11a, RTP11c filters), ``subscribe`` listens by action name
(``"enter"``, ``"leave"``, ``"update"``, ``"present"``) and attaches implicitly
(RTP6d); ``subscribe_raw`` hands over each PRESENCE frame as received,
unfiltered by the map. Payloads are encrypted/encoded on the way out and decoded for
listeners and ``get`` on the way in; the map itself keeps wire form.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.actions import ChannelMode, PresenceAction
from ably_bridge.protocol.events import ChannelState, Effect
from ably_bridge.protocol.models import PresenceMessage
from ably_bridge.realtime.delivery import BACKGROUND
from ably_bridge.rest.channels import Channel as RestChannel

if TYPE_CHECKING:
    from ably_bridge.protocol.channel import ChannelCore
    from ably_bridge.realtime.channel import RealtimeChannel
    from ably_bridge.realtime.client import AblyRealtime
    from ably_bridge.realtime.delivery import ChannelEvents
    from ably_bridge.rest.pagination import PaginatedResult

__all__ = ["RealtimePresence"]

log = logging.getLogger(__name__)

_CS = ChannelState
_A = PresenceAction
PresenceListener = Callable[[PresenceMessage], Any]


def _action_name(action: Any) -> str:
    if isinstance(action, PresenceAction):
        return action.name.lower()
    name = str(action).lower()
    if name.upper() not in PresenceAction.__members__:
        raise AblyException(f"unknown presence action {action!r}", ErrorCode.BAD_REQUEST, 400)
    return name


class RealtimePresence:
    """``channel.presence``; see the module docstring."""

    def __init__(
        self,
        channel: RealtimeChannel,
        client: AblyRealtime,
        core: ChannelCore,
        events: ChannelEvents,
    ) -> None:
        self._channel = channel
        self._client = client
        self._loop = client._loop
        self._core = core
        self._events = events

    @property
    def sync_complete(self) -> bool:
        """True once the presence map is in sync (RTP13)."""
        return self._core.presence.sync_complete

    # -- own member (RTP8, RTP9, RTP10) ----------------------------------------------------
    def enter(
        self,
        data: Any = None,
        extras: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        self._send(_A.ENTER, None, data, extras, timeout)

    def update(
        self,
        data: Any = None,
        extras: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        self._send(_A.UPDATE, None, data, extras, timeout)

    def leave(
        self,
        data: Any = None,
        extras: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        self._send(_A.LEAVE, None, data, extras, timeout)

    # -- other members (RTP14, RTP15) -------------------------------------------------------
    def enter_client(
        self,
        client_id: str,
        data: Any = None,
        extras: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        self._send(_A.ENTER, client_id, data, extras, timeout)

    def update_client(
        self,
        client_id: str,
        data: Any = None,
        extras: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        self._send(_A.UPDATE, client_id, data, extras, timeout)

    def leave_client(
        self,
        client_id: str,
        data: Any = None,
        extras: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        self._send(_A.LEAVE, client_id, data, extras, timeout)

    def _send(
        self,
        action: PresenceAction,
        client_id: str | None,
        data: Any,
        extras: Mapping[str, Any] | None,
        timeout: float | None,
    ) -> None:
        if client_id is not None and (not isinstance(client_id, str) or client_id in ("", "*")):
            raise AblyException("a concrete clientId is needed", ErrorCode.INVALID_CLIENT_ID, 400)
        own = self._client.client_id
        if client_id is None and own in (None, "*") and self._loop.core.details is not None:
            # RTP8j: entering as ourselves needs an identity (connected => we know it).
            raise AblyException(
                "cannot enter presence without a clientId",
                ErrorCode.CANNOT_ENTER_PRESENCE_WITHOUT_A_CLIENT_ID,
                400,
            )
        message = PresenceMessage(
            action, client_id=client_id, data=data, extras=dict(extras) if extras else None
        ).encoded(self._events.cipher)
        member_id = client_id or own
        keep_data = action == _A.LEAVE and data is None
        name, conn, core = self._channel.name, self._loop.core, self._core

        def op(future: Future[Any], now: float) -> list[Effect]:
            if keep_data and member_id is not None:  # RTP10a: leave keeps the last data
                last = core.local_presence.get(member_id)
                if last is not None:
                    message.data, message.encoding = last.data, last.encoding
            effects: list[Effect] = []
            if core.state == _CS.INITIALIZED:
                effects.extend(conn.attach(name, BACKGROUND, now))  # RTP8d
            effects.extend(conn.publish_presence(name, message, future, now))
            return effects

        self._loop.call(op, self._timeout(timeout), f"presence {action.name.lower()} on {name!r}")

    # -- members (RTP11) ----------------------------------------------------------------
    def get(
        self,
        wait_for_sync: bool = True,
        client_id: str | None = None,
        connection_id: str | None = None,
        *,
        timeout: float | None = None,
    ) -> list[PresenceMessage]:
        """Members present now; with ``wait_for_sync`` only once the SYNC completed (RTP11a)."""
        name, conn, core, events = self._channel.name, self._loop.core, self._core, self._events

        def read() -> list[PresenceMessage]:
            cipher, decode = events.cipher, events.decode
            return [
                m.decoded(cipher) if decode and m.encoding is not None else m
                for m in core.presence.values()
                if (client_id is None or m.client_id == client_id)
                and (connection_id is None or m.connection_id == connection_id)
            ]

        def op(future: Future[Any], now: float) -> list[Effect]:
            state = core.state
            if state == _CS.FAILED:
                raise AblyException(
                    f"channel {name!r} has failed",
                    ErrorCode.CHANNEL_OPERATION_FAILED_INVALID_CHANNEL_STATE,
                    400,
                )
            if state == _CS.SUSPENDED and wait_for_sync:  # RTP11d
                raise AblyException(
                    "presence state is out of sync: the channel is suspended",
                    ErrorCode.PRESENCE_STATE_OUT_OF_SYNC,
                    400,
                )
            effects: list[Effect] = []
            if state in (_CS.INITIALIZED, _CS.DETACHED, _CS.DETACHING):
                effects.extend(conn.attach(name, BACKGROUND, now))  # RTP11b
            if not wait_for_sync or (core.state == _CS.ATTACHED and core.presence.sync_complete):
                future.set_result(read())
            else:
                events.sync_waiters.append((future, read))
            return effects

        result: list[PresenceMessage] = self._loop.call(
            op, self._timeout(timeout), f"presence get on {name!r}"
        )
        return result

    # -- listeners (RTP6, RTP7) ------------------------------------------------------------
    def subscribe(
        self,
        *args: Any,
        attach: bool = True,
        wait: bool = True,
        timeout: float | None = None,
        inline: bool = False,
    ) -> Callable[[], None]:
        """``subscribe(listener)`` or ``subscribe(action | [actions], listener)``; returns off.

        Attaches the channel and waits for ATTACHED (RTP6d), raising the attach
        error after removing the listener; ``attach``, ``wait``, ``timeout`` and
        ``inline`` as for :meth:`RealtimeChannel.subscribe`. Attached without the
        presence_subscribe mode it logs an error, or raises 91008 with
        ``strict_mode``.
        """
        actions, listener = self._split(args)
        off = self._events.presence.on(actions, listener, inline=inline)
        self._channel._attach_for(
            off, attach=attach, wait=wait, timeout=timeout, mode=ChannelMode.PRESENCE_SUBSCRIBE
        )
        return off

    def subscribe_raw(
        self,
        listener: Callable[[list[PresenceMessage]], Any],
        *,
        attach: bool = True,
        wait: bool = True,
        timeout: float | None = None,
        inline: bool = False,
    ) -> Callable[[], None]:
        """Call ``listener`` with each inbound PRESENCE frame's messages, as received.

        An extension of this library (ably-js has no such call) for consumers
        that record every presence event rather than track members: the list
        is the frame's messages in wire order with their ids, not filtered by
        the presence map - a LEAVE during a SYNC (RTP2h2a) and an event older
        than the member's entry (RTP2a) are included - and without the SYNC's
        PRESENT entries or the LEAVEs the client synthesizes (RTP19a). The
        member map (``get``, ``subscribe``) is unchanged by it. Payloads are
        decoded as for ``subscribe``; all raw listeners get the same list (do
        not change it). ``attach``, ``wait``, ``timeout`` and ``inline`` as for
        :meth:`subscribe`. Returns a callable that unsubscribes;
        ``unsubscribe()`` and ``unsubscribe(listener)`` remove raw listeners too.
        """
        if not callable(listener):
            raise TypeError("listener must be callable")
        off = self._events.raw_presence.on(None, listener, inline=inline)
        self._channel._attach_for(
            off, attach=attach, wait=wait, timeout=timeout, mode=ChannelMode.PRESENCE_SUBSCRIBE
        )
        return off

    def unsubscribe(self, *args: Any) -> None:
        if not args:
            self._events.presence.off()
            self._events.raw_presence.off()
            return
        if len(args) == 1 and callable(args[0]):
            self._events.presence.off(None, args[0])
            self._events.raw_presence.off(None, args[0])
            return
        actions, listener = self._split(args) if callable(args[-1]) else (args[0], None)
        for action in actions if isinstance(actions, list) else [actions]:
            self._events.presence.off(action if action is None else _action_name(action), listener)

    def _split(self, args: tuple[Any, ...]) -> tuple[Any, PresenceListener]:
        if len(args) == 1 and callable(args[0]):
            return None, args[0]
        if len(args) == 2 and callable(args[1]):
            action = args[0]
            if isinstance(action, (list, tuple, set, frozenset)):
                return [_action_name(a) for a in action], args[1]
            return (None if action is None else _action_name(action)), args[1]
        raise TypeError("expected (listener) or (action, listener)")

    # -- history (RTP12) -----------------------------------------------------------------
    def history(
        self,
        start: Any = None,
        end: Any = None,
        direction: str | None = None,
        limit: int | None = None,
    ) -> PaginatedResult[PresenceMessage]:
        rest_channel = RestChannel(self._client.rest, self._channel.name, self._events.cipher)
        return rest_channel.presence.history(start, end, direction, limit)

    def _timeout(self, timeout: float | None) -> float:
        return self._client.options.realtime_request_timeout if timeout is None else timeout
