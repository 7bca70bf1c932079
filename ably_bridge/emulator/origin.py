"""Who may talk to the emulator from a browser: Host, Origin and Sec-Fetch-Site checks.

The emulator is a development server without TLS or real accounts. A web page
the developer happens to open must not drive it: neither its admin API
(``/_emulator``: faults, connection lists), which has no credentials at all,
nor its realtime endpoint. Browsers label their requests, so:

* the ``Host`` header must name the machine by an IP literal, ``localhost``
  (or a ``*.localhost`` name), the address the emulator was started on, or a
  host of an allowed origin; a DNS name that merely resolves to 127.0.0.1
  (DNS rebinding) is refused;
* an ``Origin`` header, when present, must be a loopback page (any port:
  ``http://localhost:3000`` for a dev server), a page on the host the request
  was addressed to, or one listed in ``EmulatorConfig.allowed_origins``;
  ``null`` (sandboxed frames, ``file:`` pages) only when listed;
* for the admin API a ``Sec-Fetch-Site: cross-site`` request is refused too.

Clients outside a browser (ably-js in Node, our client, curl) send no
``Origin`` and pass. Refusals are 40300 with HTTP 403.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from urllib.parse import urlsplit

from ably_bridge.emulator.errors import error


def _ip(hostname: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(hostname.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def is_loopback(hostname: str) -> bool:
    """``localhost``, ``*.localhost``, 127.0.0.0/8 or ::1."""
    name = hostname.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = _ip(name)
    return address is not None and address.is_loopback


def host_of(host_header: str) -> str:
    """The hostname part of a ``Host`` header (brackets of IPv6 literals removed)."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(host_header: str | None, bind_host: str, allowed_origins: Collection[str]) -> bool:
    """Is the request addressed to this machine by a name no web page can rebind?"""
    if not host_header:
        return True  # HTTP/1.0 clients; browsers always send Host
    hostname = host_of(host_header)
    if is_loopback(hostname) or _ip(hostname) is not None:
        return True
    if hostname == bind_host.lower():
        return True
    return any(urlsplit(o).hostname == hostname for o in allowed_origins if o != "null")


def origin_allowed(origin: str | None, host_header: str | None, allowed: Collection[str]) -> bool:
    """Is a request carrying ``Origin: origin`` from a page we trust?"""
    if origin is None:
        return True
    if origin in allowed:
        return True
    if origin == "null":
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if is_loopback(parts.hostname):
        return True
    return bool(host_header) and parts.hostname == host_of(host_header or "")


def check(
    *,
    host_header: str | None,
    origin: str | None,
    fetch_site: str | None,
    bind_host: str,
    allowed_origins: Collection[str],
    admin: bool,
) -> None:
    """Raise 40300 (403) unless the request may come from where it says it does."""
    if not host_allowed(host_header, bind_host, allowed_origins):
        raise error(40300, "Host header names neither this machine nor an allowed origin", 403)
    if admin and (fetch_site or "").lower() == "cross-site" and origin not in allowed_origins:
        raise error(40300, "cross-site requests to the emulator's admin API are refused", 403)
    if not origin_allowed(origin, host_header, allowed_origins):
        raise error(40300, "requests from this Origin are refused (see --allow-origin)", 403)
