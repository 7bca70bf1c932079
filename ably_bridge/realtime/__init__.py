"""The synchronous realtime client: a loop thread that owns the protocol core.

Public API: :class:`AblyRealtime` (``connection``, ``channels``, ``auth``,
``time``, ``stats``, ``close``), :class:`Connection`, :class:`Channels`,
:class:`RealtimeChannel` (with :class:`ChannelOptions`,
:class:`ChannelProperties`) and :class:`RealtimePresence`.

Threads: one session per client owns all protocol state (:mod:`.loop`),
stepped under its lock by the client's loop thread or, with the frames it
read, by the thread reading the websocket; short-lived dial/token/close
threads post to the loop (:mod:`.links`); listeners run with per-listener
ordering (:mod:`.emitter`, :mod:`.delivery`) on a callback pool that all
clients in the process share unless ``shared_callback_pool=False``
(:mod:`.dispatcher`), or inline on the reading thread when subscribed with
``inline=True``. Every public method may be called from any thread; blocking
ones take a timeout. docs/architecture.md ("The client") draws the layers, the
threads, the path of a frame from the socket to a listener, and why the design
departs from the first one (a reader thread per process, not per websocket;
the reading thread steps the session; inline listeners).

Deliberate choices:

* On every CONNECTED (resumed or not) attached channels pass through ATTACHING
  (RTL3d). A resumed channel then reports ``attached`` with ``resumed=True``;
  one that lost continuity reports ``attached`` (or ``update`` when already
  attached, RTL12) with ``resumed=False`` - see
  :meth:`RealtimeChannel.on_continuity_lost`.
* Tokens with an expiry are renewed shortly before it (at most 30 s, or 20% of
  the remaining lifetime, earlier) and sent with AUTH (RTC8a), since the server
  only reports expiry afterwards (DISCONNECTED 40142, which is handled too).
* ``connect()`` and ``close()`` block until the state settles unless
  ``wait=False``; ``publish`` blocks for the ACK, ``publish_async`` does not.
* ``RealtimeChannel.set_options`` with new params or modes re-attaches an
  attached channel and blocks until ATTACHED (RTL16a); the channel stays
  ATTACHED meanwhile, and an UPDATE is emitted only if continuity was lost.
"""

from ably_bridge.protocol.events import (
    ChannelEvent,
    ChannelState,
    ChannelStateChange,
    ConnectionEvent,
    ConnectionState,
    ConnectionStateChange,
)
from ably_bridge.protocol.recovery import RecoveryKeyContext, decode_recovery_key
from ably_bridge.realtime.channel import ChannelOptions, ChannelProperties, RealtimeChannel
from ably_bridge.realtime.channels import Channels
from ably_bridge.realtime.client import AblyRealtime, RealtimeAuth
from ably_bridge.realtime.connection import Connection
from ably_bridge.realtime.presence import RealtimePresence

__all__ = [
    "AblyRealtime",
    "ChannelEvent",
    "ChannelOptions",
    "ChannelProperties",
    "ChannelState",
    "ChannelStateChange",
    "Channels",
    "Connection",
    "ConnectionEvent",
    "ConnectionState",
    "ConnectionStateChange",
    "RealtimeAuth",
    "RealtimeChannel",
    "RealtimePresence",
    "RecoveryKeyContext",
    "decode_recovery_key",
]
