"""Messages for task names a worker does not know: dead-lettered, never silently dropped.

The bridge sends Celery tasks by name and cannot know whether any worker
registered that name. A Celery worker that receives an unregistered task logs
an error and discards the message; with :func:`dead_letter_unknown_tasks`
installed (``create_app`` does it), the message is first written to the same
dead-letter stream the bridge uses (``<ABLY_WORKER_DEDUP_PREFIX>:deadletter``,
default ``ably-bridge:deadletter``) with reason ``unknown_target``, the task
name, its id and the envelope, so an operator can see it and replay it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import task_unknown

from ably_bridge.bridge.deadletter import DeadLetter, DeadLetterWriter, Reason
from ably_bridge.bridge.redis_connect import open_redis
from workers.settings import WorkerSettings

__all__ = ["dead_letter_unknown_tasks"]

log = logging.getLogger(__name__)

UNKNOWN_TASK_CODE = 40400  # "not found": no task of that name on this worker


def dead_letter_unknown_tasks(app: Celery, settings: WorkerSettings) -> Callable[..., None]:
    """Write messages for unregistered task names of ``app`` to the dead-letter stream.

    Returns the signal receiver (kept connected for the life of the process).
    """
    stream = f"{settings.dedup_prefix}:deadletter"
    lock = threading.Lock()
    writer: list[DeadLetterWriter] = []

    def get_writer() -> DeadLetterWriter:
        with lock:
            if not writer:
                client = open_redis(settings.dedup_url())
                writer.append(DeadLetterWriter(client, stream))
            return writer[0]

    def on_unknown(
        sender: Any = None,
        name: str | None = None,
        id: str | None = None,  # Celery names the signal argument so
        message: Any = None,
        exc: BaseException | None = None,
        **_: Any,
    ) -> None:
        if getattr(sender, "app", None) is not app:
            return
        body = _payload(message)
        envelope = _envelope(body)
        letter = DeadLetter(
            reason=Reason.UNKNOWN_TARGET,
            route=str(envelope.get("ruleId", "")),
            channel=str(envelope.get("channel", "")),
            event={"task": name, "task_id": id, "body": body},
            code=UNKNOWN_TASK_CODE,
            error=f"no task named {name!r} is registered on this worker",
            source=str(envelope.get("source", "")),
            event_id=str(id or ""),
        )
        if get_writer().write(letter):
            log.error("unknown task %r (id %s) dead-lettered to %s", name, id, stream)

    task_unknown.connect(on_unknown, weak=False)
    return on_unknown


def _payload(message: Any) -> Any:
    try:
        return message.decode() if message is not None else None
    except Exception:  # an undecodable body is still worth a dead letter
        return repr(getattr(message, "body", message))


def _envelope(body: Any) -> dict[str, Any]:
    """The bridge's envelope when the body is Celery protocol 2 ``(args, kwargs, embed)``."""
    if isinstance(body, list | tuple) and body and isinstance(body[0], list | tuple) and body[0]:
        first = body[0][0]
        if isinstance(first, dict):
            return first
    return {}
