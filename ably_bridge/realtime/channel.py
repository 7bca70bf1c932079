"""One realtime channel: attach/detach, publish, subscribe, history, and its state.

:class:`RealtimeChannel` is a thread-safe facade. It reads the channel's core
(:class:`~ably_bridge.protocol.channel.ChannelCore`) directly and posts every
change to the loop thread. Blocking calls (``attach``, ``detach``,
``publish``) wait with a timeout, default ``realtime_request_timeout``;
``publish_async`` takes a completion callback instead.

Continuity (what the bridge needs): a channel state change with
``current == ATTACHED`` (event ``attached`` or ``update``) and
``resumed == False`` means the server attached from a new point, so messages
may have been missed since the last one received. :meth:`on_continuity_lost`
calls a listener exactly then; read :meth:`history` with ``until_attach=True``
back to your checkpoint to fill the gap. The very first attach counts too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ably_bridge.encoding.crypto import ChannelCipher, CipherParams, get_cipher
from ably_bridge.encoding.payload import DeltaContext
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.actions import ChannelMode, modes_to_flags
from ably_bridge.protocol.events import ChannelEvent, ChannelState, ChannelStateChange
from ably_bridge.protocol.models import Message
from ably_bridge.protocol.publish_rules import check_client_ids, check_total_size
from ably_bridge.realtime.delivery import BACKGROUND, AsyncCompletion
from ably_bridge.realtime.presence import RealtimePresence
from ably_bridge.rest.channels import Channel as RestChannel
from ably_bridge.rest.channels import PublishResult

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ably_bridge.protocol.channel import ChannelCore
    from ably_bridge.protocol.events import Effect
    from ably_bridge.realtime.client import AblyRealtime
    from ably_bridge.realtime.delivery import ChannelEvents
    from ably_bridge.rest.pagination import PaginatedResult

__all__ = ["ChannelOptions", "ChannelProperties", "RealtimeChannel"]


_CS = ChannelState
_IMPLICIT_ATTACH = frozenset({_CS.INITIALIZED, _CS.DETACHING, _CS.DETACHED})  # RTL7g
CipherArg = ChannelCipher | CipherParams | Mapping[str, Any] | bytes | str | None
MessageListener = Callable[[Message], Any]
StateListener = Callable[[ChannelStateChange], Any]


@dataclass(frozen=True)
class ChannelOptions:
    """Options of a realtime channel (TB2): cipher (RSL5), params (RTL4k), modes (RTL4l).

    ``decode=False`` delivers messages and presence members as they arrived, with
    their ``encoding`` still to undo (for consumers that decode later themselves,
    like the bridge's ``data: encoded`` routes); the cipher then only encrypts
    what this client publishes.
    """

    cipher: CipherArg = None
    params: Mapping[str, str] | None = None
    modes: Iterable[ChannelMode | str] | None = field(default=None)
    decode: bool = True

    @classmethod
    def coerce(cls, value: ChannelOptions | Mapping[str, Any] | None) -> ChannelOptions | None:
        if value is None or isinstance(value, ChannelOptions):
            return value
        return cls(**dict(value))

    def cipher_object(self) -> ChannelCipher | None:
        if self.cipher is None or isinstance(self.cipher, ChannelCipher):
            return self.cipher
        return get_cipher(self.cipher)

    def mode_flags(self) -> int:
        return modes_to_flags(self.modes) if self.modes else 0


@dataclass(frozen=True)
class ChannelProperties:
    """RTL15: ``attach_serial`` (RTL15a) and ``channel_serial`` (RTL15b), a snapshot."""

    attach_serial: str | None
    channel_serial: str | None


def _listener_args(args: tuple[Any, ...]) -> tuple[Any, Callable[..., Any]]:
    """``(listener)`` or ``(event_or_events, listener)``."""
    if len(args) == 1 and callable(args[0]):
        return None, args[0]
    if len(args) == 2 and callable(args[1]):
        event = args[0]
        if isinstance(event, (list, tuple, set, frozenset)):
            return list(event), args[1]
        return event, args[1]
    raise TypeError("expected (listener) or (event, listener)")


def _state_event(event: Any) -> Any:
    if event is None or isinstance(event, ChannelEvent):
        return event
    if isinstance(event, str):
        return ChannelEvent(event)
    return [ChannelEvent(e) for e in event]


class RealtimeChannel:
    """A realtime channel (RTL); see the module docstring."""

    def __init__(
        self,
        client: AblyRealtime,
        core: ChannelCore,
        events: ChannelEvents,
        options: ChannelOptions | None = None,
    ) -> None:
        self.name = core.name
        self._client = client
        self._loop = client._loop
        self._core = core
        self._events = events
        self.options = options or ChannelOptions()
        self.presence = RealtimePresence(self, client, core, events)
        self._mode_warned: dict[ChannelMode, str | None] = {}  # RTL7i2: attach serial warned

    # -- reads ----------------------------------------------------------------------
    @property
    def state(self) -> ChannelState:
        return self._core.state

    @property
    def error_reason(self) -> AblyException | None:
        return self._core.error_reason

    @property
    def modes(self) -> ChannelMode:
        """Modes granted by the last ATTACHED (RTL4m)."""
        return self._core.modes

    @property
    def params(self) -> dict[str, str]:
        """Params accepted by the last ATTACHED (RTL4k1)."""
        return dict(self._core.params)

    @property
    def properties(self) -> ChannelProperties:
        core = self._core
        return ChannelProperties(core.attach_serial, core.channel_serial)

    @property
    def attach_serial(self) -> str | None:
        """``properties.attach_serial`` (RTL15a) without the snapshot, for a check per frame."""
        return self._core.attach_serial

    @property
    def cipher(self) -> ChannelCipher | None:
        return self._events.cipher

    # -- state listeners ------------------------------------------------------------
    def on(self, *args: Any) -> Callable[[], None]:
        """``on(listener)`` or ``on(event | [events], listener)`` for state changes; returns off."""
        event, listener = _listener_args(args)
        return self._events.state.on(_state_event(event), listener)

    def once(self, *args: Any) -> Callable[[], None]:
        event, listener = _listener_args(args)
        return self._events.state.once(_state_event(event), listener)

    def off(self, event: Any = None, listener: StateListener | None = None) -> None:
        """Remove state listeners: all, those of ``event`` (one or several), or ``listener``."""
        if callable(event) and listener is None:
            event, listener = None, event
        self._events.state.off(_state_event(event), listener)

    def on_continuity_lost(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener`` when the channel (re)attaches without continuity; returns off."""

        def check(change: ChannelStateChange) -> None:
            if change.current == _CS.ATTACHED and not change.resumed:
                listener(change)

        return self._events.state.on([ChannelEvent.ATTACHED, ChannelEvent.UPDATE], check)

    # -- attach / detach (RTL4, RTL5) ----------------------------------------------------------
    def attach(self, timeout: float | None = None) -> None:
        """Attach and wait for ATTACHED (RTL4)."""
        core, name = self._loop.core, self.name
        self._loop.call(
            lambda f, now: core.attach(name, f, now), self._timeout(timeout), f"attach of {name!r}"
        )

    def detach(self, timeout: float | None = None) -> None:
        """Detach and wait for DETACHED (RTL5)."""
        core, name = self._loop.core, self.name
        self._loop.call(
            lambda f, now: core.detach(name, f, now), self._timeout(timeout), f"detach of {name!r}"
        )

    def _attach_in_background(self) -> None:
        core, name = self._loop.core, self.name
        self._loop.post(lambda now: core.attach(name, BACKGROUND, now))

    def _attach_for(
        self,
        off: Callable[[], None],
        *,
        attach: bool,
        wait: bool,
        timeout: float | None,
        mode: ChannelMode,
    ) -> None:
        """The implicit attach of ``subscribe`` (RTL7g, RTP6d), waited for unless ``wait=False``.

        On failure the listener is removed again (``off``) before the error is
        raised, as the Go SDK does, so that a retried ``subscribe`` does not
        register it twice (the spec keeps it registered).
        """
        if not attach:
            return  # RTL7h, RTP6e
        if not wait:
            if self._core.state in _IMPLICIT_ATTACH:
                self._attach_in_background()
            return
        if self._core.state != _CS.ATTACHED:
            try:
                self.attach(timeout)
            except BaseException:
                off()
                raise
        self._check_mode(off, mode)

    def _check_mode(self, off: Callable[[], None], mode: ChannelMode) -> None:
        """RTL7i, RTP11f: attached without ``mode``, the server never delivers to the listener."""
        core = self._core
        if core.state != _CS.ATTACHED or core.modes & mode:
            return  # RTL7i3
        what = "presence_subscribe" if mode == ChannelMode.PRESENCE_SUBSCRIBE else "subscribe"
        code = (
            ErrorCode.PRESENCE_SUBSCRIBE_MODE_NOT_ENABLED
            if mode == ChannelMode.PRESENCE_SUBSCRIBE
            else ErrorCode.SUBSCRIBE_MODE_NOT_ENABLED
        )
        error = AblyException(
            f"channel {self.name!r} is attached without the {what} mode: "
            "the server will not deliver to this listener",
            code,
            400,
        )
        if self._client.options.strict_mode:  # RTL7i1
            off()
            raise error
        serial = core.attach_serial
        if self._mode_warned.get(mode) != serial:  # RTL7i2: once per attachment (TO3r2)
            self._mode_warned[mode] = serial
            self._client.log.error(
                "%s (%d); strict_mode=True makes this raise", error.message, error.code
            )

    # -- publish (RTL6) ----------------------------------------------------------------
    def publish(
        self,
        name: str | Message | Sequence[Message] | None = None,
        data: Any = None,
        *,
        extras: Mapping[str, Any] | None = None,
        client_id: str | None = None,
        id: str | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> PublishResult:
        """Publish one message or many (one ProtocolMessage, RTL6i) and wait for the ACK."""
        batch = self._encode(name, data, extras, client_id, id)
        core, channel = self._loop.core, self.name
        wire_params = dict(params) if params else None
        result: PublishResult = self._loop.call(
            lambda f, now: core.publish(channel, batch, f, now, wire_params),
            self._timeout(timeout),
            f"publish to {channel!r}",
        )
        return result

    def publish_async(
        self,
        name: str | Message | Sequence[Message] | None = None,
        data: Any = None,
        callback: Callable[[AblyException | None], Any] | None = None,
        *,
        extras: Mapping[str, Any] | None = None,
        client_id: str | None = None,
        id: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        """Publish without waiting; ``callback(error or None)`` runs later, in order."""
        batch = self._encode(name, data, extras, client_id, id)
        core, channel = self._loop.core, self.name
        wire_params = dict(params) if params else None
        handle: object = BACKGROUND
        if callback is not None:
            handle = AsyncCompletion(
                lambda error, _value: callback(error), self._loop.delivery.completions
            )
        self._loop.post(lambda now: core.publish(channel, batch, handle, now, wire_params))

    def _encode(
        self,
        name: str | Message | Sequence[Message] | None,
        data: Any,
        extras: Mapping[str, Any] | None,
        client_id: str | None,
        msg_id: str | None,
    ) -> list[Message]:
        if isinstance(name, Message):
            batch = [name]
        elif isinstance(name, Sequence) and not isinstance(name, str):
            batch = list(name)
        else:
            extra = dict(extras) if extras is not None else None
            batch = [Message(name, data, id=msg_id, client_id=client_id, extras=extra)]
        if not batch or not all(isinstance(m, Message) for m in batch):
            raise AblyException("publish takes a name and data, or Messages", 40000, 400)
        check_client_ids(batch, self._client.client_id)  # RTL6g
        check_total_size(batch, self._max_message_size())  # RTL6d, TO3l8
        cipher = self._events.cipher
        return [m.encoded(cipher) for m in batch]  # RSL4, RSL5

    def _max_message_size(self) -> int:
        details = self._loop.core.details
        return (
            details.max_message_size
            if details is not None
            else self._client.options.max_message_size
        )

    # -- subscribe (RTL7, RTL8) ------------------------------------------------------------
    def subscribe(
        self,
        *args: Any,
        attach: bool = True,
        wait: bool = True,
        timeout: float | None = None,
        inline: bool = False,
    ) -> Callable[[], None]:
        """``subscribe(listener)``, ``subscribe(name, listener)``, ``subscribe([names], listener)``.

        Registers the listener, then attaches the channel (RTL7g) and waits until
        it is ATTACHED, so every message published after this returns reaches the
        listener. If the attach fails or ``timeout`` (default
        ``realtime_request_timeout``) passes, the listener is removed and the
        error raised (the channel's error, e.g. 40160 for a missing capability;
        50003 for the timeout). Attached without the subscribe mode, it logs an
        error, or raises 90009 with ``strict_mode`` (RTL7i).

        ``attach=False`` neither attaches nor waits (RTL7h); ``wait=False``
        starts the attach in the background and returns at once (to attach many
        channels in parallel). ``inline=True`` calls the listener on the thread
        that read the message instead of the callback pool: no thread wake-up
        per message, but the listener must be quick and must not block
        (blocking client calls from it raise 40000; ``publish_async`` is fine).
        Returns a callable that unsubscribes.
        """
        event, listener = _listener_args(args)
        off = self._events.messages.on(event, listener, inline=inline)
        self._attach_for(off, attach=attach, wait=wait, timeout=timeout, mode=ChannelMode.SUBSCRIBE)
        return off

    def subscribe_batch(
        self,
        listener: Callable[[list[Message]], Any],
        *,
        attach: bool = True,
        wait: bool = True,
        timeout: float | None = None,
        inline: bool = False,
    ) -> Callable[[], None]:
        """Call ``listener`` with each inbound frame's messages as one ``list[Message]``.

        The batch form of ``subscribe(listener)`` for high message rates: one
        call (one hand-over to the callback pool) per ``MESSAGE`` frame instead
        of one per message. Every message is included, whatever its name, in
        the order received; the listener sees its batches one at a time and in
        order (the same contract as ``subscribe``), never an empty one.
        Payloads are decoded as for ``subscribe``. All batch listeners of the
        channel get the same list: do not change it (copy it to keep it).
        An exception in the listener is logged; it drops that batch for that
        listener only. Attaches and waits as :meth:`subscribe` does (``attach``,
        ``wait``, ``timeout`` and ``inline`` as there). Returns a callable that
        unsubscribes; ``unsubscribe()`` and ``unsubscribe(listener)`` remove
        batch listeners too.
        """
        if not callable(listener):
            raise TypeError("listener must be callable")
        off = self._events.batches.on(None, listener, inline=inline)
        self._attach_for(off, attach=attach, wait=wait, timeout=timeout, mode=ChannelMode.SUBSCRIBE)
        return off

    def unsubscribe(self, *args: Any) -> None:
        """``unsubscribe()``, ``unsubscribe(listener)``, ``unsubscribe(name, listener)`` (RTL8).

        The first two also remove listeners added with :meth:`subscribe_batch`.
        """
        if not args:
            self._events.messages.off()
            self._events.batches.off()
            return
        if len(args) == 1 and callable(args[0]):
            self._events.batches.off(None, args[0])
        event, listener = _listener_args(args) if callable(args[-1]) else (args[0], None)
        if isinstance(event, list):
            for name in event:
                self._events.messages.off(name, listener)
        else:
            self._events.messages.off(event, listener)

    # -- history (RTL10) ---------------------------------------------------------------
    def history(
        self,
        start: Any = None,
        end: Any = None,
        direction: str | None = None,
        limit: int | None = None,
        *,
        until_attach: bool = False,
    ) -> PaginatedResult[Message]:
        """Stored messages (RTL10) via REST; ``until_attach`` stops at the attach point (RTL10b)."""
        params: dict[str, str] = {}
        if until_attach:
            core = self._core
            if core.state != _CS.ATTACHED or core.attach_serial is None:
                raise AblyException(
                    "history(until_attach=True) needs an attached channel",
                    ErrorCode.BAD_REQUEST,
                    400,
                )
            params["fromSerial"] = core.attach_serial
        rest_channel = RestChannel(self._client.rest, self.name, self._events.cipher, params)
        return rest_channel.history(start, end, direction, limit)

    # -- options -----------------------------------------------------------------------
    def set_options(
        self, options: ChannelOptions | Mapping[str, Any], timeout: float | None = None
    ) -> None:
        """Replace the cipher, params and modes (RTL16).

        On an attached (or attaching) channel, new params or modes are sent in a
        new ATTACH and this waits for the server's ATTACHED (RTL16a); the granted
        ones are then in ``params`` and ``modes``. That wait is refused (40000)
        from an inline listener; anything else applies at once.
        """
        opts = ChannelOptions.coerce(options) or ChannelOptions()
        cipher = opts.cipher_object()
        params = dict(opts.params or {})
        modes = opts.mode_flags()
        core, name, events = self._loop.core, self.name, self._events

        def take(now: float) -> None:
            events.cipher = cipher
            if "delta" in params and events.delta is None:
                events.delta = DeltaContext(events.vcdiff_decoder)  # RTL19: keep bases now

        def apply(now: float) -> bool:
            """Take the options unless they need a re-attach; True if they do."""
            if self.would_reattach(opts):
                return True
            take(now)
            core.set_channel_options(name, params, modes, BACKGROUND, now)
            return False

        def reattach(future: Future[Any], now: float) -> Sequence[Effect]:
            take(now)
            return core.set_channel_options(name, params, modes, future, now)

        if self._loop.run_sync(apply):
            self._loop.call(reattach, self._timeout(timeout), f"set_options of {name!r}")
        self.options = opts

    def would_reattach(self, options: ChannelOptions) -> bool:
        """Whether :meth:`set_options` with ``options`` re-attaches the channel (RTL16a)."""
        core = self._core
        return core.state in (_CS.ATTACHED, _CS.ATTACHING) and (
            dict(options.params or {}) != core.requested_params
            or options.mode_flags() != core.requested_modes
        )

    def _timeout(self, timeout: float | None) -> float:
        return self._client.options.realtime_request_timeout if timeout is None else timeout

    def __repr__(self) -> str:
        return f"RealtimeChannel(name={self.name!r}, state={self.state.value})"
