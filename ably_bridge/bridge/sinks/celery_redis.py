"""Celery on a Redis broker: each bridge task id is pushed to its queue once.

This module owns :class:`PushOnceTransport`, the kombu Redis transport the
Celery sink's private app uses for ``redis://`` and ``rediss://`` brokers, and
the Lua script it pushes with. kombu's Redis transport delivers a message by
``LPUSH``-ing its JSON onto the queue's list; here that ``LPUSH`` runs inside
one script together with ``SET mark NX PX ttl``:

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
  worker-side :class:`~ably_bridge.bridge.dedup.WorkerGuard` is what still makes
  it run once. A Redis broker that loses its data (restarted without
  persistence) loses marks and queued tasks together.

The mark says "queued once", not "ran once": a worker that dies mid-task and
gets the message back from kombu (``visibility_timeout``) runs it again, which
the worker guard absorbs. RabbitMQ has no such step (a publish cannot be made
conditional on a key), so there the worker guard is the only guard.

Messages without a task id (none the bridge sends) are pushed as kombu does.

This relies on kombu's Redis channel internals (``_put``, ``_q_for_pri``,
``_get_message_priority``, ``_expires`` and the ``Producer.batch()`` command
collector, kombu 5.7); :func:`supported` checks they exist, and without them
the sink pushes as kombu does (the worker guard remains). It is not a
:mod:`ably_bridge.shortcuts` entry: there is no public path with the same
behaviour.
"""

from __future__ import annotations

import ssl
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

_dumps: Any = dumps  # (untyped in kombu)
_KOMBU_CHANNEL: Any = kombu_redis.Channel

__all__ = [
    "PUSH_ONCE_LUA",
    "PushOnceChannel",
    "PushOnceTransport",
    "sent_mark",
    "supported",
    "transport_conf",
]

_INTERNALS = ("_put", "_q_for_pri", "_get_message_priority", "priority_steps")

# KEYS[1] = the task's mark, KEYS[2] = the queue's list; ARGV[1] = mark ttl (ms),
# ARGV[2] = the kombu message. 1 = pushed, 0 = already pushed (mark present).
PUSH_ONCE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def supported() -> bool:
    """Whether kombu's Redis channel still has what :class:`PushOnceChannel` builds on."""
    return all(hasattr(kombu_redis.Channel, name) for name in _INTERNALS)


def sent_mark(prefix: str, queue: str, task_id: str) -> str:
    """The key marking ``task_id`` as pushed onto ``queue``."""
    return f"{prefix}:celery:sent:{queue}:{task_id}"


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

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        this: Any = self  # (kombu's channel methods are untyped)
        headers = message.get("headers") or {}
        task_id = headers.get("id") if isinstance(headers, dict) else None
        if not isinstance(task_id, str) or not task_id:
            _KOMBU_CHANNEL._put(this, queue, message, **kwargs)
            return
        key = this._q_for_pri(queue, this._get_message_priority(message, reverse=False))
        mark = sent_mark(self.ably_mark_prefix, queue, task_id)
        ttl_ms = max(1, int(self.ably_mark_ttl * 1000))
        args = (PUSH_ONCE_LUA, 2, mark, key, ttl_ms, _dumps(message))
        expires_of = getattr(this, "_expires", None)
        expires = expires_of.get(queue) if expires_of else None
        batch = kwargs.pop("_publish_batch", None)
        if batch is not None:  # kombu's Producer.batch(): one pipeline for the batch
            batch.add("eval", *args)
            if expires is not None:
                for p in self.priority_steps:
                    batch.add("pexpire", this._q_for_pri(queue, p), expires)
            return
        with self.conn_or_acquire() as client:
            if expires is None:
                client.eval(*args)
                return
            with client.pipeline() as pipe:
                pipe.eval(*args)
                for p in self.priority_steps:
                    pipe.pexpire(this._q_for_pri(queue, p), expires)
                pipe.execute()


class PushOnceTransport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`PushOnceChannel`."""

    Channel = PushOnceChannel


def transport_conf(url: str, prefix: str, ttl: float) -> dict[str, Any]:
    """Celery settings that make an app send through :class:`PushOnceTransport`.

    Given as a class, the transport no longer comes from the URL's scheme, so
    for ``rediss://`` the TLS default kombu applies to that scheme (certificates
    not verified unless the URL or ``broker_use_ssl`` says otherwise) is set here.
    """
    conf: dict[str, Any] = {
        "broker_transport": PushOnceTransport,
        "broker_transport_options": {"ably_mark_prefix": prefix, "ably_mark_ttl": float(ttl)},
    }
    if url.split("://", 1)[0].lower() == "rediss":
        conf["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_NONE}
    return conf
