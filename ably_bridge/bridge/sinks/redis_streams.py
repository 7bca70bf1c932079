"""The Redis Streams sink: XADD each event once, de-duplicated atomically.

This module owns :class:`RedisStreamSink` (its Lua scripts are in
:mod:`.stream_scripts`). A batch's events are grouped per target stream, and
one ``EVALSHA`` call carries the groups of every stream (up to
``_MAX_EVENTS_PER_CALL`` events a call; at one message per frame over many
channels a batch touches hundreds of streams, and a call per stream cost more
client and server CPU than the writes). The script, per event:

1. checks the event's dedup mark in its stream's current and previous dedup
   hashes (named by :meth:`ably_bridge.bridge.redis_keys.RedisKeys.stream_dedup`);
2. if unmarked, ``XADD``\\ s it (``MAXLEN ~ n`` when the target trims) and marks
   it with the new entry id;

and refreshes the expiry of each current dedup hash it wrote. A stream whose
key cannot take the write (``WRONGTYPE``) fails alone: the script answers its
error in its place and the other streams' events are written. With shard leases
(``SinkOptions.fencing``) the script is :data:`XADD_DEDUP_FENCED_LUA`: each
event also carries its shard's fencing token, and an event whose token is not
the shard's current one is refused (``FENCED``: another replica owns the
channel now and delivers it from the checkpoint; see :mod:`..fencing`). A script runs
atomically, so an event replayed in the same batch, in a later batch or from
another thread or process is written exactly once while its mark lives.
All the calls of a batch go out in one write on the sink's own
connection: one round trip. (That write is packed here and sent on a connection
held from redis-py's pool - the ``redis.raw_pipeline`` shortcut of
:mod:`ably_bridge.shortcuts`; when it is off, the same calls go through
``Redis.pipeline(transaction=False)``: the same commands, the same entries.)

Field layouts: ``envelope`` (one field, ``envelope`` = the Integrations JSON)
or ``flat`` (:meth:`Envelope.flat_fields`).

Errors: connection problems, timeouts and the server states ``BUSY``,
``LOADING``, ``TRYAGAIN``, ``MASTERDOWN``, ``READONLY``, ``OOM`` and
``NOREPLICAS`` are retryable; anything else the server answers for an event
(``WRONGTYPE``, script errors) is permanent and the event is dead-lettered.
On a Redis Cluster (``redis+cluster://``) the subclass in :mod:`.redis_cluster`
makes one call per hash slot and sends each node its own calls; the key names
put a stream's dedup hashes (and fence mirrors) in the stream's slot
(:mod:`..redis_keys`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from ably_bridge.bridge.config import StreamTarget
from ably_bridge.bridge.dedup import dedup_bucket
from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.bridge.redis_keys import keys_for
from ably_bridge.bridge.secret import redact_text, redact_url
from ably_bridge.bridge.sinks.base import Delivery, Outcome, Result, SinkOptions, render_key
from ably_bridge.bridge.sinks.resp import pack_commands as _pack
from ably_bridge.bridge.sinks.stream_scripts import XADD_DEDUP_FENCED_LUA, XADD_DEDUP_LUA
from ably_bridge.shortcuts import enabled as shortcut_enabled

__all__ = ["XADD_DEDUP_FENCED_LUA", "XADD_DEDUP_LUA", "RedisStreamSink", "retryable_redis_error"]

logger = logging.getLogger(__name__)


class ReplicationNotConfirmed(RedisError):
    """Fewer replicas than ``wait_replicas`` confirmed a batch within ``wait_timeout``.

    The batch is retried: its writes are idempotent (dedup marks), and the next
    WAIT covers them too, since WAIT waits for everything the connection wrote.
    """


_RETRYABLE_REPLIES = ("BUSY", "LOADING", "TRYAGAIN", "MASTERDOWN", "READONLY", "OOM", "NOREPLICAS")
_RETRYABLE_TYPES: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError, AuthenticationError
    redis.exceptions.TimeoutError,
    ReplicationNotConfirmed,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    socket.timeout,
    ConnectionError,
    TimeoutError,
)
_MAX_EVENTS_PER_CALL = 500  # bounds the time one script call holds the server
_KEYS_CACHE_MAX = 20_000  # streams whose dedup key names are kept
# Errors after which the sink's connection is re-established and the calls sent again once.
_RECONNECT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, socket.timeout)


@dataclass(slots=True)
class ScriptCall:
    """One script call: its keys and arguments (:mod:`.stream_scripts`), and per
    group (stream) the stream and the batch indexes of its events, in order."""

    keys: list[str]
    streams: list[str]
    groups: list[list[int]]
    argv: list[Any]
    events: int = 0

    def command(self, sha: str) -> tuple[Any, ...]:
        return ("EVALSHA", sha, len(self.keys), *self.keys, *self.argv)


def _split(indexes: list[int], argv: list[Any], head_len: int) -> list[tuple[list[int], list[Any]]]:
    """A stream's events in runs of at most ``_MAX_EVENTS_PER_CALL`` (indexes, arguments);
    per event: ``head_len`` arguments, the field count n, then n fields (n = 0: one)."""
    parts: list[tuple[list[int], list[Any]]] = []
    start = pos = 0
    for i in range(0, len(indexes), _MAX_EVENTS_PER_CALL):
        chunk = indexes[i : i + _MAX_EVENTS_PER_CALL]
        for _ in chunk:
            pos += head_len + 1 + (int(argv[pos + head_len]) or 1)
        parts.append((chunk, argv[start:pos]))
        start = pos
    return parts


def retryable_redis_error(exc: BaseException) -> bool:
    """Transient (connection, timeout, server busy/loading/failover/OOM) vs permanent."""
    if isinstance(exc, _RETRYABLE_TYPES):
        return True
    if isinstance(exc, ResponseError):
        text = str(exc).lstrip()
        # Errors raised inside a script come back prefixed; look at every word.
        return any(text.startswith(p) or f" {p} " in f" {text} " for p in _RETRYABLE_REPLIES)
    return False


class RedisStreamSink:
    """Delivers envelopes to Redis Streams (``redis://``, ``rediss://``, ``unix://``)."""

    def __init__(
        self,
        url: str,
        options: SinkOptions | None = None,
        *,
        client: redis.Redis | None = None,
    ) -> None:
        self.options = options or SinkOptions()
        self._where = redact_url(url)
        self._wait = self.options.wait_replicas
        self._wait_ms = max(1, round(self.options.wait_timeout * 1000))
        # A WAIT blocks up to its timeout: the socket must outlast it.
        socket_timeout = self.options.socket_timeout
        if self._wait:
            socket_timeout = max(socket_timeout, self.options.wait_timeout + 2.0)
        self._client = client or open_redis(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=self.options.socket_timeout,
            # Fail fast: the bridge's own retry buffer does backoff, not the client.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        self._names = keys_for(self._client, self.options.key_prefix)
        self._keys_cache: dict[str, tuple[int, list[str]]] = {}  # see _stream_keys
        self._sha: str | None = None
        self._conn: Any = None  # held from the client's pool for the script calls
        self._raw = shortcut_enabled("redis.raw_pipeline")
        self._fencing = self.options.fencing
        self._script = XADD_DEDUP_LUA if self._fencing is None else XADD_DEDUP_FENCED_LUA
        self._ttl = max(1.0, float(self.options.dedup_ttl))
        # A mark must outlive its bucket by one more bucket (checked as "previous").
        self._expiry = int(self._ttl * 2) + 60

    def __repr__(self) -> str:
        return f"RedisStreamSink({self._where!r})"

    @property
    def client(self) -> redis.Redis:
        return self._client

    # -- Sink -------------------------------------------------------------------
    def deliver(self, batch: Sequence[Delivery]) -> list[Result]:
        if not batch:
            return []
        results: list[Result | None] = [None] * len(batch)
        calls = self._plan(batch, results)
        if calls:
            try:
                replies = self._run(calls)
            except Exception as exc:  # whole batch: the server is unreachable or refusing
                retry = self.retryable(exc)
                # A retry is logged by the dispatcher (with its delay and attempt); say it
                # here too only when it is permanent, which the dispatcher dead-letters.
                logger.log(
                    logging.DEBUG if retry else logging.WARNING,
                    "redis stream sink %s: batch of %d failed (%s): %s: %s",
                    self._where,
                    len(batch),
                    "will retry" if retry else "permanent",
                    type(exc).__name__,
                    redact_text(" ".join(str(exc).split())),
                )
                outcome = Outcome.RETRY if retry else Outcome.REJECTED
                for call in calls:
                    for group in call.groups:
                        for i in group:
                            results[i] = Result(outcome, error=exc)
            else:
                self._collect(calls, replies, results)
        return [r if r is not None else Result(Outcome.RETRY) for r in results]

    def retryable(self, exc: BaseException) -> bool:
        return retryable_redis_error(exc)

    def healthy(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:  # a probe never raises
            return False

    def close(self) -> None:
        if self._conn is not None:
            self._drop_connection(self._conn)
        with contextlib.suppress(RedisError):
            self._client.close()

    def _drop_connection(self, conn: Any) -> None:
        """Disconnect the sink's connection and give it back to the client's pool."""
        self._conn = None
        with contextlib.suppress(RedisError, OSError):
            conn.disconnect()
        with contextlib.suppress(RedisError, OSError, KeyError, ValueError):
            self._client.connection_pool.release(conn)

    # -- internals -----------------------------------------------------------------
    def _plan(self, batch: Sequence[Delivery], results: list[Result | None]) -> list[ScriptCall]:
        """Group deliveries per stream and the groups into script calls
        (:mod:`.stream_scripts`): on one node every stream of the batch in one call,
        on a cluster one call per hash slot (:meth:`_slot_of`); up to
        ``_MAX_EVENTS_PER_CALL`` events per call."""
        fencing = self._fencing
        head_len = 1 if fencing is None else 3  # mark [, fence index, token] before n
        # (stream, maxlen, approx) -> (batch indexes, argv of its events, token keys)
        groups: dict[tuple[str, int | None, bool], tuple[list[int], list[Any], dict[str, int]]]
        groups = {}
        for i, d in enumerate(batch):
            target = d.target
            if not isinstance(target, StreamTarget):
                results[i] = Result(Outcome.REJECTED, error=ValueError("not a redis_stream target"))
                continue
            env = d.envelope
            stream = render_key(target.key, env)
            gkey = (stream, target.maxlen, target.approximate)
            group = groups.get(gkey)
            if group is None:
                group = groups[gkey] = ([], [], {})
            indexes, argv, tokens = group
            indexes.append(i)
            argv.append(env.route_key)  # (= stream_dedup_field(env.rule_id, env.dedup_key))
            if fencing is not None:
                fence = d.fence
                if fence is None:
                    argv.extend((0, 0))
                else:
                    argv.append(tokens.setdefault(fence.key, len(tokens) + 1))
                    argv.append(fence.token)
            if target.layout == "flat":
                fields = env.flat_fields()
                argv.append(len(fields) * 2)
                for name, value in fields.items():
                    argv.append(name)
                    argv.append(value)
            else:
                argv.append(0)  # (the envelope layout: one field, "envelope")
                argv.append(env.to_json())
        return self._calls(groups, head_len)

    def _calls(
        self,
        groups: dict[tuple[str, int | None, bool], tuple[list[int], list[Any], dict[str, int]]],
        head_len: int,
    ) -> list[ScriptCall]:
        """Pack the stream groups into calls: a group longer than a call is split (its
        events' argument runs are variable length, so they are walked)."""
        bucket = dedup_bucket(self.options.clock.time(), self._ttl)
        open_calls: dict[int | None, ScriptCall] = {}  # slot (None: one node) -> the call filling
        calls: list[ScriptCall] = []
        for (stream, maxlen, approx), (indexes, argv, tokens) in groups.items():
            group_keys = self._stream_keys(stream, bucket)
            if tokens:
                group_keys = group_keys + [self._names.stream_fence(stream, k) for k in tokens]
            slot = self._slot_of(stream)
            head = (maxlen or 0, "1" if approx else "0")
            if len(indexes) <= _MAX_EVENTS_PER_CALL:
                parts = [(indexes, argv)]
            else:
                parts = _split(indexes, argv, head_len)
            for chunk, args in parts:
                call = open_calls.get(slot)
                if call is None or call.events + len(chunk) > _MAX_EVENTS_PER_CALL:
                    call = open_calls[slot] = ScriptCall([], [], [], [self._expiry])
                    calls.append(call)
                call.argv.extend((len(call.keys) + 1, *head, len(args)))
                call.argv.extend(args)
                call.keys.extend(group_keys)
                call.groups.append(chunk)
                call.streams.append(stream)
                call.events += len(chunk)
        return calls

    def _stream_keys(self, stream: str, bucket: int) -> list[str]:
        """``[stream, current dedup hash, previous dedup hash]`` (kept per stream while
        its bucket lasts: the same few thousand streams recur in every batch)."""
        hit = self._keys_cache.get(stream)
        if hit is not None and hit[0] == bucket:
            return hit[1]
        names = self._names
        keys = [stream, names.stream_dedup(stream, bucket), names.stream_dedup(stream, bucket - 1)]
        if len(self._keys_cache) >= _KEYS_CACHE_MAX:
            self._keys_cache.clear()
        self._keys_cache[stream] = (bucket, keys)
        return keys

    def _slot_of(self, stream: str) -> int | None:
        """The calls a stream may share: on one node any (None); a cluster splits by slot."""
        return None

    def _load(self) -> str:
        self._sha = str(self._client.script_load(self._script))
        return self._sha

    def _run(self, calls: list[ScriptCall]) -> list[Any]:
        sha = self._sha or self._load()
        replies = self._pipeline(sha, calls)
        if any(isinstance(r, NoScriptError) for r in replies):
            # The server restarted or flushed its script cache: load and redo those calls.
            # Calls that ran are idempotent (dedup marks), so redoing all is safe too.
            sha = self._load()
            redo = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            again = self._pipeline(sha, [calls[i] for i in redo])
            for i, reply in zip(redo, again, strict=True):
                replies[i] = reply
        return replies

    def _pipeline(self, sha: str, calls: list[ScriptCall]) -> list[Any]:
        """The calls' replies (an error reply in its place), replicated if configured.

        With ``wait_replicas`` a WAIT follows the calls in the same write; fewer
        confirmations than asked raise :class:`ReplicationNotConfirmed` (retried).
        """
        commands = [call.command(sha) for call in calls]
        if self._wait:  # in the same write: it costs the replication delay, not a round trip
            commands.append(("WAIT", self._wait, self._wait_ms))
        replies = self._send(commands) if self._raw else self._public_pipeline(commands)
        if self._wait:
            confirmed = replies.pop()
            if isinstance(confirmed, Exception):
                raise confirmed
            if int(confirmed) < self._wait:
                raise ReplicationNotConfirmed(
                    f"{confirmed} of {self._wait} replica(s) confirmed the batch "
                    f"within {self._wait_ms} ms (redis.wait_replicas)"
                )
        return replies

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """``commands`` as one pipelined write on the sink's own connection.

        Without redis-py's ``Pipeline`` (whose per-call bookkeeping costs as
        much CPU as the round trip itself when a batch is one event); a broken
        connection is replaced and the commands sent once more (as the client's
        retry would: the scripts are idempotent).
        """
        for attempt in (1, 2):
            conn = self._conn
            if conn is None:
                conn = self._conn = self._client.connection_pool.get_connection()
            try:
                conn.send_packed_command(_pack(conn, commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except ResponseError as exc:  # this call's reply; the rest follow
                        replies.append(exc)
                return replies
            except _RECONNECT as exc:
                # Back to the pool: the next call takes a connection from it, and the pool
                # connects it afresh - through a Sentinel pool, to the primary it names now
                # (a held connection would reconnect to the address it had before).
                self._drop_connection(conn)
                if attempt == 2:
                    raise
                logger.debug("redis stream sink %s: reconnecting: %r", self._where, exc)
        raise AssertionError("unreachable")

    def _public_pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """:meth:`_pipeline` through redis-py's public ``Pipeline`` (the shortcut is off).

        A broken connection is sent to once more, as the raw path does (and as
        the client's own retry may: the scripts are idempotent); an error reply
        stays in its place.
        """
        for attempt in (1, 2):
            pipe = self._client.pipeline(transaction=False)
            try:
                for command in commands:
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
                return list(pipe.execute(raise_on_error=False))
            except _RECONNECT as exc:
                if attempt == 2:
                    raise
                logger.debug("redis stream sink %s: reconnecting: %r", self._where, exc)
            finally:
                pipe.reset()
        raise AssertionError("unreachable")

    def _collect(
        self, calls: list[ScriptCall], replies: list[Any], results: list[Result | None]
    ) -> None:
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, Exception):
                streams = ", ".join(dict.fromkeys(call.streams))
                self._refused(streams, call.events, reply, call.groups, results)
                continue
            for stream, group, answer in zip(call.streams, call.groups, reply, strict=True):
                text = answer.decode() if isinstance(answer, bytes) else str(answer)
                if text.startswith("!"):  # this stream's error (WRONGTYPE ...): it alone
                    self._refused(stream, len(group), ResponseError(text[1:]), [group], results)
                    continue
                for i, entry in zip(group, text.split(","), strict=True):
                    if entry == "0":
                        results[i] = Result(Outcome.DUPLICATE)
                    elif entry == "-1":
                        results[i] = Result(Outcome.FENCED)
                    else:
                        results[i] = Result(Outcome.DELIVERED, entry)

    def _refused(
        self,
        stream: str,
        count: int,
        error: Exception,
        groups: list[list[int]],
        results: list[Result | None],
    ) -> None:
        retry = self.retryable(error)
        if not retry:
            logger.error(
                "redis stream sink %s: stream %s refused %d event(s): %s",
                self._where, stream, count, error,
            )  # fmt: skip
        outcome = Outcome.RETRY if retry else Outcome.REJECTED
        for group in groups:
            for i in group:
                results[i] = Result(outcome, error=error)
