"""The Ably clients of the bridge, built from ``config.ably`` in one place.

This module owns :func:`client_options` (the keyword arguments both clients
take: key, endpoint, port, TLS, protocol), :func:`rest_client` (backfill and
discovery) and :func:`realtime_client` (each realtime connection of
:class:`~ably_bridge.bridge.realtime_source.RealtimeSource`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ably_bridge.bridge.config import BridgeConfig
    from ably_bridge.realtime import AblyRealtime
    from ably_bridge.rest.client import AblyRest

__all__ = ["client_options", "realtime_client", "rest_client"]


def client_options(config: BridgeConfig) -> dict[str, Any]:
    """Client keyword arguments from ``config.ably`` (the key revealed: pass, never log)."""
    ably = config.ably
    options: dict[str, Any] = {"use_binary_protocol": ably.use_binary_protocol, "tls": ably.tls}
    if ably.endpoint:
        options["endpoint"] = ably.endpoint
    if ably.port is not None:
        options["port" if not ably.tls else "tls_port"] = ably.port
    if not ably.tls:
        options["insecure_allow_basic_over_http"] = True
    options["key"] = ably.key.reveal() if ably.key is not None else None
    return options


def rest_client(config: BridgeConfig) -> AblyRest:
    """The REST client for backfill and discovery."""
    from ably_bridge.rest.client import AblyRest

    return AblyRest(**client_options(config))


def realtime_client(config: BridgeConfig, *, callback_workers: int = 8) -> AblyRealtime:
    """A realtime client (one connection) for the channel source."""
    from ably_bridge.realtime import AblyRealtime

    return AblyRealtime(callback_workers=callback_workers, **client_options(config))
