"""From core effects to listeners and callers: decoding, emitting, settling.

The loop thread hands every listener-facing effect to :class:`ListenerDelivery`, which

* decodes message payloads with the channel's cipher (RSL6, RTL7) - a payload
  that cannot be decoded is delivered with its remaining ``encoding`` and a
  ``decode_error``, and logged, never raised (RSL6b);
* emits connection and channel state changes, messages (by name) and presence
  events (by action) through :class:`~.emitter.EventEmitter`, so listeners run
  on the callback pool with per-listener ordering, never on the loop thread;
  a frame's messages go to each listener as one hand-over (no lock per event, at
  most one submit), and to batch listeners (``subscribe_batch``) as one list;
  a PRESENCE frame's messages go to raw presence listeners
  (``presence.subscribe_raw``) as one list, unfiltered by the presence map;
* settles callers: a :class:`concurrent.futures.Future` handle gets its result
  or exception; an :class:`AsyncCompletion` (``publish_async`` and friends)
  queues its callback on one ordered queue per client.

:class:`ChannelEvents` is the per-channel bundle the facades and this module
share: the cipher, the three emitters and the ``presence.get()`` waiters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ably_bridge.encoding.payload import DeltaContext
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.actions import PresenceAction
from ably_bridge.protocol.events import (
    ChannelState,
    ChannelStateChange,
    CompletePublish,
    ConnectionStateChange,
    DeliverMessages,
    DeliverPresence,
    DeliverRawPresence,
    EmitChannelState,
    EmitConnectionState,
    PresenceSynced,
)
from ably_bridge.protocol.models import Message, PresenceMessage
from ably_bridge.realtime.deltas import decode_frame, has_delta
from ably_bridge.realtime.emitter import CallbackPool, EventEmitter, OrderedQueue
from ably_bridge.rest.channels import PublishResult

if TYPE_CHECKING:
    from ably_bridge.encoding.crypto import ChannelCipher
    from ably_bridge.encoding.payload import VCDiffDecoder

__all__ = ["BACKGROUND", "AsyncCompletion", "ChannelEvents", "ListenerDelivery", "settle"]

_module_log = logging.getLogger(__name__)

BACKGROUND: object = type("Background", (), {"__repr__": lambda self: "BACKGROUND"})()
"""Handle of an operation nobody waits for (an implicit attach); its failure is logged."""

_PRESENCE_EVENTS = {int(a): a.name.lower() for a in PresenceAction}
_BATCH_EVENT = "messages"  # the one event name of ChannelEvents.batches
_RAW_PRESENCE_EVENT = "presence"  # the one event name of ChannelEvents.raw_presence
_NO_SYNC = frozenset({ChannelState.DETACHED, ChannelState.FAILED, ChannelState.INITIALIZED})


class AsyncCompletion:
    """A completion callback ``callback(error, value)`` run in order on the callback pool."""

    __slots__ = ("callback", "queue")

    def __init__(self, callback: Callable[[AblyException | None, Any], Any], queue: Any) -> None:
        self.callback = callback
        self.queue = queue

    def complete(self, error: AblyException | None, value: Any) -> None:
        callback = self.callback
        self.queue.push(lambda: callback(error, value))


def settle(
    handle: object, error: AblyException | None, value: Any, log: logging.Logger | None = None
) -> None:
    """Give a caller its outcome; unknown handles (fire-and-forget) are ignored."""
    if isinstance(handle, Future):
        if handle.done():
            return  # the caller gave up waiting; nobody to tell
        if error is not None:
            handle.set_exception(error)
        else:
            handle.set_result(value)
    elif isinstance(handle, AsyncCompletion):
        handle.complete(error, value)
    elif error is not None and handle is not None:
        (log or _module_log).info("background operation failed: %s (%d)", error.message, error.code)


class ChannelEvents:
    """Listener-facing state of one channel, shared by its facade and :class:`ListenerDelivery`."""

    __slots__ = (
        "batches",
        "cipher",
        "decode",
        "delta",
        "messages",
        "name",
        "presence",
        "raw_presence",
        "state",
        "sync_waiters",
        "vcdiff_decoder",
    )

    def __init__(
        self,
        name: str,
        dispatcher: CallbackPool,
        cipher: ChannelCipher | None,
        decode: bool = True,
        vcdiff_decoder: VCDiffDecoder | None = None,
        log: logging.Logger = _module_log,
    ) -> None:
        self.name = name
        self.cipher = cipher
        self.decode = decode  # False: payloads are delivered as they arrived
        self.vcdiff_decoder = vcdiff_decoder
        # The delta state (RTL19): made when the channel asks for deltas (params
        # ``delta``) or the first delta arrives; until then no payload is kept.
        self.delta: DeltaContext | None = None
        self.state: EventEmitter[ChannelStateChange] = EventEmitter(dispatcher, log)
        self.messages: EventEmitter[Message] = EventEmitter(dispatcher, log)
        # Batch listeners (``subscribe_batch``): one list of messages per frame.
        self.batches: EventEmitter[list[Message]] = EventEmitter(dispatcher, log)
        self.presence: EventEmitter[PresenceMessage] = EventEmitter(dispatcher, log)
        # Raw presence listeners (``presence.subscribe_raw``): one list per PRESENCE frame.
        self.raw_presence: EventEmitter[list[PresenceMessage]] = EventEmitter(dispatcher, log)
        # presence.get() callers waiting for the end of a SYNC (RTP11a), as
        # (future, reader) pairs: the reader runs on the loop thread once synced.
        self.sync_waiters: list[tuple[Future[Any], Callable[[], Any]]] = []

    def fail_sync_waiters(self, error: AblyException) -> None:
        waiters, self.sync_waiters = self.sync_waiters, []
        for future, _ in waiters:
            settle(future, error, None)


def _plain(messages: list[Message]) -> bool:
    """Whether no message of a frame has an ``encoding`` (nothing to decode)."""
    for message in messages:  # noqa: SIM110 (a loop: all() over a generator costs twice as much)
        if message.encoding is not None:
            return False
    return True


def _invoke(fn: Callable[[], Any]) -> None:
    fn()


class ListenerDelivery:
    """Performs the listener-facing effects for the loop thread; see the module docstring."""

    def __init__(self, dispatcher: CallbackPool, log: logging.Logger = _module_log) -> None:
        self.dispatcher = dispatcher
        self.log = log  # the client's logger
        self.connection: EventEmitter[ConnectionStateChange] = EventEmitter(dispatcher, log)
        self.channels: dict[str, ChannelEvents] = {}  # written on the loop thread only
        self.completions = OrderedQueue(_invoke, dispatcher, log)
        self.decode_failures = 0
        # RTL18: called (under the session) when a delta cannot be decoded, with the
        # channel, the channelSerial to re-attach from and the error; set by the loop.
        self.recover: Callable[[str, str | None, AblyException], None] | None = None
        # Internal watchers called on the loop thread itself (they only set events),
        # so a blocking call waiting for a state never needs a free callback worker.
        self._watchers: list[Callable[[ConnectionStateChange], None]] = []
        self._watch_lock = threading.Lock()

    def watch_connection(self, fn: Callable[[ConnectionStateChange], None]) -> Callable[[], None]:
        """Call ``fn`` on the loop thread for each connection change; ``fn`` must not block."""
        with self._watch_lock:
            self._watchers.append(fn)

        def off() -> None:
            with self._watch_lock:
                if fn in self._watchers:
                    self._watchers.remove(fn)

        return off

    # -- connection ---------------------------------------------------------------
    def connection_state(self, effect: EmitConnectionState) -> None:
        change = effect.change
        if self._watchers:
            with self._watch_lock:
                watchers = list(self._watchers)
            for watcher in watchers:
                watcher(change)
        self.connection.emit(change.event, change)

    # -- channels -----------------------------------------------------------------
    def channel_state(self, effect: EmitChannelState) -> None:
        events = self.channels.get(effect.channel)
        if events is None:
            return
        change = effect.change
        if change.current in _NO_SYNC or change.current == ChannelState.SUSPENDED:
            events.fail_sync_waiters(_presence_unavailable(change))
        events.state.emit(change.event, change)

    def messages(self, effect: DeliverMessages) -> None:
        events = self.channels.get(effect.channel)
        if events is None:
            return
        frame = effect.frame
        messages = frame.messages
        delta = events.delta
        # Nothing encoded (the usual frame, and every frame of a bridge): no decoding.
        if not (delta is None and _plain(messages)) and not self._decode(effect, events, delta):
            return  # RTL18: the frame is dropped and the channel re-attaches
        if not messages:
            return
        # The whole frame at once: per listener one hand-over and at most one submit.
        if events.batches.has_listeners():
            events.batches.emit(_BATCH_EVENT, messages)  # the frame's own list: not copied
        if events.messages.has_listeners():
            events.messages.emit_many([(message.name, message) for message in messages])

    def _decode(
        self, effect: DeliverMessages, events: ChannelEvents, delta: DeltaContext | None
    ) -> bool:
        """Decode a frame's payloads for :meth:`messages` (RSL6, RTL19); False: a delta
        failed and the frame is dropped (RTL18)."""
        cipher = events.cipher
        frame = effect.frame
        messages = frame.messages
        if delta is None and has_delta(messages):
            delta = events.delta = DeltaContext(events.vcdiff_decoder)
        if delta is not None:
            channel = effect.channel
            failure = decode_frame(
                messages, delta, cipher, events.decode, lambda e: self._decode_failed(channel, e)
            )
            if failure is not None:
                self._delta_failed(channel, delta, failure)
                return False
            if frame.channel_serial is not None:
                delta.frame_serial = frame.channel_serial
        elif events.decode:
            for message in messages:
                if message.encoding is not None:
                    error = message.decode_in_place(cipher)
                    if error is not None:
                        self._decode_failed(effect.channel, error)
        return True

    def presence(self, effect: DeliverPresence) -> None:
        events = self.channels.get(effect.channel)
        if events is None:
            return
        cipher = events.cipher
        emit = events.presence.emit
        decode = events.decode
        for member in effect.messages:
            decoded = member.decoded(cipher) if decode and member.encoding is not None else member
            if decoded.decode_error is not None:
                self._decode_failed(effect.channel, decoded.decode_error)
            emit(_PRESENCE_EVENTS.get(int(member.action), "unknown"), decoded)

    def raw_presence(self, effect: DeliverRawPresence) -> None:
        events = self.channels.get(effect.channel)
        if events is None or not events.raw_presence.has_listeners():
            return
        messages = effect.messages
        if events.decode:
            cipher = events.cipher
            messages = [m.decoded(cipher) if m.encoding is not None else m for m in messages]
            for member in messages:
                if member.decode_error is not None:
                    self._decode_failed(effect.channel, member.decode_error)
        events.raw_presence.emit(_RAW_PRESENCE_EVENT, messages)

    def presence_synced(self, effect: PresenceSynced) -> None:
        events = self.channels.get(effect.channel)
        if events is None or not events.sync_waiters:
            return
        waiters, events.sync_waiters = events.sync_waiters, []
        for future, reader in waiters:
            if not future.done():
                future.set_result(reader())

    def _delta_failed(self, channel: str, delta: DeltaContext, error: AblyException) -> None:
        self.decode_failures += 1
        then = (
            "the channel fails"
            if error.code == ErrorCode.MISSING_PLUGIN
            else "re-attaching from the last frame decoded"
        )
        self.log.error(
            "a vcdiff delta on %r could not be decoded (%d): %s; %s",
            channel,
            error.code,
            error.message,
            then,
        )
        if self.recover is not None:
            self.recover(channel, delta.frame_serial, error)

    def _decode_failed(self, channel: str, error: AblyException) -> None:
        # RSL6b: delivered with the encoding left in place; logged, never raised.
        self.decode_failures += 1
        self.log.warning("could not decode a payload on %r: %s", channel, error.message)

    # -- callers ------------------------------------------------------------------
    def publish_done(self, effect: CompletePublish) -> None:
        value = None if effect.error is not None else PublishResult(effect.serials or [])
        settle(effect.handle, effect.error, value, self.log)


def _presence_unavailable(change: ChannelStateChange) -> AblyException:
    if change.current == ChannelState.SUSPENDED:  # RTP11d
        return AblyException(
            "presence state is out of sync: the channel is suspended",
            ErrorCode.PRESENCE_STATE_OUT_OF_SYNC,
            400,
            cause=change.reason,
        )
    return AblyException(
        f"channel is {change.current.value}; presence is unavailable",
        ErrorCode.CHANNEL_OPERATION_FAILED_INVALID_CHANNEL_STATE,
        400,
        cause=change.reason,
    )
