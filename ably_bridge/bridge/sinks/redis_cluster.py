"""The Redis Streams sink on a Redis Cluster: each node gets its own pipelined calls.

This module owns :class:`ClusterStreamSink`, the sink for ``redis+cluster://``
and ``rediss+cluster://`` URLs (issue 21). It plans a batch as
:class:`~.redis_streams.RedisStreamSink` does - one group per stream, whose
keys (the stream, its dedup hashes, its fence mirrors) share the stream's hash
slot (:mod:`..redis_keys`) - but puts only the streams of one slot in a script
call (on one node a call takes every stream) - then:

1. looks up the primary that serves each call's slot in the client's slot map;
2. writes every node's calls (and a ``WAIT`` after them with
   ``redis.wait_replicas``) before reading any reply, so a batch over three
   primaries costs one round trip, not three. With the ``redis.raw_pipeline``
   shortcut (:mod:`ably_bridge.shortcuts`) each node's calls are packed and
   written on a connection held from that node's pool; without it each node's
   calls go through its public ``Redis.pipeline(transaction=False)``;
3. gives each call its reply. A node that cannot be reached, or answers
   ``MOVED``, ``ASK``, ``CLUSTERDOWN`` or ``TRYAGAIN`` (a failover or a
   resharding under way), makes its calls *retryable*: the slot map is read
   again and the dispatcher retries them with backoff. Nothing is doubled by a
   retry - a call that ran before its reply was lost finds its dedup marks -
   and nothing is lost beyond what asynchronous replication may lose in a
   failover (docs/delivery-guarantees.md).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, RedisError, ResponseError, TryAgainError

from ably_bridge.bridge.fencing import FENCE_CHECK_LUA, FENCE_MIRROR_LUA
from ably_bridge.bridge.sinks.base import SinkOptions
from ably_bridge.bridge.sinks.redis_streams import (
    _RECONNECT,
    XADD_DEDUP_FENCED_LUA,
    RedisStreamSink,
    ReplicationNotConfirmed,
    ScriptCall,
    retryable_redis_error,
)
from ably_bridge.bridge.sinks.resp import pack_commands

__all__ = ["XADD_DEDUP_MIRROR_LUA", "ClusterStreamSink"]

logger = logging.getLogger(__name__)

# The fenced script with the cluster's fence check (the mirror beside the stream).
XADD_DEDUP_MIRROR_LUA = XADD_DEDUP_FENCED_LUA.replace(FENCE_CHECK_LUA, FENCE_MIRROR_LUA, 1)

# Replies that mean "the slot map changed or is changing": read it again, retry later.
_TOPOLOGY = (AskError, ClusterDownError, TryAgainError)  # MovedError is an AskError


class ClusterStreamSink(RedisStreamSink):
    """Delivers envelopes to Redis Streams on a Redis Cluster (module docstring)."""

    def __init__(self, url: str, options: SinkOptions | None = None, *, client: Any = None) -> None:
        super().__init__(url, options, client=client)
        if self._fencing is not None:
            self._script = XADD_DEDUP_MIRROR_LUA
        self._conns: dict[str, tuple[Any, Any]] = {}  # node name -> (its pool, connection held)

    def __repr__(self) -> str:
        return f"ClusterStreamSink({self._where!r})"

    def retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, _TOPOLOGY) or retryable_redis_error(exc)

    def close(self) -> None:
        for name in list(self._conns):
            self._drop_node(name)
        with contextlib.suppress(RedisError):
            self._client.close()

    def _slot_of(self, stream: str) -> int | None:
        """A call's keys must share one slot: the streams of a slot share a call."""
        return int(key_slot(stream.encode()))

    # -- per node ----------------------------------------------------------------------
    def _pipeline(self, sha: str, calls: list[ScriptCall]) -> list[Any]:
        """Each call's reply (an exception in its place for a failed call or node)."""
        cluster: Any = self._client
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, call in enumerate(calls):
            node = cluster.nodes_manager.get_node_from_slot(key_slot(call.keys[0].encode()))
            by_node.setdefault(node.name, (node, []))[1].append(i)
        replies: list[Any] = [None] * len(calls)
        plans = []
        for name, (node, indexes) in by_node.items():
            commands = [calls[i].command(sha) for i in indexes]
            if self._wait:
                commands.append(("WAIT", self._wait, self._wait_ms))
            plans.append((name, node, indexes, commands))
        stale = False
        if self._raw:
            sent = [(p, self._write(p[0], p[1], p[3])) for p in plans]
            results = [(p, self._read(p[0], conn, len(p[3]))) for p, conn in sent]
        else:
            results = [(p, self._node_pipeline(p[1], p[3])) for p in plans]
        for (_, _, indexes, _), got in results:
            if isinstance(got, BaseException):
                stale = True
                for i in indexes:
                    replies[i] = got
                continue
            stale |= any(isinstance(reply, _TOPOLOGY) for reply in got)
            for i, reply in zip(indexes, self._confirmed(got), strict=True):
                replies[i] = reply
        if stale:
            self._refresh()
        return replies

    def _confirmed(self, got: list[Any]) -> list[Any]:
        """The calls' replies, or the WAIT's shortfall in place of each of them."""
        if not self._wait:
            return got
        got = list(got)
        confirmed = got.pop()
        if isinstance(confirmed, Exception):
            # A node that is a replica by now ("WAIT cannot be used with replica
            # instances"): its calls answered MOVED, and they are retried.
            short = ReplicationNotConfirmed(f"WAIT failed (redis.wait_replicas): {confirmed}")
        elif int(confirmed) < self._wait:
            short = ReplicationNotConfirmed(
                f"{confirmed} of {self._wait} replica(s) confirmed the batch "
                f"within {self._wait_ms} ms (redis.wait_replicas)"
            )
        else:
            return got
        return [r if isinstance(r, Exception) else short for r in got]

    def _write(self, name: str, node: Any, commands: list[tuple[Any, ...]]) -> Any:
        """Send ``commands`` to ``node`` on its held connection; the connection, or the error."""
        held = self._conns.get(name)
        try:
            if held is None:
                node_client = self._client.get_redis_connection(node)  # type: ignore[attr-defined]
                pool = node_client.connection_pool
                held = self._conns[name] = (pool, pool.get_connection())
            conn = held[1]
            conn.send_packed_command(pack_commands(conn, commands))
            return conn
        except _RECONNECT as exc:
            self._drop_node(name)
            return exc

    def _read(self, name: str, conn: Any, count: int) -> list[Any] | BaseException:
        if isinstance(conn, BaseException):
            return conn
        replies: list[Any] = []
        try:
            for _ in range(count):
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # this call's reply; the rest follow
                    replies.append(exc)
        except _RECONNECT as exc:
            self._drop_node(name)
            return exc
        return replies

    def _node_pipeline(
        self, node: Any, commands: list[tuple[Any, ...]]
    ) -> list[Any] | BaseException:
        """The public path: the node's own ``Redis.pipeline(transaction=False)``."""
        client: redis.Redis = self._client.get_redis_connection(node)  # type: ignore[attr-defined]
        pipe = client.pipeline(transaction=False)
        try:
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return list(pipe.execute(raise_on_error=False))
        except _RECONNECT as exc:
            return exc
        finally:
            pipe.reset()

    def _drop_node(self, name: str) -> None:
        held = self._conns.pop(name, None)
        if held is None:
            return
        pool, conn = held
        with contextlib.suppress(RedisError, OSError):
            conn.disconnect()
        with contextlib.suppress(RedisError, OSError, KeyError, ValueError):
            pool.release(conn)

    def _refresh(self) -> None:
        """Read the slot map again (after a failover, MOVED or a lost node)."""
        for name in list(self._conns):
            self._drop_node(name)
        try:
            self._client.nodes_manager.initialize()  # type: ignore[attr-defined]
        except RedisError as exc:  # the cluster is still electing: the retry reads it again
            logger.debug("redis cluster sink %s: slot map not refreshed: %r", self._where, exc)
