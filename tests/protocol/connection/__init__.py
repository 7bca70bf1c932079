"""Tests of ``ably_bridge.protocol.connection``, one file per concern (see the package)."""
