"""What a connection attempt needs from the options: hosts and websocket query parameters.

* :func:`connection_hosts` - the hosts of one connection sequence: the primary
  first (RTN17i), then the fallbacks in random order (RTN17a, REC2).
* :func:`websocket_params` - the query parameters of the websocket URL (RTN2):
  format, echo, heartbeats, protocol version, credentials, clientId, resume or
  recover, and ``transport_params`` overriding defaults (RTC1f).
* :func:`qualifies_for_fallback` - which attempt failures may move on to a
  fallback host (RSC15l, RTN17f).
* :func:`is_loopback_host` - whether a host is this machine (where a key may
  travel without TLS, RSA1).

Pure functions: the caller passes the random generator and the state they read.
"""

from __future__ import annotations

import ipaddress
import random
from typing import TYPE_CHECKING, Any

from ably_bridge.errors import AblyException

if TYPE_CHECKING:
    from ably_bridge.options import ClientOptions

__all__ = [
    "PROTOCOL_VERSION",
    "connection_hosts",
    "is_loopback_host",
    "qualifies_for_fallback",
    "stringify",
    "websocket_params",
]

PROTOCOL_VERSION = "6"  # CSV2b: the `v` query parameter (RTN2f)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (where plain-HTTP Basic auth is allowed)."""
    bare = host.strip("[]").split("%")[0]
    if bare == "localhost" or bare.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def connection_hosts(options: ClientOptions, rng: random.Random) -> list[str]:
    """Primary host first (RTN17i), then the fallbacks shuffled (RTN17a)."""
    fallbacks = options.fallback_host_list()
    rng.shuffle(fallbacks)
    return [options.realtime_host_name, *fallbacks]


def qualifies_for_fallback(error: AblyException | None) -> bool:
    """RSC15l / RTN17f: network errors and timeouts (status 500) and 500-504 responses."""
    return error is None or 500 <= error.status_code <= 504


def stringify(value: Any) -> str:
    """RTC1f: transport params travel as strings; booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def websocket_params(
    options: ClientOptions,
    *,
    token: str | None,
    heartbeats: bool,
    resume_key: str | None,
    recover_key: str | None,
) -> dict[str, str]:
    """RTN2 query parameters; ``token`` is used when given, else the key (RTN2e)."""
    params = {
        "format": "msgpack" if options.use_binary_protocol else "json",  # RTN2a
        "echo": "true" if options.echo_messages else "false",  # RTN2b
        "heartbeats": "true" if heartbeats else "false",  # RTN23b
        "v": PROTOCOL_VERSION,  # RTN2f
    }
    if token is not None:
        params["accessToken"] = token  # RTN2e
    elif options.key is not None:
        params["key"] = options.key
    if options.client_id is not None:
        params["clientId"] = options.client_id  # RTN2d
    if resume_key is not None:
        params["resume"] = resume_key  # RTN15b1; also from SUSPENDED (RTN14h)
    elif recover_key is not None:
        params["recover"] = recover_key  # RTN16k
    for name, value in (options.transport_params or {}).items():
        params[name] = stringify(value)  # RTC1f: overrides defaults
    return params
