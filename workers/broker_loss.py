"""A worker consumer that survives losing a Redis broker while it holds unacknowledged messages.

This module owns :class:`Consumer`, which :func:`workers.app.configure_app`
installs as the app's ``worker_consumer``.

The bug it works around (Celery 5.7.0 with kombu's Redis transport; Celery
5.6.3 and earlier do not close the connection at this point): when the broker
connection is lost, ``Consumer.on_connection_error_after_connected`` first
*collects* the connection, which detaches its transport (the transport's
``client`` becomes ``None``), and then *closes* it. If the worker held an
unacknowledged message (a running ``acks_late`` task, or one waiting for its
countdown), closing the Redis channel tries to restore that message through a
new connection built from the detached transport's ``client``, and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``. That error is
not a connection error, so the worker stops with "Unrecoverable error"
(prefork) or stops consuming (threads).

The consumer here makes that close tolerant: an ``AttributeError`` of a
connection that is already detached is logged and ignored. Nothing is lost by
skipping the restore: with ``acks_late`` the message stays in the Redis
transport's unacked index (kombu's reliable-fetch emulation, ``ack_emulation``);
the atomic fetch (:mod:`workers.redis_fetch`) restores it at the worker's first
fetch after the reconnect, kombu's own transport after ``visibility_timeout``;
a publish redelivered this way reuses its message ids, so Ably keeps one copy.
On other Celery versions the wrapper changes nothing.

A second path to the same error, with the threads pool (Celery 5.7.0, kombu
5.7.0; the broker-loss test's "failed once under load"): a late-ack task that
is *running* when the connection is lost cannot be cancelled (the threads pool
has no ``kill_job``; Celery logs "Failed to cancel active request"), so it
finishes during the outage and its ack - queued on the event loop - runs after
the reconnect against the message's old, detached channel. The
``AttributeError`` escapes ``ack_log_error`` (it only catches connection
errors), the event loop stops with "Unrecoverable error" and the worker exits.
The consumer marks every late-ack request still active at the loss as
settled, so no ack or reject is attempted on the lost channel: the message is
redelivered from the broker (on Redis as above, at once on RabbitMQ, which
returns a lost channel's deliveries), which is what the failed
ack would have left anyway. The prefork pool's cancelled (killed) tasks take
the same route.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.state import active_requests

__all__ = ["Consumer"]

log = logging.getLogger(__name__)


class _TolerantClose:
    """``connection.close`` that ignores the detached-transport AttributeError."""

    def __init__(self, connection: Any) -> None:
        self._close = connection.close

    def __call__(self) -> None:
        try:
            self._close()
        except AttributeError as exc:
            # kombu restoring unacked messages through a detached transport: they stay
            # in the unacked index, restored by the next fetch (workers.redis_fetch) or
            # after the visibility timeout.
            log.warning(
                "broker connection lost with unacknowledged messages; they are "
                "redelivered after the reconnect or the visibility timeout (%s)",
                type(exc).__name__,
            )


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, with a broker-loss cleanup that cannot crash the worker."""

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        connection = self.connection
        if connection is not None:
            connection.close = _TolerantClose(connection)
        stranded = [r for r in tuple(active_requests) if r.task.acks_late and not r.acknowledged]
        super().on_connection_error_after_connected(exc)
        for request in stranded:
            # Its channel is gone: an ack or reject on it would fail (and, on Celery 5.7
            # with the Redis transport, stop the worker); the broker redelivers it.
            request.acknowledged = True
        if stranded:
            log.warning(
                "%d running late-ack task(s) will be redelivered by the broker "
                "(their connection was lost)",
                len(stranded),
            )
