"""One way to open a Redis client from a URL, Sentinel included (issue 21).

This module owns :func:`open_redis`, :func:`parse_sentinel_url` and
:class:`SentinelSpec`. Every Redis the bridge writes to - the streams sink,
checkpoints, leases, presence snapshots, dead letters - and the tools that read
them open their client here, so that a URL naming a Sentinel group works
wherever a plain ``redis://`` URL does.

The Sentinel form::

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
        [?sentinel_password=...&sentinel_username=...]

* the hosts are the Sentinels (port 26379 when none is given);
* ``service`` is the name the Sentinels monitor (``sentinel monitor <service> ...``);
* the userinfo authenticates to the primary; ``sentinel_password`` (and
  ``sentinel_username``) to the Sentinels, which often have no password.

The client asks the Sentinels for the current primary on every new
connection. After a failover the old primary answers writes with ``READONLY``
or stops answering; redis-py then drops the connection, and the next attempt
(the sinks retry with backoff) reaches the new primary. What a failover can
cost is written in docs/scaling.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
from redis.sentinel import Sentinel

__all__ = ["SENTINEL_SCHEME", "SentinelSpec", "is_sentinel_url", "open_redis", "parse_sentinel_url"]

SENTINEL_SCHEME = "redis+sentinel"
_DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelSpec:
    """A parsed ``redis+sentinel://`` URL; ``repr`` never shows a password."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)


def _host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    if not item:
        raise ValueError("an empty Sentinel address")
    if item.startswith("["):  # [::1]:26379
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"a Sentinel address without a host: {item!r}")
    if not port_text:
        return host, _DEFAULT_SENTINEL_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"a Sentinel port must be 1-65535: {item!r}")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelSpec:
    """The Sentinels, service name, database and credentials of ``url``.

    Raises :class:`ValueError` naming what is wrong (never echoing a password).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    netloc, _, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(h) for h in hosts.split(","))
    path, _, query = tail.partition("?")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ValueError("needs the monitored service name as its path: .../mymaster")
    if len(parts) > 2:
        raise ValueError("the path is /service or /service/db")
    db = 0
    if len(parts) == 2:
        if not (parts[1].isascii() and parts[1].isdigit()):
            raise ValueError("the database after the service name must be a number")
        db = int(parts[1])
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(params) - {"sentinel_password", "sentinel_username"})
    if unknown:
        raise ValueError(f"unknown URL parameter(s): {', '.join(unknown)}")
    return SentinelSpec(
        sentinels=sentinels,
        service=unquote(parts[0]),
        db=db,
        username=username,
        password=password,
        sentinel_username=params.get("sentinel_username") or None,
        sentinel_password=params.get("sentinel_password") or None,
    )


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def open_redis(url: str, **options: Any) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://``).

    ``options`` are redis-py connection options (``socket_timeout``, ``retry``,
    ``health_check_interval``...); for Sentinel they apply to the primary's
    connections, and the Sentinels get the same timeouts.
    """
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    spec = parse_sentinel_url(url)
    sentinel_options: dict[str, Any] = {
        k: options[k] for k in ("socket_timeout", "socket_connect_timeout") if k in options
    }
    if spec.sentinel_password is not None:
        sentinel_options["password"] = spec.sentinel_password
    if spec.sentinel_username is not None:
        sentinel_options["username"] = spec.sentinel_username
    sentinel = Sentinel(list(spec.sentinels), sentinel_kwargs=sentinel_options)
    client: redis.Redis = sentinel.master_for(
        spec.service,
        db=spec.db,
        username=spec.username,
        password=spec.password,
        **options,
    )
    return client
