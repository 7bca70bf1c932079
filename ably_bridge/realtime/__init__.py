"""The synchronous realtime client: a loop thread that owns the protocol core.

Building blocks land one at a time; :mod:`ably_bridge.realtime.emitter` holds
the listener dispatch that keeps user callbacks off the loop and reader threads.
"""
