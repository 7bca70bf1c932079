"""The Ably tasks: their stable names, their bodies, and registration on any Celery app.

This module owns the task names (``ably.publish``, ``ably.publish_batch``,
``ably.presence_get``, ``ably.history``, ``ably.stats``, ``ably.time``,
``ably.channel_status``, ``ably.token_request``), the REST operations behind
them (plain functions of an :class:`~ably_bridge.rest.AblyRest`, testable
without Celery) and :func:`register_tasks`, which binds them to an app with the
retry policy of :mod:`workers.retry`.

Arguments and results are JSON: messages travel as Ably wire dicts (binary
``data`` as base64 with ``encoding: "base64"``), pages as
``{"items": [...], "next": cursor | None}`` where ``cursor`` is an opaque string
to pass back as ``cursor=`` for the next page.

Publishing is idempotent across retries and redeliveries: every message carries
its id from the moment it is enqueued (the producer helpers assign
``<base>:<index>``; a message sent without ids gets ids derived from the task
id, which survives retries and redeliveries too). Every retry of a publish must
start within ``publish_deadline`` seconds of its first attempt, which the
settings keep inside Ably's idempotent-publish window.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.models import Message, PresenceMessage
from ably_bridge.protocol.stats import Stats
from ably_bridge.protocol.tokens import TokenParams
from ably_bridge.rest import AblyRest, BatchPublishSpec
from ably_bridge.rest.channels import Channel, history_params
from ably_bridge.rest.pagination import parse_links
from workers.budget import RetryBudget
from workers.client import ClientProvider
from workers.runner import Runner
from workers.settings import WorkerSettings

__all__ = [
    "TASK_CHANNEL_STATUS",
    "TASK_HISTORY",
    "TASK_NAMES",
    "TASK_PRESENCE_GET",
    "TASK_PUBLISH",
    "TASK_PUBLISH_BATCH",
    "TASK_STATS",
    "TASK_TIME",
    "TASK_TOKEN_REQUEST",
    "channel_status",
    "derived_base",
    "history",
    "message_json",
    "presence_get",
    "publish",
    "publish_batch",
    "read_pages",
    "register_tasks",
    "stats",
    "token_request",
    "with_ids",
]

log = logging.getLogger(__name__)

TASK_PUBLISH = "ably.publish"
TASK_PUBLISH_BATCH = "ably.publish_batch"
TASK_PRESENCE_GET = "ably.presence_get"
TASK_HISTORY = "ably.history"
TASK_STATS = "ably.stats"
TASK_TIME = "ably.time"
TASK_CHANNEL_STATUS = "ably.channel_status"
TASK_TOKEN_REQUEST = "ably.token_request"  # noqa: S105 - a task name, not a secret
TASK_NAMES = (
    TASK_PUBLISH,
    TASK_PUBLISH_BATCH,
    TASK_PRESENCE_GET,
    TASK_HISTORY,
    TASK_STATS,
    TASK_TIME,
    TASK_CHANNEL_STATUS,
    TASK_TOKEN_REQUEST,
)
_SECRET_RESULTS = frozenset({TASK_TOKEN_REQUEST})
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_RESULT_ITEMS = 5000  # items one task result may hold

T = TypeVar("T")
Page = dict[str, Any]
Call = dict[str, Any]


# -- JSON forms ------------------------------------------------------------------
def message_json(item: Message | PresenceMessage) -> dict[str, Any]:
    """A decoded message as a JSON-safe wire dict (bytes as base64)."""
    out = item.to_dict(binary=False)
    out.pop("connectionKey", None)
    return out


def _message(raw: Mapping[str, Any]) -> Message:
    """A :class:`Message` from a wire dict, its ``encoding`` undone (base64, json)."""
    message = Message.from_encoded(raw)
    if message.decode_error is not None:
        raise AblyException(
            f"message data cannot be decoded: {message.decode_error.message}",
            ErrorCode.INVALID_DATA_OR_ENCODING,
            400,
        )
    return message


def derived_base(task_id: str) -> str:
    """An idempotent id base derived from a task id (stable across retries and redelivery)."""
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()[:9]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def with_ids(messages: Sequence[Mapping[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """``messages`` as dicts, given ``<base>:<i>`` ids from ``task_id`` when none has an id."""
    out = [dict(m) for m in messages]
    if out and not any(m.get("id") for m in out):
        base = derived_base(task_id)
        for index, message in enumerate(out):
            message["id"] = f"{base}:{index}"
    return out


# -- operations (no Celery) --------------------------------------------------------
def publish(
    rest: AblyRest,
    channel: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish wire-dict ``messages`` on ``channel``; ``{"channel", "messageIds", "serials"}``."""
    if not messages:
        raise AblyException("nothing to publish", ErrorCode.BAD_REQUEST, 400)
    batch = [_message(m) for m in messages]
    result = Channel(rest, channel).publish(messages=batch, params=params)
    return {"channel": channel, "messageIds": [m.id for m in batch], "serials": result.serials}


