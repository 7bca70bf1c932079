"""Checks of the configuration that look at its shape and at values as text.

This module owns what the validating parser asks of a value beyond its type:

* :func:`scan_tree` - one walk over the raw mapping that measures its nesting
  depth and size, and finds every string that holds a credential (a URL with a
  password in any form :func:`~ably_bridge.bridge.secret.url_credentials`
  knows), with its field path. The walk visits a shared YAML node (an alias)
  once, so ``&a``/``*a`` chains cannot make it exponential, and it stops
  descending past :data:`MAX_DEPTH`.
* :func:`url_problem` - what is wrong with a Redis or broker URL (scheme, host,
  port, database number, a ``;`` failover list part by part), never echoing it.
* :func:`host_problem` and :func:`endpoint_problem` - a host name or IP address
  to bind or reach, and an Ably endpoint (a routing policy name or a host).

Limits: :data:`MAX_FILE_BYTES` (read by :mod:`~ably_bridge.bridge.config`),
:data:`MAX_DEPTH`, :data:`MAX_NODES` and :data:`MAX_LIST` items per list.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ably_bridge.bridge.redis_connect import (
    CLUSTER_SCHEMES,
    SENTINEL_SCHEME,
    parse_cluster_url,
    parse_sentinel_url,
)
from ably_bridge.bridge.secret import url_credentials

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_LIST",
    "MAX_NODES",
    "TreeScan",
    "endpoint_problem",
    "host_problem",
    "scan_tree",
    "url_problem",
]

MAX_FILE_BYTES = 1_048_576  # a configuration file larger than 1 MiB is refused
MAX_DEPTH = 16  # mappings and lists inside each other (the format needs 5)
MAX_NODES = 100_000  # values in the whole tree
MAX_LIST = 10_000  # items of one list (routes, channels, targets...)

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_POLICY = re.compile(r"^(?:nonprod:)?[a-z0-9][a-z0-9-]{0,62}$")
_DB = re.compile(r"^/?\d{0,5}$")
_NEXT_URL = re.compile(r";(?=[A-Za-z][A-Za-z0-9+.\-]{0,31}://)")
_HOSTED = ("redis", "rediss", "amqp", "amqps", "pyamqp", "sentinel")


@dataclass(slots=True)
class TreeScan:
    """What :func:`scan_tree` found."""

    depth: int = 0
    nodes: int = 0
    too_deep: str | None = None  # the first path past MAX_DEPTH
    credentials: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


def _join(path: str, key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def scan_tree(raw: Any) -> TreeScan:
    """Depth, size and credentials of a parsed configuration (see the module docstring)."""
    scan = TreeScan()
    seen: set[int] = set()
    stack: list[tuple[Any, str, int]] = [(raw, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        scan.nodes += 1
        scan.depth = max(scan.depth, depth)
        if isinstance(value, str):
            if "://" in value:  # (an "@" alone is common: e-mail addresses in channel names)
                found = url_credentials(value)
                if found:
                    scan.credentials.append((path, found.forms))
            continue
        if not isinstance(value, (Mapping, list)):
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        if depth >= MAX_DEPTH:
            scan.too_deep = scan.too_deep or path or "<top>"
            continue
        if scan.nodes > MAX_NODES:
            continue
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            stack.append((item, _join(path, key), depth + 1))
    scan.credentials.sort()
    return scan


def host_problem(host: str) -> str | None:
    """Why ``host`` is not an IP address or a host name (None when it is one)."""
    text = host
    if not text or any(c.isspace() for c in text):
        return "must be a host name or an IP address without spaces"
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ipaddress.ip_address(bare)
        return None
    except ValueError:
        pass
    if "://" in text or "/" in text:
        return "must be a host name or an IP address, not a URL"
    name = text[:-1] if text.endswith(".") else text
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        return "must be a host name (letters, digits, '-' and '.') or an IP address"
    return None


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` is neither an Ably routing policy name nor a host (REC1)."""
    if "." in endpoint or "::" in endpoint or endpoint == "localhost":
        return host_problem(endpoint)
    if _POLICY.match(endpoint):
        return None
    return "must be a routing policy name (such as main or nonprod:sandbox) or a host name"


def url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why ``url`` is not a usable URL of one of ``schemes`` (never echoes the URL)."""
    parts = _NEXT_URL.split(url)
    for number, part in enumerate(parts, 1):
        problem = _one_url_problem(part.strip(), schemes)
        if problem is not None:
            return problem if len(parts) == 1 else f"URL {number} of {len(parts)}: {problem}"
    if url.split("://", 1)[0].lower() == "sentinel" and "master_name=" not in url:
        # kombu's Sentinel transport takes the primary's name from a transport option
        return "a sentinel:// URL needs ?master_name=NAME (the primary the Sentinels monitor)"
    return None


def _hosts_problem(
    url: str, hosts_of: Callable[[str], Iterable[tuple[str, int]]], what: str
) -> str | None:
    """The first problem of a multi-host URL (``hosts_of`` parses out its hosts), or None."""
    try:
        hosts = hosts_of(url)
    except ValueError as exc:
        return str(exc)
    for host, _ in hosts:
        problem = host_problem(host)
        if problem is not None:
            return f"{what} host {problem}"
    return None


def _one_url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in schemes:
        return f"URL scheme must be one of {', '.join(schemes)}"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    if scheme == SENTINEL_SCHEME:
        return _hosts_problem(url, lambda u: parse_sentinel_url(u).sentinels, "Sentinel")
    if scheme in CLUSTER_SCHEMES:
        return _hosts_problem(url, lambda u: parse_cluster_url(u).nodes, "cluster node")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:  # a bad port, an unclosed IPv6 bracket...
        reason = str(exc).split(":", 1)[0]
        return f"is not a valid URL ({reason})"
    if scheme in _HOSTED:
        if not host:
            return "needs a host"
        problem = host_problem(host)
        if problem is not None:
            return f"host {problem}"
        if port == 0:
            return "port must be 1-65535"
    if scheme in ("redis", "rediss") and not _DB.match(parts.path):
        return "the path must be a database number such as /0"
    if scheme == "unix" and not parts.path:
        return "needs the path of the socket"
    return None
