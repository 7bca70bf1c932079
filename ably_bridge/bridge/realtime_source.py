"""The realtime adapter: :class:`~ably_bridge.bridge.source.ChannelSource` over ``AblyRealtime``.

This module owns :class:`RealtimeSource`, which keeps one realtime connection
and, per attached channel, a message listener, a presence listener and a
state listener that forward into the daemon's handlers. Messages are handed
over a frame at a time (``subscribe_batch``): one listener call and one
``handlers.messages`` call per inbound frame, in order.

Ordering across listeners: the realtime client runs each listener on its own
ordered queue, so a message of a new attachment may reach the daemon before
the ATTACHED/UPDATE that started it. Because ``attachSerial`` changes exactly
when continuity is lost (RTL15c), the message and presence listeners compare
the channel's current attach serial with the last one reported and, if it
moved, report the state change (``attached``, ``resumed=False``) *first*; the
state listener then skips the same serial. So the daemon always sees the
continuity loss before any event after it.

Presence events come from the client's raw presence feed
(``presence.subscribe_raw``): each PRESENCE frame as the server sent it, a
frame per call, with ids - not the member map's subscriber events, which hide
a LEAVE that arrives during a multi-page SYNC (RTP2h2a) and events older than
a member's entry (RTP2a), and add the SYNC's PRESENT entries and the LEAVEs
the client synthesizes (RTP19a). Membership goes the other way: after every
attach without continuity, ``presence.get()`` (which waits for the SYNC,
RTP11a) runs on a helper thread and its members go to the ``presence_sync``
handler, which replaces the presence snapshot.

Payloads arrive undecoded (the channel option ``decode=False``): the
dispatcher's envelope builder decodes them per route, with the route's cipher,
or leaves them with their ``encoding`` for ``data: encoded`` routes - the same
as for events backfilled from history.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from ably_bridge.bridge.secret import Secret
from ably_bridge.bridge.source import SourceHandlers, StateChange
from ably_bridge.errors import AblyException
from ably_bridge.protocol.models import Message, PresenceMessage

if TYPE_CHECKING:
    from ably_bridge.bridge.config import BridgeConfig
    from ably_bridge.realtime import AblyRealtime, ChannelStateChange, RealtimeChannel

__all__ = ["RealtimeSource"]

logger = logging.getLogger(__name__)

_SYNC_TIMEOUT = 30.0


def _value(state: Any) -> str:
    return str(getattr(state, "value", state)).lower()


@dataclass
class _Attachment:
    channel: RealtimeChannel
    handlers: SourceHandlers
    presence: bool
    offs: list[Callable[[], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reported_serial: str | None = None
    active: bool = True


class RealtimeSource:
    """Channel events from one realtime connection (see the module docstring)."""

    def __init__(self, client: AblyRealtime, *, attach_timeout: float = 15.0) -> None:
        self.client = client
        self._attach_timeout = attach_timeout
        self._attachments: dict[str, _Attachment] = {}
        self._lock = threading.Lock()
        # Attach and detach calls block until settled; one thread keeps them in
        # the order the daemon asked for them. Presence syncs wait on their own.
        self._ops = ThreadPoolExecutor(1, thread_name_prefix="ably-bridge-rt-ops")
        self._helpers = ThreadPoolExecutor(4, thread_name_prefix="ably-bridge-rt-sync")
        self._closed = False

    @classmethod
    def from_config(cls, config: BridgeConfig, *, callback_workers: int = 8) -> RealtimeSource:
        """A source with a realtime client built from ``config.ably``."""
        from ably_bridge.bridge.clients import realtime_client

        return cls(realtime_client(config, callback_workers=callback_workers))

    # -- ChannelSource ------------------------------------------------------------------
    def attach(
        self,
        channel: str,
        handlers: SourceHandlers,
        *,
        cipher_key: Secret | None = None,
        presence: bool = False,
    ) -> None:
        from ably_bridge.realtime import ChannelOptions

        self._forget(channel)
        # Payloads arrive as they travelled: each route's envelope builder decodes
        # them with that route's cipher and data mode (``decoded`` or ``encoded``).
        # ``cipher_key`` only tells a reload that the channel needs a re-attach.
        rt_channel = self.client.channels.get(channel, ChannelOptions(decode=False))
        att = _Attachment(rt_channel, handlers, presence)
        with self._lock:
            self._attachments[channel] = att
        att.offs.append(rt_channel.on(lambda change: self._on_state(att, change)))
        # Messages and presence reach the daemon's inbox from inline listeners: on
        # the thread that read them, with no callback-pool wake-up per frame. They
        # only take the attachment's lock and put an item in a queue.
        # One call (and one inbox item) per frame.
        on_frame = rt_channel.subscribe_batch
        att.offs.append(on_frame(partial(self._on_messages, att), attach=False, inline=True))
        if presence:
            # The raw feed, not subscribe(): every PRESENCE frame as received (a
            # LEAVE during a SYNC too, RTP2h2a), no SYNC PRESENTs, no RTP19a LEAVEs.
            on_presence = rt_channel.presence.subscribe_raw
            att.offs.append(on_presence(partial(self._on_presence, att), attach=False, inline=True))
        self._ops.submit(self._attach, att)

    def detach(self, channel: str) -> None:
        att = self._forget(channel)
        if att is not None:
            self._ops.submit(self._detach, att)

    def connection_state(self) -> str:
        return _value(self.client.connection.state)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            names = list(self._attachments)
        for name in names:
            self._forget(name)
        self._ops.shutdown(wait=False, cancel_futures=True)
        self._helpers.shutdown(wait=False, cancel_futures=True)
        self.client.close(timeout=10.0)

    # -- helpers -------------------------------------------------------------------------
    def _forget(self, channel: str) -> _Attachment | None:
        with self._lock:
            att = self._attachments.pop(channel, None)
        if att is None:
            return None
        with att.lock:
            att.active = False
        for off in att.offs:
            off()
        return att

    def _attach(self, att: _Attachment) -> None:
        try:
            att.channel.attach(timeout=self._attach_timeout)
        except AblyException as exc:  # the state listener reports SUSPENDED/FAILED
            logger.warning(
                "attach of %s: %s", att.channel.name, exc.message,
                extra={"channel": att.channel.name},
            )  # fmt: skip

    def _detach(self, att: _Attachment) -> None:
        try:
            att.channel.detach(timeout=self._attach_timeout)
        except AblyException as exc:
            logger.info("detach of %s: %s", att.channel.name, exc.message)

    def _report_attach(self, att: _Attachment, change: StateChange) -> None:
        """Report a continuity loss once per attach serial (called with ``att.lock``)."""
        att.reported_serial = change.attach_serial
        att.handlers.state(change)
        if att.presence:
            self._helpers.submit(self._sync, att, change.attach_serial)

    def _check_serial(self, att: _Attachment) -> None:
        serial = att.channel.attach_serial
        if serial is not None and serial != att.reported_serial:
            self._report_attach(
                att, StateChange("attached", "attaching", "attached", False, None, serial)
            )

    def _on_state(self, att: _Attachment, change: ChannelStateChange) -> None:
        current = _value(change.current)
        with att.lock:
            if not att.active:
                return
            if current == "attached" and not change.resumed:
                serial = att.channel.attach_serial
                if serial is not None and serial == att.reported_serial:
                    return  # already reported by a message listener
                self._report_attach(
                    att,
                    StateChange(
                        current, _value(change.previous), _value(change.event), False,
                        change.reason, serial,
                    ),
                )  # fmt: skip
                return
            if current in ("suspended", "detached", "failed"):
                att.reported_serial = None  # the next ATTACHED is reported even if unchanged
            att.handlers.state(
                StateChange(
                    current, _value(change.previous), _value(change.event), change.resumed,
                    change.reason, None,
                )
            )  # fmt: skip

    def _on_messages(self, att: _Attachment, messages: list[Message]) -> None:
        # (once per inbound frame: _check_serial written out)
        with att.lock:
            if not att.active:
                return
            serial = att.channel.attach_serial
            if serial is not None and serial != att.reported_serial:
                self._check_serial(att)
            att.handlers.messages(messages)

    def _on_presence(self, att: _Attachment, messages: list[PresenceMessage]) -> None:
        with att.lock:
            if not att.active:
                return
            self._check_serial(att)
            att.handlers.presence(messages)

    def _sync(self, att: _Attachment, serial: str | None) -> None:
        try:
            members = att.channel.presence.get(wait_for_sync=True, timeout=_SYNC_TIMEOUT)
        except AblyException as exc:  # suspended/detached meanwhile: the next attach syncs
            logger.info("presence sync of %s skipped: %s", att.channel.name, exc.message)
            return
        with att.lock:
            if att.active and att.reported_serial == serial:
                att.handlers.presence_sync(members)
