"""Tests of the sans-I/O core: wire model and codec, and the realtime cores.

The tree mirrors ``ably_bridge/protocol``: ``connection/`` tests the connection
package, ``test_<module>.py`` the module of that name; ``harness.py`` drives
a :class:`~ably_bridge.protocol.connection.ConnectionCore` for them.

Tests of the realtime cores (connection, channels, presence, publishes) drive
them with explicit ``now`` values and scripted frames: no threads, sockets or
sleeps. Cases ported from the Ably UTS
(``ably/specification`` ``uts/realtime/unit``) name their spec item.

Deliberate deviations from the UTS / spec text:

* RTN15g (UTS "state cleared after connectionStateTtl"): the UTS expects a fresh
  connection without ``resume`` after SUSPENDED; spec 6.1.0 replaced RTN15g by
  RTN14h ("continue to attempt to resume"), which we follow - attempts from
  SUSPENDED still send ``resume``. RTN27d still says otherwise; RTN14h is newer.
* RTL15b1 (UTS "channelSerial cleared on SUSPENDED"): spec 6.1.0 RTL15b2 says the
  serial must be kept on SUSPENDED; we keep it (cleared on DETACHED/FAILED only).
* RTL3c: a DETACHING channel completes its detach (DETACHED) when the connection
  becomes SUSPENDED (ably-js makes it SUSPENDED); the server forgets it anyway.
* RTL3a/RTL3b: like ably-js, SUSPENDED and DETACHING channels also follow the
  connection to FAILED / DETACHED (the spec names ATTACHING and ATTACHED only).
* RTN15h3 / RTN15a: a non-token DISCONNECTED or a dropped transport passes
  through DISCONNECTED (``retry_in`` 0) before the immediate CONNECTING, as
  ably-js does; a token error (RTN15h2) goes straight to CONNECTING.
* RTN14c: the attempt timeout covers each host (and the token fetch) separately.
* Durations, including ``ConnectionStateChange.retry_in``, are seconds.
* Synthesized LEAVEs (RTP19, RTP19a) are stamped with the server timestamp of
  the frame that ended the sync / the ATTACHED frame, since the core reads no
  clock.
* RTP8d implicit attach on presence enter is the facade's job; the core queues
  presence on an INITIALIZED/ATTACHING channel (RTP16b) but does not attach it.
"""
