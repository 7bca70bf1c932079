"""``client.channels``: the realtime channels of one client (RTS1-RTS5).

``get(name, options)`` creates a channel on first use (RTS3a) - the core
channel is created on the loop thread, the facade here - and applies new
options to an existing one (RTS3c); ``get_derived(name, filter)`` names a
filtered view ``[filter=<base64>]name`` (RTS5); ``exists``/``in``,
``iterate``/iteration and ``release`` (detach, then forget, RTS4a).
Thread-safe.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ably_bridge.encoding.payload import DeltaContext
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.events import ChannelState
from ably_bridge.realtime.channel import ChannelOptions, RealtimeChannel
from ably_bridge.realtime.delivery import ChannelEvents
from ably_bridge.rest.channel_registry import ChannelRegistry

if TYPE_CHECKING:
    from ably_bridge.protocol.channel import ChannelCore
    from ably_bridge.realtime.client import AblyRealtime

__all__ = ["Channels"]


OptionsArg = ChannelOptions | Mapping[str, Any] | None


class Channels(ChannelRegistry[RealtimeChannel]):
    """The channels of a realtime client; see the module docstring."""

    def __init__(self, client: AblyRealtime) -> None:
        super().__init__()
        self._client = client
        self._loop = client._loop

    def get(self, name: str, options: OptionsArg = None, **kwargs: Any) -> RealtimeChannel:
        """The channel ``name``; ``options`` (or ``cipher=``/``params=``/``modes=``) apply."""
        if not isinstance(name, str) or not name:
            raise AblyException(
                "a channel name must be a non-empty string", ErrorCode.INVALID_CHANNEL_NAME, 400
            )
        opts = ChannelOptions.coerce(options)
        if kwargs:
            opts = ChannelOptions(**{**(vars(opts) if opts else {}), **kwargs})
        with self._lock:
            channel = self._channels.get(name)
            if channel is None:
                channel = self._create(name, opts)
                self._channels[name] = channel
                return channel
        if opts is not None:
            if channel.would_reattach(opts):  # RTS3c1
                raise AblyException(
                    f"new params or modes for the attached channel {name!r} need a re-attach: "
                    "use channel.set_options",
                    ErrorCode.BAD_REQUEST,
                    400,
                )
            channel.set_options(opts)  # RTS3c
        return channel

    def _create(self, name: str, opts: ChannelOptions | None) -> RealtimeChannel:
        cipher = opts.cipher_object() if opts else None
        params = dict(opts.params or {}) if opts else {}
        modes = opts.mode_flags() if opts else 0
        decode = opts.decode if opts is not None else True
        decoder = self._client.options.vcdiff_decoder
        delivery = self._loop.delivery
        events = ChannelEvents(name, delivery.dispatcher, cipher, decode, decoder, delivery.log)
        if "delta" in params:
            events.delta = DeltaContext(decoder)
        conn = self._loop.core

        def create(now: float) -> ChannelCore:
            core = conn.channel(name, params=params, modes=modes)
            if opts is not None:  # a channel recovered from a key exists already (RTN16j)
                core.requested_params = params
                core.requested_modes = modes
            delivery.channels[name] = events
            return core

        core = self._loop.run_sync(create)
        return RealtimeChannel(self._client, core, events, opts)

    def get_derived(self, name: str, filter: str, options: OptionsArg = None) -> RealtimeChannel:
        """A derived channel: ``name`` filtered by the JMESPath expression ``filter`` (RTS5a)."""
        if name.startswith("["):
            raise AblyException(
                "a derived channel cannot be made from a qualified channel name",
                ErrorCode.INVALID_CHANNEL_NAME,
                400,
            )
        encoded = base64.b64encode(filter.encode("utf-8")).decode("ascii")  # RTS5a1
        return self.get(f"[filter={encoded}]{name}", options)

    def channel_serials(self) -> dict[str, str]:
        """``{name: channelSerial}`` of the attached channels: what a recovery key carries (RTN16g).

        With :class:`~ably_bridge.protocol.recovery.RecoveryKeyContext` a caller can
        build its own recovery key; the ``recover`` option applies the serials (RTN16j).
        """
        conn = self._loop.core
        return self._loop.run_sync(lambda now: conn.channel_serials())

    def release(self, name: str, timeout: float | None = None) -> None:
        """Detach (if attached) and forget ``name`` (RTS4a); unknown names are ignored."""
        channel = self._forget(name)
        if channel is None:
            return
        if channel.state in (ChannelState.ATTACHED, ChannelState.ATTACHING):
            try:
                channel.detach(timeout)
            except AblyException as exc:
                self._client.log.info("detach before release of %r failed: %s", name, exc.message)
        conn, delivery = self._loop.core, self._loop.delivery

        def forget(now: float) -> None:
            conn.release(name)
            delivery.channels.pop(name, None)

        self._loop.run_sync(forget)