def publish_batch(rest: AblyRest, specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Batch publish (RSC22); one ``{"successCount", "failureCount", "results"}`` per spec."""
    parsed = []
    for spec in specs:
        channels = spec.get("channels")
        names = [channels] if isinstance(channels, str) else list(channels or [])
        parsed.append(BatchPublishSpec(names, [_message(m) for m in spec.get("messages") or []]))
    answer = rest.batch_publish(parsed)
    results = answer if isinstance(answer, list) else [answer]
    _raise_retryable(results)
    return [
        {
            "successCount": r.success_count,
            "failureCount": r.failure_count,
            "results": [_batch_entry(e) for e in r.results],
        }
        for r in results
    ]


def _raise_retryable(results: Sequence[Any]) -> None:
    """A channel of a batch that failed transiently (5xx, 429) makes the whole task retry.

    Every message keeps its id, so the channels that succeeded keep one copy
    when the batch is sent again. Other per-channel refusals stay in the result.
    """
    for result in results:
        for entry in result.results:
            error = entry.get("error")
            if isinstance(error, AblyException) and (
                error.status_code >= 500 or error.status_code == 429
            ):
                raise error


def _batch_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    error = out.get("error")
    if isinstance(error, AblyException):
        out["error"] = error.to_dict()
    return out


def _channel_path(channel: str) -> str:
    if not isinstance(channel, str) or not channel:
        raise AblyException("a channel name must be a non-empty string", 40010, 400)
    return "/channels/" + quote(channel, safe="")


def _cursor(link: str | None) -> str | None:
    return None if link is None else urlsplit(link).query or None


def read_pages(
    rest: AblyRest,
    path: str,
    params: Mapping[str, Any],
    decode: Callable[[Any], list[dict[str, Any]]],
    *,
    cursor: str | None = None,
    max_items: int | None = None,
) -> Page:
    """One page (or pages up to ``max_items``) of ``path``; ``{"items", "next"}``.

    ``cursor`` (the ``next`` of an earlier answer) replaces ``params``; it is
    only ever sent to ``path``, so a cursor cannot redirect the request.
    """
    if max_items is not None and not 1 <= max_items <= MAX_RESULT_ITEMS:
        # One task result stays small: page through more with the cursor
        # (workers.paging.iter_history / iter_presence do it for you).
        raise AblyException(
            f"max_items must be between 1 and {MAX_RESULT_ITEMS}",
            ErrorCode.INVALID_PARAMETER_VALUE,
            400,
        )
    query: dict[str, Any] = dict(parse_qsl(cursor)) if cursor else dict(params)
    page_size = int(query.get("limit") or DEFAULT_PAGE)
    items: list[dict[str, Any]] = []
    while True:
        if max_items is not None:
            query["limit"] = min(page_size, max_items - len(items), MAX_PAGE)
        response = rest.http.request("GET", path, params=query)
        items.extend(decode(response.body))
        links = parse_links(response.headers.get("Link"), response.path)
        next_cursor = _cursor(links.get("next"))
        if max_items is None or next_cursor is None or len(items) >= max_items:
            if max_items is not None and next_cursor is not None:
                # The last request may have asked for fewer; the cursor keeps the page size.
                next_cursor = urlencode({**dict(parse_qsl(next_cursor)), "limit": page_size})
            return {"items": items, "next": next_cursor}
        query = dict(parse_qsl(next_cursor))


def _decode_messages(body: Any) -> list[dict[str, Any]]:
    return [message_json(m) for m in Message.from_encoded_array(body or [])]


def _decode_presence(body: Any) -> list[dict[str, Any]]:
    return [message_json(m) for m in PresenceMessage.from_encoded_array(body or [])]


def _decode_stats(body: Any) -> list[dict[str, Any]]:
    return [Stats.from_dict(item).to_dict() for item in body or []]


def history(
    rest: AblyRest,
    channel: str,
    *,
    start: int | None = None,
    end: int | None = None,
    direction: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    max_items: int | None = None,
) -> Page:
    """Channel history (RSL2) as a page of message dicts."""
    params = history_params(start, end, direction, limit)
    path = _channel_path(channel) + "/messages"
    return read_pages(rest, path, params, _decode_messages, cursor=cursor, max_items=max_items)


def presence_get(
    rest: AblyRest,
    channel: str,
    *,
    limit: int | None = None,
    client_id: str | None = None,
    connection_id: str | None = None,
    cursor: str | None = None,
    max_items: int | None = None,
) -> Page:
    """Present members (RSP3) as a page of presence message dicts."""
    history_params(limit=limit)  # validates the limit
    raw = {"limit": limit, "clientId": client_id, "connectionId": connection_id}
    params = {k: v for k, v in raw.items() if v is not None}
    path = _channel_path(channel) + "/presence"
    return read_pages(rest, path, params, _decode_presence, cursor=cursor, max_items=max_items)


def stats(
    rest: AblyRest,
    *,
    start: int | None = None,
    end: int | None = None,
    direction: str | None = None,
    limit: int | None = None,
    unit: str | None = None,
    cursor: str | None = None,
    max_items: int | None = None,
) -> Page:
    """Application stats (RSC6) as a page of ``Stats.to_dict()`` items."""
    params = history_params(start, end, direction, limit)
    if unit is not None:
        if unit not in ("minute", "hour", "day", "month"):
            raise AblyException(
                "unit must be minute, hour, day or month", ErrorCode.INVALID_PARAMETER_VALUE, 400
            )
        params["unit"] = unit
    return read_pages(rest, "/stats", params, _decode_stats, cursor=cursor, max_items=max_items)


def channel_status(rest: AblyRest, channel: str) -> dict[str, Any]:
    """Channel details and occupancy (RSL8) as ``ChannelDetails.to_dict()``."""
    return Channel(rest, channel).status().to_dict()


def token_request(
    rest: AblyRest,
    *,
    client_id: str | None = None,
    capability: Mapping[str, Any] | str | None = None,
    ttl: float | None = None,
    kind: str = "token_request",
) -> dict[str, Any]:
    """A signed TokenRequest (``kind="token_request"``) or a token (``kind="token"``).

    A TokenRequest is what an auth endpoint hands a client to exchange for a
    token itself; ``"token"`` exchanges it here and returns the TokenDetails.
    """
    params = TokenParams(ttl=ttl, capability=capability, client_id=client_id)
    if kind == "token":
        return rest.auth.request_token(params).to_dict()
    if kind == "token_request":
        return rest.auth.create_token_request(params).to_dict()
    raise AblyException(
        'kind must be "token_request" or "token"', ErrorCode.INVALID_PARAMETER_VALUE, 400
    )


# -- Celery binding ------------------------------------------------------------------
class _RedactSecretResults(logging.Filter):
    """Keeps token results out of Celery's "Task succeeded" log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping) and args.get("name") in _SECRET_RESULTS:
            record.args = {**args, "return_value": "<redacted>"}
        return True


_REDACTOR = _RedactSecretResults()


def register_tasks(
    app: Any,
    settings: WorkerSettings | None = None,
    *,
    provider: ClientProvider | None = None,
    budget: RetryBudget | None = None,
) -> dict[str, Any]:
    """Register the ``ably.*`` tasks on ``app`` (any Celery app); returns them by name.

    ``settings`` default to :meth:`WorkerSettings.from_env`. The tasks ack late,
    are re-queued if their worker dies, and retry through the broker; all
    tasks of the app share one REST client per process (``provider``) and one
    retry budget (``budget``, default from ``settings``).
    """
    settings = settings or WorkerSettings.from_env()
    provider = provider or ClientProvider(settings)
    budget = budget or RetryBudget(
        base_delay=settings.budget_base_delay, max_delay=settings.budget_max_delay
    )
    runner = Runner(settings, provider, budget)
    trace_logger = logging.getLogger("celery.app.trace")
    if _REDACTOR not in trace_logger.filters:
        trace_logger.addFilter(_REDACTOR)
    options: dict[str, Any] = {
        "bind": True,
        "shared": False,  # a shared task would be added to every app created later
        "acks_late": True,
        "reject_on_worker_lost": True,
        "max_retries": settings.retry.max_retries,
        "serializer": "json",
    }

    @app.task(name=TASK_PUBLISH, **options)  # type: ignore[untyped-decorator]
    def publish_task(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        def fix_ids(call: Call) -> Call:
            return {**call, "messages": with_ids(call["messages"], str(self.request.id))}

        return runner.execute(
            self,
            TASK_PUBLISH,
            args,
            kwargs,
            lambda rest, c: publish(rest, c["channel"], c["messages"], c.get("params")),
            prepare=fix_ids,
            publish=True,
        )

    @app.task(name=TASK_PUBLISH_BATCH, **options)  # type: ignore[untyped-decorator]
    def publish_batch_task(self: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        def fix_ids(call: Call) -> Call:
            task_id = str(self.request.id)
            specs = [
                {**spec, "messages": with_ids(spec.get("messages") or [], f"{task_id}/{i}")}
                for i, spec in enumerate(call["specs"])
            ]
            return {**call, "specs": specs}

        return runner.execute(
            self,
            TASK_PUBLISH_BATCH,
            args,
            kwargs,
            lambda rest, c: publish_batch(rest, c["specs"]),
            prepare=fix_ids,
            publish=True,
        )

    @app.task(name=TASK_HISTORY, **options)  # type: ignore[untyped-decorator]
    def history_task(self: Any, *args: Any, **kwargs: Any) -> Page:
        return runner.execute(self, TASK_HISTORY, args, kwargs, lambda r, c: history(r, **c))

    @app.task(name=TASK_PRESENCE_GET, **options)  # type: ignore[untyped-decorator]
    def presence_get_task(self: Any, *args: Any, **kwargs: Any) -> Page:
        return runner.execute(
            self, TASK_PRESENCE_GET, args, kwargs, lambda r, c: presence_get(r, **c)
        )

    @app.task(name=TASK_STATS, **options)  # type: ignore[untyped-decorator]
    def stats_task(self: Any, *args: Any, **kwargs: Any) -> Page:
        return runner.execute(self, TASK_STATS, args, kwargs, lambda r, c: stats(r, **c))

    @app.task(name=TASK_TIME, **options)  # type: ignore[untyped-decorator]
    def time_task(self: Any, *args: Any, **kwargs: Any) -> int:
        return runner.execute(self, TASK_TIME, args, kwargs, lambda r, c: r.time())

    @app.task(name=TASK_CHANNEL_STATUS, **options)  # type: ignore[untyped-decorator]
    def channel_status_task(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return runner.execute(
            self, TASK_CHANNEL_STATUS, args, kwargs, lambda r, c: channel_status(r, c["channel"])
        )

    @app.task(name=TASK_TOKEN_REQUEST, **options)  # type: ignore[untyped-decorator]
    def token_request_task(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return runner.execute(
            self, TASK_TOKEN_REQUEST, args, kwargs, lambda r, c: token_request(r, **c)
        )

    return {
        TASK_PUBLISH: publish_task,
        TASK_PUBLISH_BATCH: publish_batch_task,
        TASK_HISTORY: history_task,
        TASK_PRESENCE_GET: presence_get_task,
        TASK_STATS: stats_task,
        TASK_TIME: time_task,
        TASK_CHANNEL_STATUS: channel_status_task,
        TASK_TOKEN_REQUEST: token_request_task,
    }
