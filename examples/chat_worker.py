"""Example worker: react to bridged chat messages and presence.

The bridge delivers every event of the ``chat:*`` channels; this worker

* welcomes a member who enters a channel (a ``system`` message), and says
  goodbye when they leave;
* answers a ``text`` message ``/ping`` with a ``pong``.

Replies are enqueued as ``ably.publish`` tasks (``workers.producers.publish``),
so they are retried and published exactly once. The worker ignores its own
``system`` and ``pong`` messages, so replies never loop.

Two ways to receive the events, matching the two kinds of bridge target:

* Celery (``{type: celery, task: chat.handle_event, queue: chat}``, as in
  ``deploy/kubernetes/configmap.yaml``)::

      celery -A examples.chat_worker worker -Q chat,celery

  ``handle_event`` is de-duplicated per message id (``workers.envelope_task``).
* Redis Streams (``{type: redis_stream, key: "ably:{route}"}``, as in
  ``deploy/compose/bridge.yaml``)::

      python -m workers.streams --stream ably:chat --group chat \\
          --handler examples.chat_worker:handle_stream_event
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ably_bridge import PresenceAction
from workers import create_app, envelope_task, producers
from workers.consumers import SOURCE_MESSAGE, SOURCE_PRESENCE, BridgedEvent
from workers.streams import StreamEntry

log = logging.getLogger(__name__)

# The app of ``celery -A examples.chat_worker``: configured from the environment,
# with the ably.* tasks registered too, so one worker can run both.
app = create_app("chat-example")

Publish = Callable[..., Any]


def react(event: BridgedEvent, publish: Publish | None = None) -> str | None:
    """Handle one bridged event; returns the name of the reply enqueued, if any.

    ``publish`` defaults to :func:`workers.producers.publish` (tests pass a fake).
    """
    publish = publish or producers.publish
    if event.source == SOURCE_PRESENCE:
        who = event.client_id or "someone"
        if event.action == PresenceAction.ENTER:
            publish(event.channel, "system", {"text": f"welcome, {who}"}, app=app)
            return "system"
        if event.action == PresenceAction.LEAVE:
            publish(event.channel, "system", {"text": f"{who} left"}, app=app)
            return "system"
        return None
    if event.source == SOURCE_MESSAGE and event.name == "text":
        text = event.data.get("text") if isinstance(event.data, dict) else event.data
        if isinstance(text, str) and text.strip() == "/ping":
            publish(event.channel, "pong", {"text": "pong", "to": event.client_id}, app=app)
            return "pong"
    return None


@envelope_task(app, name="chat.handle_event")
def handle_event(event: BridgedEvent) -> None:
    """The Celery task the bridge's celery target names (one call per event)."""
    reply = react(event)
    log.info("%s %s on %s: %s", event.short_source, event.id, event.channel, reply or "-")


def handle_stream_event(entry: StreamEntry) -> None:
    """The handler of ``python -m workers.streams`` (one call per stream entry)."""
    for event in entry.events:
        react(event)
