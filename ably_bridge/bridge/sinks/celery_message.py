"""Celery task messages for the bridge: what ``send_task`` would send, built cheaply.

This module owns :class:`TaskTemplate`: per Celery target, ``send_task`` builds
one sample message into a recording producer (:class:`_Recorder`), and per
event only what varies is filled in - the task id (``id``, ``root_id``,
``correlation_id``), ``argsrepr`` (:func:`args_repr`, the text of
``repr((envelope,))`` built without the dict), ``expires`` (from the current
time, as Celery computes it) and the JSON body. It also owns
:class:`SenderAMQP`, Celery's AMQP helper with a plain, cut ``repr`` for the
messages ``send_task`` still builds, and :func:`publish_signals`, which tells
when every task must go through ``send_task`` (publish-signal receivers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from celery import Celery, signals
from celery.app.amqp import AMQP
from celery.utils import time as celery_time
from celery.utils.time import maybe_make_aware
from kombu.serialization import dumps as kombu_dumps

from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.sinks.amqp_wire import PER_TASK_HEADERS
from ably_bridge.envelope import ITEMS_KEY, Envelope

__all__ = ["SenderAMQP", "TaskTemplate", "args_repr", "publish_signals", "short_repr"]

_SAMPLE_ID = "00000000-0000-4000-8000-0a1b1eb71d6e"  # the task id of a template's sample
_SAMPLE_ARG: dict[str, Any] = {"ably-bridge": "template sample"}


def _plus_seconds(when: datetime, seconds: float) -> datetime:
    return when + timedelta(seconds=seconds)  # (how Celery before 5.7 adds ``expires``)


# ``expires`` as the installed Celery's send_task computes it (5.7 added this helper).
_add_seconds: Callable[[datetime, float], datetime] = (
    getattr(celery_time, "add_seconds_to_datetime", None) or _plus_seconds
)


def short_repr(value: Any, limit: int) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=4096)
def _head_repr(source: str, app_id: str, channel: str, site: str, rule_id: str) -> str:
    """``({'source': .., 'appId': .., 'channel': .., 'site': .., 'ruleId': ..``."""
    head = {"source": source, "appId": app_id, "channel": channel, "site": site, "ruleId": rule_id}
    return "(" + repr(head)[:-1]


def args_repr(env: Envelope, limit: int) -> str:
    """``argsrepr`` of a task whose args are ``(env.to_dict(),)``: the same text as
    ``short_repr((env.to_dict(),), limit)``, without building the dict."""
    items = ITEMS_KEY.get(env.source)
    if items is None:
        return short_repr((env.to_dict(),), limit)
    head = _head_repr(env.source, env.app_id, env.channel, env.site, env.rule_id)
    text = f"{head}, 'timestamp': {env.timestamp!r}, '{items}': [{env.item!r}]}},)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SenderAMQP(AMQP):  # type: ignore[misc]
    """Celery's AMQP helper with a cheap ``argsrepr``/``kwargsrepr`` (plain ``repr``, cut)."""

    def as_task_v2(self, task_id: str, name: str, args: Any = None, kwargs: Any = None,
                   *rest: Any, **options: Any) -> Any:  # fmt: skip
        if options.get("argsrepr") is None:
            options["argsrepr"] = short_repr(tuple(args or ()), self.argsrepr_maxsize)
        if options.get("kwargsrepr") is None:
            options["kwargsrepr"] = short_repr(kwargs or {}, self.kwargsrepr_maxsize)
        return super().as_task_v2(task_id, name, args, kwargs, *rest, **options)


def publish_signals() -> bool:
    """Whether anything listens to Celery's publish signals (then every task goes
    through ``send_task``, which sends them)."""
    return bool(signals.before_task_publish.receivers or signals.after_task_publish.receivers)


class _NoConnection:
    """The ``connection`` of :class:`_Recorder`: ``send_task`` only wraps errors with it."""

    @staticmethod
    def _reraise_as_library_errors() -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


class _Recorder:
    """Stands in for a kombu producer while ``send_task`` builds one message: records it."""

    def __init__(self) -> None:
        self.connection = _NoConnection()
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def publish(self, body: Any, **kwargs: Any) -> None:
        self.calls.append((body, kwargs))


class TaskTemplate:
    """Celery's task message for one target, built by ``send_task`` once.

    :meth:`publish_args` fills in what varies per event; everything else
    (headers such as ``lang``/``task``/``origin``/``retries``, the target's
    extra headers, properties, routing, delivery mode, expiration, priority,
    the body's kwargs and embed) is what ``send_task`` produced.
    """

    __slots__ = (
        "body_tail",
        "declare",
        "expires",
        "headers",
        "overrides",
        "publish",
        "repr_limit",
    )

    def __init__(
        self,
        headers: dict[str, Any],
        publish: dict[str, Any],
        body_tail: str,
        declare: list[Any],
        expires: float | None,
        overrides: dict[str, Any],
        repr_limit: int,
    ) -> None:
        self.headers = headers  # in Celery's order; the per-task ones hold sample values
        self.publish = publish
        self.body_tail = body_tail
        self.declare = declare
        self.expires = expires
        self.overrides = overrides  # the target's own headers that replace per-task ones
        self.repr_limit = repr_limit

    @classmethod
    def capture(
        cls, app: Celery, target: CeleryTarget, options: dict[str, Any], send: dict[str, Any]
    ) -> TaskTemplate | None:
        """Let ``send_task`` build a sample message; None if a template cannot reproduce it."""
        conf = app.conf
        if conf.task_send_sent_event or conf.task_protocol != 2:
            return None
        recorder = _Recorder()
        app.send_task(
            target.task, args=(_SAMPLE_ARG,), task_id=_SAMPLE_ID, producer=recorder, **send,
            **options,
        )  # fmt: skip
        if len(recorder.calls) != 1:
            return None
        body, kwargs = recorder.calls[0]
        headers = dict(kwargs.pop("headers", None) or {})
        if not (
            isinstance(body, tuple)
            and len(body) == 3
            and list(body[0]) == [_SAMPLE_ARG]
            and body[1] == {}
            and kwargs.pop("serializer", None) == "json"
            and not kwargs.pop("compression", None)
            and kwargs.get("correlation_id") == _SAMPLE_ID
            and headers.get("id") == _SAMPLE_ID
            and headers.get("root_id") == _SAMPLE_ID
        ):
            return None
        kwargs.pop("correlation_id")
        kwargs.pop("reply_to", None)  # the sending thread's, set per batch
        # The sample's id must not have leaked anywhere else (a parent id, a custom header).
        rest = {k: v for k, v in headers.items() if k not in PER_TASK_HEADERS}
        if _SAMPLE_ID in repr((rest, kwargs)):
            return None
        dumped = kombu_dumps(list(body[1:]), serializer="json")  # type: ignore[no-untyped-call]
        content_type, content_encoding, tail = dumped
        if not tail.startswith("[") or not tail.endswith("]"):
            return None
        kwargs["content_type"] = content_type
        kwargs["content_encoding"] = content_encoding
        declare = list(kwargs.pop("declare", None) or [])
        kwargs.pop("retry", None)  # given per publish
        expires = target.expires if headers.get("expires") is not None else None
        overrides = {k: v for k, v in target.headers.items() if k in PER_TASK_HEADERS}
        return cls(
            headers,
            kwargs,
            "," + tail[1:],
            declare,
            expires,
            overrides,
            app.amqp.argsrepr_maxsize,
        )

    def publish_args(
        self, app: Celery, target: CeleryTarget, env: Envelope, task_id: str
    ) -> tuple[str, dict[str, Any]]:
        """(body, headers) of the task message for ``env``."""
        body = f"[[{env.to_json()}]{self.body_tail}"
        headers = dict(self.headers)
        headers["id"] = task_id
        headers["root_id"] = task_id
        headers["argsrepr"] = args_repr(env, self.repr_limit)
        if self.expires is not None:
            headers["expires"] = self.expires_at(app)
        if self.overrides:  # (Celery lets a header given to send_task override its own)
            headers.update(self.overrides)
        return body, headers

    def expires_at(self, app: Celery) -> str | None:
        """The ``expires`` header of a task sent now (as Celery computes it), or None."""
        if self.expires is None:
            return None
        when = maybe_make_aware(_add_seconds(app.now(), self.expires), tz=app.timezone)
        return str(when.isoformat())
