"""A kombu Redis transport whose fetch cannot lose a message when the worker is SIGKILLed.

This module owns :class:`Transport` and :class:`SentinelTransport`, which
:func:`workers.app.configure_app` makes the app's ``broker_transport`` for a
``redis://``, ``rediss://`` or ``sentinel://`` broker (behind the shortcut
``kombu.redis_atomic_fetch`` of :mod:`ably_bridge.shortcuts`).

The problem (kombu 5.x, every release up to at least 5.7.0): kombu's Redis
transport takes a message off the queue with ``BRPOP`` and records it in its
unacked index (``unacked`` hash + ``unacked_index`` sorted set, from where a dead
worker's messages are restored after ``visibility_timeout``) only afterwards, in
a second round trip. A worker killed between the two - or before it reads the
``BRPOP`` reply at all - loses the message: it is neither queued nor unacked
(kombu issue #305, celery issue #7950; kombu's fix for a *graceful* close,
PR #1733, cannot cover a SIGKILL).

The fix: the message moves from the queue to the unacked index in one Lua
script (:data:`FETCH_SCRIPT`), so at every instant it is in exactly one of the
two. The script pops the first non-empty queue key (in kombu's priority order),
writes the same unacked entry kombu's ``QoS.append`` writes (``[payload,
exchange, routing_key]`` under the message's delivery tag, scored with the
worker's clock) and returns the payload. A script cannot block, so an idle
channel waits with ``BLMOVE key key RIGHT RIGHT`` on its first queue key: a
rotation that returns when the list is non-empty and leaves the element where
it was; then it runs the script. Everything else - acks, rejects, restores,
the poller - is kombu's.

A fetch whose reply is lost with its connection (the broker shut down or the
link broke after the script ran: chaos seed 3 hit it) leaves its message in the
unacked index of a worker that never received it. kombu would restore it only
after ``visibility_timeout``; here the script also writes a *claim* - one key
per channel, ``<unacked key>:claim:<channel id>`` = ``"<fetch token> <delivery
tag>"``, expiring with the visibility timeout - and the process remembers the
(claim, token) of a fetch whose reply it lost. Its next fetch, on the
reconnected channel, puts that message back at the head of its queue with
kombu's ``restore_by_tag`` (only if the claim still names that fetch and the
message is still unacked), so it is delivered at once. kombu's ``BRPOP`` loses
such a message outright. Likewise the messages a closing channel could not
restore because the broker was gone (delivered, not acked: Celery drops what
its pool had not started when the connection is lost) are restored by the
process's next fetch, up to ``visibility_timeout`` after the close (later,
kombu's restore owns them).

What it costs: the same two round trips per message as kombu when the worker
was idle (wait, then fetch), one (the fetch) while a backlog drains, instead
of kombu's ``BRPOP`` plus ``MULTI``. A message arriving in a queue key other
than the one watched (another queue of the worker, or a priority level) while
the worker is idle waits up to ``brpop_timeout`` (1 s); every idle worker
blocked on the key wakes for a message and one of them gets it. Redis 6.2 or
later is needed for ``BLMOVE``; on an older server the channel logs a warning
and falls back to kombu's ``BRPOP`` fetch.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Callable
from queue import Empty
from time import monotonic, time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils import json as kombu_json

__all__ = [
    "FETCH_SCRIPT",
    "Channel",
    "SentinelChannel",
    "SentinelTransport",
    "Transport",
    "claim_key",
]


def claim_key(unacked_key: str, claim_id: str, prefix: str = "") -> str:
    """The Redis key of one channel's fetch claim (``claim_id="*"``: a pattern for all);
    it expires with the visibility timeout."""
    return f"{prefix}{unacked_key}:claim:{claim_id}"


log = logging.getLogger(__name__)

# KEYS[1] unacked hash, KEYS[2] unacked index, KEYS[3] the channel's claim key,
# KEYS[4..] queue keys in priority order; ARGV[1] the worker's clock (kombu scores the
# index with the consumer's time()), ARGV[2] this fetch's token, ARGV[3] the claim's
# lifetime (ms). The claim ("<token> <delivery tag>") says which message this fetch took,
# for when its reply is lost (:func:`_resolve_in_doubt`).
# Returns {position of the key among the queue keys (1-based), payload, recorded} or nil.
FETCH_SCRIPT = """
for i = 4, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local ok, message = pcall(cjson.decode, item)
    if ok and type(message) == 'table' and type(message.properties) == 'table' then
      local props = message.properties
      local info = props.delivery_info
      if type(props.delivery_tag) == 'string' and type(info) == 'table' then
        redis.call('ZADD', KEYS[2], ARGV[1], props.delivery_tag)
        redis.call('HSET', KEYS[1], props.delivery_tag, '[' .. item .. ',' ..
          cjson.encode(info.exchange) .. ',' .. cjson.encode(info.routing_key) .. ']')
        redis.call('SET', KEYS[3], ARGV[2] .. ' ' .. props.delivery_tag, 'PX', ARGV[3])
        return {i - 3, item, 1}
      end
    end
    return {i - 3, item, 0}
  end
