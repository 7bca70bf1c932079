"""Publishing on the connection: send, queue or refuse, and settle on ACK/NACK (RTL6, RTN7, RTN19a).

:class:`Publishing` owns the path of a publish through the core: a message or
presence action is sent at once when CONNECTED, queued while the connection
may still come up (RTL6c2, RTP16b), or refused (RTL6c4, RTP16c); queued frames
are flushed on CONNECTED (RTL3d2 holds presence for a re-attaching channel);
ACK and NACK frames settle them (RTN7a, RTN7b). A failed automatic presence
re-entry is reported as a channel UPDATE instead (RTP17e). The queue itself,
serials and resends are :mod:`ably_bridge.protocol.pending`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.channel import ReenterHandle, connection_state_error
from ably_bridge.protocol.connection.base import (
    NO_EFFECTS,
    SEND_BLOCKED_CHANNEL_STATES,
    ConnectionBase,
)
from ably_bridge.protocol.events import (
    ChannelState,
    CompletePublish,
    ConnectionState,
    Effect,
    Handle,
    SendFrame,
)
from ably_bridge.protocol.models import Message, PresenceMessage, ProtocolMessage
from ably_bridge.protocol.pending import PendingPublish

__all__ = ["Publishing"]

_S = ConnectionState


class Publishing(ConnectionBase):
    """Publishes and their acknowledgements; see the module docstring."""

    def publish(
        self,
        name: str,
        messages: list[Message],
        handle: Handle,
        now: float,
        params: dict[str, str] | None = None,
    ) -> Sequence[Effect]:
        """RTL6: publish ``messages`` (already encoded) as one ProtocolMessage (RTL6i)."""
        ch = self.channels.get(name)
        if ch is not None and ch.state in SEND_BLOCKED_CHANNEL_STATES:  # RTL6c4
            return [CompletePublish(handle, self._channel_state_error(ch))]
        frame = ProtocolMessage(Action.MESSAGE, channel=name, messages=messages, params=params)
        return self._submit(PendingPublish(frame, handle))

    def publish_presence(
        self, name: str, message: PresenceMessage, handle: Handle, now: float
    ) -> Sequence[Effect]:
        """RTP16: send a presence action now, queue it on the channel, or refuse it.

        The facade performs the implicit attach of RTP8d before calling this.
        """
        ch = self.channel(name)
        entry = PendingPublish(
            ProtocolMessage(Action.PRESENCE, channel=name, presence=[message]), handle
        )
        if ch.state == ChannelState.ATTACHED:
            return self._submit(entry)  # RTP16a
        if self.options.queue_messages and ch.state in (
            ChannelState.ATTACHING,
            ChannelState.INITIALIZED,
        ):
            ch.presence_queue.append(entry)  # RTP16b
            return NO_EFFECTS
        return [CompletePublish(handle, self._channel_state_error(ch))]  # RTP16c

    def _submit(self, entry: PendingPublish) -> Sequence[Effect]:
        """RTL6c: send now when CONNECTED, queue when allowed (RTL6c2), else refuse (RTL6c4)."""
        state = self.state
        if state == _S.CONNECTED:
            return [SendFrame(self.queue.send(entry))]
        if self.options.queue_messages and state in (
            _S.INITIALIZED,
            _S.CONNECTING,
            _S.DISCONNECTED,
        ):
            self.queue.enqueue(entry)
            return NO_EFFECTS
        return self._publish_results([CompletePublish(entry.handle, connection_state_error(state))])

    def _flush_queue(self, effects: list[Effect]) -> None:
        """RTL6c2 on CONNECTED; presence for re-attaching channels waits on the channel (RTL3d2)."""
        for entry in self.queue.take_queued():
            frame = entry.frame
            ch = self.channels.get(frame.channel or "")
            if (
                frame.action == Action.PRESENCE
                and ch is not None
                and ch.state == ChannelState.ATTACHING
            ):
                ch.presence_queue.append(entry)
            else:
                effects.append(SendFrame(self.queue.send(entry)))

    def _publish_results(self, done: Sequence[CompletePublish]) -> Sequence[Effect]:
        """Settled publishes for the driver; a failed automatic re-entry is an UPDATE (RTP17e)."""
        effects: list[Effect] = []
        for result in done:
            handle = result.handle
            if not isinstance(handle, ReenterHandle):
                effects.append(result)
            elif result.error is not None and self.state == _S.CONNECTED:
                ch = self.channels.get(handle.channel)
                if ch is not None:
                    effects.extend(ch.reenter_failed(handle.client_id, result.error))
        return effects

    # -- frames: ACK and NACK (RTN7a, RTN7b) -----------------------------------------

    def _on_ack(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        done = self.queue.ack(pm.msg_serial or 0, pm.count or 0, pm.res)
        return self._publish_results(done)

    def _on_nack(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        done = self.queue.nack(pm.msg_serial or 0, pm.count or 0, pm.error)
        return self._publish_results(done)
