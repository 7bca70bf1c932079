"""One way to open a Redis client from a URL, Sentinel and Cluster included (issue 21).

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

The Cluster form::

    redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]
    rediss+cluster://...   (TLS)

names any nodes of the cluster; the client (redis-py's ``RedisCluster``) reads
the slot map from them, follows MOVED and ASK, and re-reads the map after a
failover. Key names on a cluster: :mod:`.redis_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
from redis.sentinel import Sentinel

__all__ = [
    "CLUSTER_SCHEMES",
    "SENTINEL_SCHEME",
    "ClusterSpec",
    "SentinelSpec",
    "is_cluster_url",
    "is_sentinel_url",
    "open_redis",
    "parse_cluster_url",
    "parse_sentinel_url",
]

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_DEFAULT_SENTINEL_PORT = 26379
_DEFAULT_REDIS_PORT = 6379


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


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``redis+cluster://`` URL; ``repr`` never shows a password."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def _host_port(
    item: str, default: int = _DEFAULT_SENTINEL_PORT, what: str = "Sentinel"
) -> tuple[str, int]:
    item = item.strip()
    if not item:
        raise ValueError(f"an empty {what} address")
    if item.startswith("["):  # [::1]:26379
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"a {what} address without a host: {item!r}")
    if not port_text:
        return host, default
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"a {what} port must be 1-65535: {item!r}")
    return host, int(port_text)


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return None, None, netloc
    user, colon, secret = userinfo.partition(":")
    return unquote(user) or None, (unquote(secret) if colon else None), hosts


def parse_cluster_url(url: str) -> ClusterSpec:
    """The seed nodes and credentials of a ``redis+cluster://`` (``rediss+cluster://``) URL.

    ``redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]``: any
    reachable nodes of the cluster (port 6379 when none is given); the client
    learns the rest from ``CLUSTER SLOTS``. A cluster has one database, so the
    path is empty or ``/0``. Raises :class:`ValueError` naming what is wrong.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError("not a redis+cluster:// URL")
    netloc, _, tail = rest.partition("/")
    username, password, hosts = _userinfo(netloc)
    nodes = tuple(_host_port(h, _DEFAULT_REDIS_PORT, "cluster node") for h in hosts.split(","))
    path, _, query = tail.partition("?")
    if path not in ("", "0"):
        raise ValueError("a Redis Cluster has one database: the path is empty or /0")
    if query:
        raise ValueError("a redis+cluster:// URL takes no parameters")
    return ClusterSpec(nodes, scheme.lower() == "rediss+cluster", username, password)


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def parse_sentinel_url(url: str) -> SentinelSpec:
    """The Sentinels, service name, database and credentials of ``url``.

    Raises :class:`ValueError` naming what is wrong (never echoing a password).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    netloc, _, tail = rest.partition("/")
    username, password, hosts = _userinfo(netloc)
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
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``,
    ``redis+sentinel://`` or ``redis+cluster://``).

    ``options`` are redis-py connection options (``socket_timeout``, ``retry``,
    ``health_check_interval``...); for Sentinel they apply to the primary's
    connections, and the Sentinels get the same timeouts. For a cluster the
    client is a :class:`redis.cluster.RedisCluster` (typed as ``Redis``: it
    takes the same commands; the few that need care on a cluster check
    :func:`~.redis_keys.is_cluster_client`); ``retry`` is its retry of MOVED,
    ASK, TRYAGAIN and lost nodes, and the other options apply to every node.
    """
    if is_cluster_url(url):
        return _open_cluster(parse_cluster_url(url), options)
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


def _open_cluster(spec: ClusterSpec, options: dict[str, Any]) -> redis.Redis:
    from redis.cluster import ClusterNode, RedisCluster

    nodes = [ClusterNode(host, port) for host, port in spec.nodes]  # type: ignore[no-untyped-call]
    # A RedisCluster stands in for a Redis: it takes the same commands.
    return RedisCluster(  # type: ignore[return-value]
        startup_nodes=nodes,
        username=spec.username,
        password=spec.password,
        ssl=spec.tls,
        **options,
    )