end
return false
"""

_FETCH, _WAIT = "fetch", "wait"
_loads: Callable[[str], Any] = kombu_json.loads  # kombu's own decoder (its type hooks)


def _decode(item: bytes | str) -> Any:
    return _loads(item.decode() if isinstance(item, bytes) else item)


# Fetches whose reply was lost with the connection, as (claim key, token): the script may
# have moved a message into the unacked index that this process never received. And the
# delivery tags a closing channel could not restore (the broker was unreachable), with
# the monotonic time after which kombu's own restore (visibility timeout) owns them. Kept
# per process, since the channel is replaced when the worker reconnects.
_in_doubt: list[tuple[str, str]] = []
_unrestored: list[tuple[str, float]] = []
_in_doubt_lock = threading.Lock()


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS; a message the fetch script already recorded is not written again."""

    def append(self, message: Any, delivery_tag: str) -> None:
        claimed = self.channel._claimed
        if delivery_tag in claimed:
            claimed.discard(delivery_tag)
            # the unacked entry exists (written by FETCH_SCRIPT): only the local bookkeeping
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]
        else:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]

    def restore_unacked(self, client: Any = None) -> Any:
        """kombu's restore at close; when the broker cannot be reached (or Celery 5.7 has
        already detached the transport, :mod:`workers.broker_loss`), the messages are
        restored by this process's next fetch instead of after the visibility timeout."""
        try:
            return super().restore_unacked(client)  # type: ignore[no-untyped-call]
        except Exception as exc:
            channel: Any = self.channel
            detached = getattr(channel.connection, "client", None) is None
            if isinstance(exc, channel.connection_errors) or detached:
                until = monotonic() + float(channel.visibility_timeout)
                with _in_doubt_lock:
                    _unrestored.extend((tag, until) for tag in self._delivered)
                self._delivered.clear()
            raise


