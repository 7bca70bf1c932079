"""Celery on a Redis broker: each bridge task id is pushed to its queue once.

This module owns :class:`PushOnceTransport`, the kombu Redis transport the
Celery sink's private app uses for ``redis://`` and ``rediss://`` brokers (and
:class:`PushOnceSentinelTransport` for ``sentinel://``), and
the Lua script it pushes with. kombu's Redis transport delivers a message by
``LPUSH``-ing its JSON onto the queue's list; here that ``LPUSH`` runs inside
one script together with ``SET mark NX PX ttl`` (:data:`PUSH_ONCE_LUA`):

* the mark is ``<prefix>:celery:sent:<queue>:<task id>`` (``prefix`` is the
  bridge's ``key_prefix``, the task id the deterministic
  :func:`~ably_bridge.bridge.dedup.celery_task_id`), written in the broker's
  own Redis, in the same atomic step as the push: there is no moment at which
  a task is queued without its mark, or marked without being queued;
* a task id whose mark exists is not pushed again. So when the bridge crashes
  after a push and before its checkpoint moves past the event, the event read
  again from history on restart does not queue its task a second time, and a
  batch whose pipeline failed half-way may simply be sent again;
* the mark lives ``delivery.dedup_ttl`` seconds (default 3600): a re-send more
  than that long after the first push queues the task again, and the
  worker-side :class:`~workers.guard.WorkerGuard` is what still makes
  it run once. A Redis broker that loses its data (restarted without
  persistence) loses marks and queued tasks together.

The mark says "queued once", not "ran once": a worker that dies mid-task and
gets the message back from kombu (``visibility_timeout``) runs it again, which
the worker guard absorbs. RabbitMQ has no such step (a publish cannot be made
conditional on a key), so there the worker guard is the only guard.

Messages without a task id (none the bridge sends) are pushed as kombu does.

Within a ``Producer.batch()`` (the sink's pipelined batches) the pushes of the
batch are written by one call of the script at flush, in order, the messages of
one queue key in one ``LPUSH`` of many values. (With the
``kombu.redis_message_template`` shortcut, :mod:`.celery_redis_wire` builds a
batch's messages itself and calls the same script; it captures kombu's message
through ``ably_capture``.)

This relies on kombu's Redis channel internals (``_put``, ``_q_for_pri``,
``_get_message_priority``, ``_expires``, ``create_publish_batch`` and its
``PublishBatch``, kombu 5.7); :func:`supported` checks they exist, and without them
the sink pushes as kombu does (the worker guard remains). It is not a
:mod:`ably_bridge.shortcuts` entry: there is no public path with the same
behaviour.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps
from redis.exceptions import NoScriptError

from ably_bridge.bridge.redis_keys import RedisKeys

_dumps: Any = dumps  # (untyped in kombu)
_BATCH_BASE: Any = getattr(kombu_redis, "PublishBatch", object)  # kombu 5.7's batch
_KOMBU_CHANNEL: Any = kombu_redis.Channel

__all__ = [
    "PUSH_ONCE_LUA",
    "PushOnceChannel",
    "PushOnceSentinelChannel",
    "PushOnceSentinelTransport",
    "PushOnceTransport",
    "push_args",
    "push_calls",
    "sent_mark",
    "split_sentinel_master",
    "supported",
    "transport_conf",
]

_INTERNALS = ("_put", "_q_for_pri", "_get_message_priority", "create_publish_batch")

# KEYS = the queue lists (q of them), then one push-once mark per message; ARGV[1] = mark
# ttl (ms), ARGV[2] = q, then per message its queue's index into KEYS and the kombu message.
# A message is pushed only if its mark could be set; the messages of one queue go in one
# LPUSH of many values (1,000 at most per call), in order - what one LPUSH each would leave.
# One call covers a whole batch. Returns how many were pushed.
PUSH_ONCE_LUA = """
local q = tonumber(ARGV[2])
local pending = {}
local pushed = 0
for i = 1, #KEYS - q do
  if redis.call('SET', KEYS[q + i], '1', 'NX', 'PX', ARGV[1]) then
    local k = tonumber(ARGV[1 + 2 * i])
    local list = pending[k]
    if not list then
      list = {}
      pending[k] = list
    end
    list[#list + 1] = ARGV[2 + 2 * i]
    pushed = pushed + 1
  end
end
for k, list in pairs(pending) do
  for s = 1, #list, 1000 do
    redis.call('LPUSH', KEYS[k], unpack(list, s, math.min(s + 999, #list)))
  end
end
return pushed
"""


# One script call carries at most this many messages / bytes of messages: a batch of 500
# tasks is a ~600 KiB command, which hiredis packs into one buffer ~7x slower per message
# than in calls of ~64 KiB (a large allocation each time; docs/benchmarks.md, issue 20).
CALL_MESSAGES = 128
CALL_BYTES = 64 * 1024


def push_calls(
    ttl_ms: int, items: Sequence[tuple[str, str, str]]
) -> list[tuple[list[str], list[Any]]]:
    """(keys, args) of the :data:`PUSH_ONCE_LUA` calls for ``items`` (mark, list key,
    message), in order, each within :data:`CALL_MESSAGES` and :data:`CALL_BYTES`."""
    calls = []
    start, size = 0, 0
    for i, item in enumerate(items):
        size += len(item[2])
        if i > start and (i - start >= CALL_MESSAGES or size > CALL_BYTES):
            calls.append(push_args(ttl_ms, items[start:i]))
            start, size = i, len(item[2])
    if start < len(items):
        calls.append(push_args(ttl_ms, items[start:]))
    return calls


def push_args(ttl_ms: int, items: Sequence[tuple[str, str, str]]) -> tuple[list[str], list[Any]]:
    """(keys, args) of one :data:`PUSH_ONCE_LUA` call for ``items`` (mark, list key, message)."""
    queues: dict[str, int] = {}
    marks: list[str] = []
    args: list[Any] = [ttl_ms, 0]
    for mark, key, payload in items:
        index = queues.get(key)
        if index is None:
            index = queues[key] = len(queues) + 1
        marks.append(mark)
        args += (index, payload)
    args[1] = len(queues)
    return [*queues, *marks], args


def supported() -> bool:
    """Whether kombu's Redis channel still has what :class:`PushOnceChannel` builds on."""
    return _BATCH_BASE is not object and all(
        hasattr(kombu_redis.Channel, name) for name in _INTERNALS
    )


def sent_mark(prefix: str, queue: str, task_id: str) -> str:
    """The key marking ``task_id`` as pushed onto ``queue``."""
    return RedisKeys(prefix).celery_sent(queue, task_id)


class _PushOnceBatch(_BATCH_BASE):  # type: ignore[misc]
    """kombu's batch of one ``Producer.batch()``, whose task pushes go in one script call.

    The pushes of the batch are collected in order and written at flush as one
    ``EVALSHA`` (redis-py loads the script into the pipeline's server when missing).
    """

    def __init__(self, channel: Any, max_size: int) -> None:
        super().__init__(channel, max_size)
        self._once: list[tuple[str, str, str]] = []  # (mark, list key, message)

    def push_once(self, mark: str, key: str, payload: str) -> None:
        self._check_usable()
        self._once.append((mark, key, payload))
        if len(self._once) >= self.max_size:
            self.flush()

    def flush(self) -> None:
        if self._once:
            self._check_usable()
            this: Any = self.channel
            script = this.push_once_script()
            for keys, args in push_calls(this.mark_ttl_ms(), self._once):
                script(keys=keys, args=args, client=self.pipeline)
                self._buffered += 1
            self._once = []
        super().flush()

    def discard(self) -> None:
        self._once = []
        super().discard()


class PushOnceChannel(kombu_redis.Channel):
    """kombu's Redis channel whose push of a task is skipped when its mark exists."""

    #: transport options ``ably_mark_prefix`` and ``ably_mark_ttl`` (seconds) set these
    ably_mark_prefix = "ably-bridge"
    ably_mark_ttl = 3600.0
    from_transport_options = (  # type: ignore[assignment]  # (kombu types it by length)
        *kombu_redis.Channel.from_transport_options,
        "ably_mark_prefix",
        "ably_mark_ttl",
    )
    _once_script: Any = None
    #: a list while :mod:`.celery_redis_wire` captures a sample message: ``_put`` appends
    #: (queue, message) to it instead of pushing
    ably_capture: list[tuple[str, dict[str, Any]]] | None = None

    def push_once_script(self) -> Any:
        if self._once_script is None:
            this: Any = self
            self._once_script = this.client.register_script(PUSH_ONCE_LUA)
        return self._once_script

    def push_once(self, client: Any, items: Sequence[tuple[str, str, str]]) -> None:
        """Push ``items`` (mark, list key, message) in :func:`push_calls`, written at once
        (one round trip); the script is loaded when the server does not have it."""
        script = self.push_once_script()
        pending = push_calls(self.mark_ttl_ms(), items)
        for _ in range(2):
            pipe = client.pipeline(transaction=False)
            for keys, args in pending:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
            missing = [
                call
                for call, reply in zip(pending, replies, strict=True)
                if isinstance(reply, NoScriptError)
            ]
            for reply in replies:
                if isinstance(reply, Exception) and not isinstance(reply, NoScriptError):
                    raise reply
            if not missing:
                return
            client.script_load(PUSH_ONCE_LUA)
            pending = missing
        raise NoScriptError("the push-once script could not be loaded")

    def mark_ttl_ms(self) -> int:
        return max(1, int(self.ably_mark_ttl * 1000))

    def create_publish_batch(self, max_size: int) -> Any:
        return _PushOnceBatch(self, max_size)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        this: Any = self  # (kombu's channel methods are untyped)
        if self.ably_capture is not None:
            self.ably_capture.append((queue, message))
            return
        headers = message.get("headers") or {}
        task_id = headers.get("id") if isinstance(headers, dict) else None
        expires_of = getattr(this, "_expires", None)
        if (
            not isinstance(task_id, str)
            or not task_id
            or (expires_of and queue in expires_of)  # (a queue with x-expires: kombu's way)
        ):
            _KOMBU_CHANNEL._put(this, queue, message, **kwargs)
            return
        key = this._q_for_pri(queue, this._get_message_priority(message, reverse=False))
        mark = sent_mark(self.ably_mark_prefix, queue, task_id)
        payload = _dumps(message)
        batch = kwargs.pop("_publish_batch", None)
        if isinstance(batch, _PushOnceBatch):  # kombu's Producer.batch(): one script call
            batch.push_once(mark, key, payload)
            return
        keys, args = push_args(self.mark_ttl_ms(), [(mark, key, payload)])
        with self.conn_or_acquire() as client:
            self.push_once_script()(keys=keys, args=args, client=client)


class PushOnceTransport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`PushOnceChannel`."""

    Channel = PushOnceChannel


class PushOnceSentinelChannel(PushOnceChannel, kombu_redis.SentinelChannel):
    """:class:`PushOnceChannel` on a Sentinel group: the script runs on the current primary
    (kombu's Sentinel pool resolves it on every connect; a demoted primary's READONLY
    reply becomes a connection error, which the sink retries)."""

    from_transport_options = (  # type: ignore[assignment]
        *kombu_redis.SentinelChannel.from_transport_options,
        "ably_mark_prefix",
        "ably_mark_ttl",
    )


class PushOnceSentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Redis Sentinel transport (``sentinel://``) with push-once."""

    Channel = PushOnceSentinelChannel


def split_sentinel_master(url: str) -> tuple[str, str | None]:
    """(``url`` without its ``master_name`` parameter, that master name or None).

    kombu's ``sentinel://`` URLs (``sentinel://h1:26379;sentinel://h2:26379/0``) do
    not carry the name of the monitored primary, which kombu takes from the transport
    option ``master_name``; here it may ride on the URL as ``?master_name=NAME`` (on any
    of the ``;``-joined URLs) and is moved into the transport options.
    """
    found: str | None = None
    parts = []
    for part in url.split(";"):
        base, sep, query = part.partition("?")
        kept = []
        for item in query.split("&") if sep else []:
            name, _, value = item.partition("=")
            if name == "master_name":
                found = unquote(value) or found
            elif item:
                kept.append(item)
        parts.append(base + ("?" + "&".join(kept) if kept else ""))
    return ";".join(parts), found


def transport_conf(url: str, prefix: str, ttl: float) -> dict[str, Any]:
    """Celery settings that make an app send through :class:`PushOnceTransport`.

    Given as a class, the transport no longer comes from the URL's scheme, so
    for ``rediss://`` the TLS default kombu applies to that scheme (certificates
    not verified unless the URL or ``broker_use_ssl`` says otherwise) is set here.
    """
    sentinel = url.split("://", 1)[0].lower() == "sentinel"
    conf: dict[str, Any] = {
        "broker_transport": PushOnceSentinelTransport if sentinel else PushOnceTransport,
        "broker_transport_options": {"ably_mark_prefix": prefix, "ably_mark_ttl": float(ttl)},
    }
    if url.split("://", 1)[0].lower() == "rediss":
        conf["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_NONE}
    return conf
