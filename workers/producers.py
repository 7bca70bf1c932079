"""Producer helpers: typed functions that enqueue the ``ably.*`` tasks.

This module owns the producer-side API, so producer code never spells a task
name: :func:`publish`, :func:`publish_batch`, :func:`history`,
:func:`presence_get`, :func:`stats`, :func:`time`, :func:`channel_status` and
:func:`token_request`. Each sends by name through ``app`` (default:
:func:`workers.app.default_app`) and returns the Celery ``AsyncResult``;
extra keyword arguments (``queue``, ``countdown``, ``priority``...) go to
``send_task``.

:func:`publish` assigns the message ids here, at enqueue time
(``<base>:<index>``, RSL1k1), so every retry and every redelivery of the task
publishes the same ids and Ably keeps one copy; the ids come back on the
:class:`PublishReceipt`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ably_bridge.protocol.models import Message
from ably_bridge.rest.channels import idempotent_base
from workers import app as app_module
from workers import tasks as t
from workers.arguments import check_message

__all__ = [
    "PublishReceipt",
    "channel_status",
    "history",
    "presence_get",
    "publish",
    "publish_batch",
    "stats",
    "time",
    "token_request",
    "wire_message",
]

log = logging.getLogger(__name__)

MessageInput = Message | Mapping[str, Any]


@dataclass(frozen=True)
class PublishReceipt:
    """An enqueued publish: the message ids it will publish, and the task's result."""

    message_ids: list[str]
    result: Any  # celery.result.AsyncResult

    @property
    def task_id(self) -> str:
        return str(self.result.id)

    def get(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the task; raises :class:`workers.errors.AblyTaskError` on failure."""
        value: dict[str, Any] = self.result.get(timeout=timeout)
        return value


def wire_message(message: MessageInput) -> dict[str, Any]:
    """A message as the JSON wire dict the tasks take (binary data as base64)."""
    if isinstance(message, Message):
        out = message.to_dict(binary=False)
    else:
        raw = dict(message)
        if "client_id" in raw:
            raw["clientId"] = raw.pop("client_id")
        check_message("message", raw)  # a wrong type is refused (40003), not dropped
        out = Message.from_dict(raw).to_dict(binary=False)
    out.pop("connectionKey", None)
    return out


def _with_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if messages and not any(m.get("id") for m in messages):
        base = idempotent_base()
        for index, message in enumerate(messages):
            message["id"] = f"{base}:{index}"
    return messages


def _send(app: Any, name: str, kwargs: dict[str, Any], options: Mapping[str, Any]) -> Any:
    target = app if app is not None else app_module.default_app()
    return target.send_task(name, kwargs=kwargs, **options)


def publish(
    channel: str,
    name: str | None = None,
    data: Any = None,
    *,
    messages: Sequence[MessageInput] | None = None,
    extras: Mapping[str, Any] | None = None,
    client_id: str | None = None,
    message_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    app: Any = None,
    **send_options: Any,
) -> PublishReceipt:
    """Enqueue a publish of ``name``/``data`` (or ``messages``) on ``channel``."""
    if messages is None:
        single = Message(
            name,
            data,
            id=message_id,
            client_id=client_id,
            extras=dict(extras) if extras is not None else None,
        )
        batch = [wire_message(single)]
    else:
        batch = [wire_message(m) for m in messages]
    batch = _with_ids(batch)
    kwargs: dict[str, Any] = {"channel": channel, "messages": batch}
    if params:
        kwargs["params"] = dict(params)
    result = _send(app, t.TASK_PUBLISH, kwargs, send_options)
    return PublishReceipt([str(m.get("id")) for m in batch], result)


def publish_batch(
    specs: Sequence[Mapping[str, Any]], *, app: Any = None, **send_options: Any
) -> Any:
    """Enqueue a batch publish: ``[{"channels": [...], "messages": [...]}, ...]`` (RSC22)."""
    fixed = []
    for spec in specs:
        channels = spec.get("channels")
        names = [channels] if isinstance(channels, str) else list(channels or [])
        batch = _with_ids([wire_message(m) for m in spec.get("messages") or []])
        fixed.append({"channels": names, "messages": batch})
    return _send(app, t.TASK_PUBLISH_BATCH, {"specs": fixed}, send_options)


def _query(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def history(
    channel: str,
    *,
    start: int | None = None,
    end: int | None = None,
    direction: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    max_items: int | None = None,
    app: Any = None,
    **send_options: Any,
) -> Any:
    """Enqueue a history query; the result is ``{"items": [...], "next": cursor | None}``."""
    query = _query(
        start=start, end=end, direction=direction, limit=limit, cursor=cursor, max_items=max_items
    )
    return _send(app, t.TASK_HISTORY, {"channel": channel, **query}, send_options)


def presence_get(
    channel: str,
    *,
    limit: int | None = None,
    client_id: str | None = None,
    connection_id: str | None = None,
    cursor: str | None = None,
    max_items: int | None = None,
    app: Any = None,
    **send_options: Any,
) -> Any:
    """Enqueue a query of present members; the result is a page like :func:`history`'s."""
    query = _query(
        limit=limit,
        client_id=client_id,
        connection_id=connection_id,
        cursor=cursor,
        max_items=max_items,
    )
    return _send(app, t.TASK_PRESENCE_GET, {"channel": channel, **query}, send_options)


def stats(
    *,
    start: int | None = None,
    end: int | None = None,
    direction: str | None = None,
    limit: int | None = None,
    unit: str | None = None,
    cursor: str | None = None,
    max_items: int | None = None,
    app: Any = None,
    **send_options: Any,
) -> Any:
    """Enqueue an app stats query; the result is a page of stats dicts."""
    query = _query(
        start=start,
        end=end,
        direction=direction,
        limit=limit,
        unit=unit,
        cursor=cursor,
        max_items=max_items,
    )
    return _send(app, t.TASK_STATS, query, send_options)


def time(*, app: Any = None, **send_options: Any) -> Any:
    """Enqueue a query of Ably's time (ms since the epoch)."""
    return _send(app, t.TASK_TIME, {}, send_options)


def channel_status(channel: str, *, app: Any = None, **send_options: Any) -> Any:
    """Enqueue a channel status query (``{"channelId", "status": {...}}``)."""
    return _send(app, t.TASK_CHANNEL_STATUS, {"channel": channel}, send_options)


def token_request(
    *,
    client_id: str | None = None,
    capability: Mapping[str, Any] | str | None = None,
    ttl: float | None = None,
    kind: str = "token_request",
    app: Any = None,
    **send_options: Any,
) -> Any:
    """Enqueue a signed TokenRequest (default) or, with ``kind="token"``, a token."""
    query = _query(
        client_id=client_id,
        capability=dict(capability) if isinstance(capability, Mapping) else capability,
        ttl=ttl,
        kind=kind,
    )
    return _send(app, t.TASK_TOKEN_REQUEST, query, send_options)