class _AtomicFetch:
    """Mixin over kombu's Redis ``Channel``: fetch with :data:`FETCH_SCRIPT`, wait with BLMOVE."""

    QoS = QoS
    _atomic = True
    _next: str = _FETCH
    _pending: tuple[str, list[str], list[str]] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._claimed: set[str] = set()
        self._claim_id = uuid.uuid4().hex
        self._tokens = itertools.count(1)
        self._sent: tuple[str, str] | None = None  # (claim key, token) of the fetch in flight
        super().__init__(*args, **kwargs)

    # -- keys ---------------------------------------------------------------------
    def _fetch_keys(self, queues: list[str]) -> tuple[list[str], list[str]]:
        """(Redis keys in kombu's BRPOP order, the queue each key belongs to)."""
        ch: Any = self
        prefix = ch.global_keyprefix or ""
        keys, owners = [], []
        for pri in ch.priority_steps:
            for queue in queues:
                keys.append(prefix + ch._q_for_pri(queue, pri))
                owners.append(queue)
        return keys, owners

    def _script_args(self, keys: list[str]) -> list[Any]:
        ch: Any = self
        prefix = ch.global_keyprefix or ""
        unacked = [prefix + ch.unacked_key, prefix + ch.unacked_index_key]
        claim = claim_key(ch.unacked_key, self._claim_id, prefix)
        token = str(next(self._tokens))
        self._sent = (claim, token)
        ttl = max(1000, int(float(ch.visibility_timeout) * 1000))
        return ["EVAL", FETCH_SCRIPT, 3 + len(keys), *unacked, claim, *keys,
                repr(time()), token, ttl]  # fmt: skip

    def _reply_lost(self) -> None:
        """The fetch's reply went with the connection: its message (if it took one) is
        restored by the next fetch of this process, not after the visibility timeout."""
        if self._sent is not None:
            with _in_doubt_lock:
                _in_doubt.append(self._sent)
            self._sent = None

    def _resolve_in_doubt(self) -> None:
        """Put back in their queues what the lost channels left unacked: the messages a
        closing channel could not restore, and the one a fetch with a lost reply took.

        The fetch's claim names its token and the message's delivery tag; a claim
        holding another token belongs to a later fetch of that channel (not ours to
        undo). kombu's ``restore_by_tag`` moves the message back only while it is
        still unacked (another worker's restore may have been first)."""
        if not (_in_doubt or _unrestored):
            return
        ch: Any = self
        with _in_doubt_lock:
            pending = list(_in_doubt)
            tags = list(_unrestored)
            _in_doubt.clear()
            _unrestored.clear()
        try:
            with ch.conn_or_acquire() as client:
                while tags:  # (an acked tag has no entry left: nothing is restored)
                    tag, until = tags[0]
                    if monotonic() < until:
                        ch.qos.restore_by_tag(tag, client=client)
                        log.info("restored message %s, which the lost channel held", tag)
                    tags.pop(0)
                while pending:
                    claim, token = pending[0]
                    value = client.get(claim)
                    sent, _, tag = (value or b"").decode().partition(" ")
                    if sent == token and tag:
                        ch.qos.restore_by_tag(tag, client=client)
                        log.info("restored message %s, whose fetch lost its reply", tag)
                    pending.pop(0)
        except ch.connection_errors:
            with _in_doubt_lock:  # still unreachable: again at the next fetch
                _in_doubt.extend(pending)
                _unrestored.extend(tags)

    # -- the async fetch (kombu's BRPOP hooks) ---------------------------------------
    def _brpop_start(self, timeout: float | None = None) -> None:
        ch: Any = self
        if not self._atomic:
            super()._brpop_start(timeout)  # type: ignore[misc]
            return
        if timeout is None:
            timeout = ch.brpop_timeout
        queues = ch._queue_cycle.consume(len(ch.active_queues))
        if not queues:
            return
        self._resolve_in_doubt()
        keys, owners = self._fetch_keys(queues)
        if self._next == _WAIT:
            args: list[Any] = ["BLMOVE", keys[0], keys[0], "RIGHT", "RIGHT", timeout or 0]
        else:
            args = self._script_args(keys)
        connection = ch.client.connection
        ch._in_poll = connection
        ch._brpop_sent_at = monotonic()
        self._pending = (self._next, keys, owners)
        connection.send_command(*args)

    def _brpop_read(self, **options: Any) -> bool:
        ch: Any = self
        pending = self._pending
        if not self._atomic or pending is None:
            return bool(super()._brpop_read(**options))  # type: ignore[misc]
        kind, keys, owners = pending
        try:
            try:
                reply = ch.client.parse_response(ch.client.connection, "EVAL", **options)
            except ch.connection_errors:
                if kind == _FETCH:
                    self._reply_lost()
                ch.client.connection.disconnect()
                raise
            except redis.ResponseError as exc:
                if kind == _WAIT and "unknown command" in str(exc).lower():
                    self._fall_back()
                raise Empty() from None
            if kind == _WAIT:
                # woken (or timed out): fetch now, on the same connection
                ch._in_poll = None
                reply = self._fetch_sync(keys)
            if not reply:
                self._next = _WAIT
                raise Empty()
            self._next = _FETCH  # a backlog: fetch again before waiting
            self._deliver_reply(reply, owners)
            return True
        finally:
            self._pending = None
            ch._in_poll = None
            ch._flush_brpop_reauth()

    def _fetch_sync(self, keys: list[str]) -> Any:
        ch: Any = self
        connection = ch.client.connection
        connection.send_command(*self._script_args(keys))
        try:
            return ch.client.parse_response(connection, "EVAL")
        except ch.connection_errors:
            self._reply_lost()
            connection.disconnect()
            raise

    def _deliver_reply(self, reply: Any, owners: list[str]) -> None:
        ch: Any = self
        position, item, recorded = int(reply[0]), reply[1], int(reply[2])
        queue = owners[position - 1]
        ch._queue_cycle.rotate(queue)
        payload = _decode(item)
        self._deliver_claimed(payload, queue, recorded)

    def _deliver_claimed(self, payload: dict[str, Any], queue: str, recorded: int) -> None:
        """Deliver a fetched message; one no consumer took as unacked leaves the index."""
        ch: Any = self
        tag = payload["properties"]["delivery_tag"] if recorded else None
        if tag is not None:
            self._claimed.add(tag)
        try:
            ch.connection._deliver(payload, queue)
        finally:
            if tag is not None and tag in self._claimed:  # a no_ack consumer took it
                self._claimed.discard(tag)
                ch.qos._remove_from_indices(tag).execute()

    def _fall_back(self) -> None:
        log.warning(
            "the Redis broker has no BLMOVE (Redis < 6.2): falling back to kombu's BRPOP "
            "fetch, which can lose a message when a worker is killed while fetching it"
        )
        self._atomic = False

    # -- the synchronous fetch (basic_get) ------------------------------------------
    def _get(self, queue: str) -> dict[str, Any]:
        ch: Any = self
        if not self._atomic:
            return dict(super()._get(queue))  # type: ignore[misc]
        self._resolve_in_doubt()
        keys, _ = self._fetch_keys([queue])
        with ch.conn_or_acquire() as client:
            try:
                reply = client.execute_command(*self._script_args(keys))
            except ch.connection_errors:
                self._reply_lost()
                raise
            ch._maybe_update_queues_expire(client, queue)
        if not reply:
            raise Empty()
        payload: dict[str, Any] = _decode(reply[1])
        if int(reply[2]):
            self._claimed.add(payload["properties"]["delivery_tag"])
        return payload

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        ch: Any = self
        message = super().basic_get(queue, no_ack, **kwargs)  # type: ignore[misc]
        if message is not None and message.delivery_tag in self._claimed:
            self._claimed.discard(message.delivery_tag)  # no_ack: not unacked after all
            ch.qos._remove_from_indices(message.delivery_tag).execute()
        return message


class Channel(_AtomicFetch, kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel with the atomic fetch."""


class SentinelChannel(_AtomicFetch, kombu_redis.SentinelChannel):  # type: ignore[misc]
    """kombu's Redis Sentinel channel with the atomic fetch (runs on the current primary)."""


class Transport(kombu_redis.Transport):
    """kombu's Redis transport (``redis://``, ``rediss://``) with the atomic fetch."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Redis Sentinel transport (``sentinel://``) with the atomic fetch."""

    Channel = SentinelChannel
