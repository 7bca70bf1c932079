"""Frames to their handlers, and channel frames and inputs to their channel (RTL, RTP).

:class:`Routing` owns :meth:`~Routing.frame_received`: a frame from a dropped
transport is ignored (RTN11b), MESSAGE takes the hot path straight to its
channel, every other action goes to its handler and unknown ones are ignored
(RSF1). Channel frames (ATTACHED, DETACHED, PRESENCE, SYNC and the serial-only
ANNOTATION and OBJECT) go to the :class:`~ably_bridge.protocol.channel.ChannelCore`
they name; so do the channel inputs (attach RTL4, detach RTL5, options RTL16,
a failed delta RTL18). Queued presence and re-entries leave when a channel
attaches (RTP5b, RTP17i).
"""

from __future__ import annotations

from collections.abc import Sequence

from ably_bridge.errors import AblyException
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.connection.auth import Authenticating
from ably_bridge.protocol.connection.base import NO_EFFECTS
from ably_bridge.protocol.events import Effect, Handle
from ably_bridge.protocol.models import ProtocolMessage

__all__ = ["Routing"]

_MESSAGE = Action.MESSAGE  # (an enum attribute costs a lookup: read once per frame)


class Routing(Authenticating):
    """Frame dispatch and the channels' frames and inputs; see the module docstring."""

    def frame_received(
        self, transport_id: int, pm: ProtocolMessage, now: float
    ) -> Sequence[Effect]:
        """One decoded ProtocolMessage from transport ``transport_id``."""
        if transport_id != self._transport_id or not self._transport_live:
            return NO_EFFECTS  # from a transport we already dropped
        self._last_activity = now  # RTN23a: any inbound frame is activity
        if pm.action == _MESSAGE:  # the hot path
            ch = self.channels.get(pm.channel) if pm.channel is not None else None
            if ch is None:
                return NO_EFFECTS
            delivery = ch.on_message(pm)
            return [delivery] if delivery is not None else NO_EFFECTS
        handler = self._handlers.get(pm.action)
        if handler is None:
            return NO_EFFECTS  # RSF1: unknown actions are ignored
        return handler(pm, now)

    def attach(self, name: str, handle: Handle, now: float) -> Sequence[Effect]:
        """RTL4 for channel ``name`` (created if needed)."""
        self._channels_dirty = True
        return self.channel(name).attach(handle, self.state, now)

    def detach(self, name: str, handle: Handle, now: float) -> Sequence[Effect]:
        """RTL5 for channel ``name``."""
        self._channels_dirty = True
        return self.channel(name).detach(handle, self.state, now)

    def decode_failed(
        self, name: str, serial: str | None, error: AblyException, now: float
    ) -> Sequence[Effect]:
        """RTL18 for channel ``name``: a delta could not be decoded."""
        ch = self.channels.get(name)
        if ch is None:
            return []
        self._channels_dirty = True
        return ch.decode_failed(error, serial, self.state, now)

    def set_channel_options(
        self, name: str, params: dict[str, str], modes: int, handle: Handle, now: float
    ) -> Sequence[Effect]:
        """RTL16 for channel ``name``: new params/modes, re-attaching if they change (RTL16a)."""
        self._channels_dirty = True
        return self.channel(name).set_options(params, modes, handle, self.state, now)

    # -- channel frames -----------------------------------------------------------------

    def _on_attached(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        ch = self.channels.get(pm.channel or "")
        if ch is None:
            return NO_EFFECTS
        self._channels_dirty = True
        effects = ch.on_attached(pm, now)
        for entry in ch.take_outbound(self._connection_id):  # RTP5b, RTP17i
            effects.extend(self._submit(entry))
        return effects

    def _on_detached(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        ch = self.channels.get(pm.channel or "")
        if ch is None:
            return NO_EFFECTS
        self._channels_dirty = True
        return ch.on_detached(pm, self.state, now)

    def _on_presence(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        ch = self.channels.get(pm.channel or "")
        return ch.on_presence(pm, self._connection_id) if ch is not None else NO_EFFECTS

    def _on_sync(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        ch = self.channels.get(pm.channel or "")
        return ch.on_sync(pm, self._connection_id) if ch is not None else NO_EFFECTS

    def _on_serial_only(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        ch = self.channels.get(pm.channel or "")
        if ch is not None:
            ch.on_serial_only(pm)
        return NO_EFFECTS
