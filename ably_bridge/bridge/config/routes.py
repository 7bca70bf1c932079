"""The routes of the configuration: channels, sources, names, actions, ciphers, targets.

This module owns :class:`RouteParser`, the part of the validating parser that
reads ``routes[i]`` - the channel names and patterns or ``discover`` prefixes,
``sources``, ``names``, ``actions``, ``data``, per-channel ``ciphers`` (keys only from
``key_env`` / ``key_file``), ``presence_snapshot`` and the ``targets`` (Celery
tasks and Redis Streams, with their key templates and optional per-target URLs) -
into :class:`~ably_bridge.bridge.config.model.Route` values. The bridge-wide
sections are read by :mod:`~ably_bridge.bridge.config.parse`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from ably_bridge.bridge.config.checks import MAX_LIST
from ably_bridge.bridge.config.fields import (
    BROKER_SCHEMES,
    STREAM_SCHEMES,
    FieldReader,
    check_cipher_key,
)
from ably_bridge.bridge.config.model import (
    DEFAULT_PRESENCE_KEY,
    KEY_PLACEHOLDERS,
    PRESENCE_KEY_PLACEHOLDERS,
    SOURCES,
    CeleryTarget,
    CipherRule,
    Discovery,
    PresenceSnapshotSettings,
    Route,
    Source,
    StreamTarget,
    Target,
)
from ably_bridge.bridge.secret import Secret
from ably_bridge.envelope.shape import MESSAGE_ACTION_NAMES

__all__ = ["RouteParser"]

LAYOUTS = ("envelope", "flat")
ROUTE_ACTIONS = MESSAGE_ACTION_NAMES  # TM5, as ably-js names them
DATA_MODES = ("decoded", "encoded")
QUEUE_TYPES = ("classic", "quorum")
MAX_TARGETS = 100  # targets (and cipher rules) of one route
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")

_ROUTE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(?:[.:][A-Za-z_][A-Za-z0-9_-]*)*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class RouteParser(FieldReader):
    """Reads the ``routes`` list, collecting every problem with its field path."""

    def routes(self, raw: Any, broker: Secret | None) -> tuple[Route, ...] | None:
        if raw is None:
            self.fail("routes", "required (at least one route)")
            return None
        if not isinstance(raw, list) or not raw:
            self.fail("routes", "must be a non-empty list")
            return None
        if len(raw) > MAX_LIST:
            self.fail("routes", f"must have at most {MAX_LIST:,} routes")
            return None
        out: list[Route] = []
        seen: set[str] = set()
        ok = True
        for i, item in enumerate(raw):
            path = f"routes[{i}]"
            if not isinstance(item, Mapping):
                self.fail(path, "must be a mapping")
                ok = False
                continue
            route = self.route(item, path, broker)
            if route is None:
                ok = False
                continue
            if route.id in seen:
                self.fail(f"{path}.id", f"duplicate route id {route.id!r}")
                ok = False
            seen.add(route.id)
            out.append(route)
        return tuple(out) if ok else None

    def route(self, raw: Mapping[str, Any], path: str, broker: Secret | None) -> Route | None:
        before = len(self.problems)
        self.known(
            raw,
            {
                "id", "channels", "discover", "sources", "names", "actions", "ciphers",
                "data", "presence_snapshot", "targets",
            },
            path,
        )  # fmt: skip
        route_id = self.text(raw, "id", f"{path}.id")
        if route_id is None:
            if "id" not in raw:
                self.fail(f"{path}.id", "required")
        elif not _ROUTE_ID.match(route_id):
            self.fail(f"{path}.id", "must be 1-64 letters, digits, '_', '.' or '-'")
        channels = self.patterns(raw, "channels", f"{path}.channels")
        discovery = self.discovery(raw.get("discover"), f"{path}.discover")
        if not channels and discovery is None:
            self.fail(f"{path}.channels", "required (channel names or patterns, or discover)")
        sources_raw = self.str_list(raw, "sources", f"{path}.sources") or ("message",)
        sources: set[Source] = set()
        for i, src in enumerate(sources_raw):
            if src in SOURCES:
                sources.add(src)
            else:
                self.fail(f"{path}.sources[{i}]", f"must be one of {', '.join(SOURCES)}")
        names = self.patterns(raw, "names", f"{path}.names")
        actions = self.actions(raw, f"{path}.actions", sources)
        data = self.text(raw, "data", f"{path}.data", "decoded")
        if data not in DATA_MODES:
            self.fail(f"{path}.data", f"must be one of {', '.join(DATA_MODES)}")
        ciphers = self.ciphers(raw.get("ciphers"), f"{path}.ciphers")
        snapshot = self.snapshot(raw.get("presence_snapshot"), f"{path}.presence_snapshot")
        if snapshot is not None and "presence" not in sources:
            self.fail(f"{path}.presence_snapshot", "needs 'presence' in sources")
        targets = self.targets(raw.get("targets"), f"{path}.targets", broker)
        if len(self.problems) != before or route_id is None or targets is None:
            return None
        return Route(
            id=route_id,
            channels=channels,
            targets=targets,
            sources=frozenset(sources),
            names=names,
            actions=actions,
            discovery=discovery,
            ciphers=ciphers,
            data=data,  # type: ignore[arg-type]
            presence_snapshot=snapshot,
        )

    def actions(
        self, raw: Mapping[str, Any], path: str, sources: set[Source]
    ) -> frozenset[str] | None:
        """``actions``: the message actions (TM5, as ``message.update``...) a route takes."""
        if "actions" not in raw:
            return None
        before = len(self.problems)
        listed = self.str_list(raw, "actions", path)
        if not listed:
            if len(self.problems) == before:
                self.fail(path, "must list at least one action (leave it out for every action)")
            return None
        for i, action in enumerate(listed):
            if action not in ROUTE_ACTIONS:
                self.fail(f"{path}[{i}]", f"must be one of {', '.join(ROUTE_ACTIONS)}")
        if "message" not in sources:
            self.fail(path, "needs 'message' in sources")
        return frozenset(listed)

    def discovery(self, raw: Any, path: str) -> Discovery | None:
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            self.fail(path, "must be a mapping with 'prefixes' and optional 'interval'")
            return None
        self.known(raw, {"prefixes", "interval"}, path)
        prefixes = self.str_list(raw, "prefixes", f"{path}.prefixes")
        if not prefixes:
            self.fail(f"{path}.prefixes", "required (at least one channel name prefix)")
        interval = self.number(
            raw, "interval", f"{path}.interval", 30.0, minimum=1.0, maximum=86_400.0
        )
        return Discovery(prefixes=prefixes, interval=interval)

    def ciphers(self, raw: Any, path: str) -> tuple[CipherRule, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list) or len(raw) > MAX_TARGETS:
            self.fail(
                path, f"must be a list of at most {MAX_TARGETS} {{channels, key_env | key_file}}"
            )
            return ()
        out: list[CipherRule] = []
        for i, item in enumerate(raw):
            ipath = f"{path}[{i}]"
            if not isinstance(item, Mapping):
                self.fail(ipath, "must be a mapping")
                continue
            advice = {
                "key": "a cipher key must not be written in the config file; "
                "use key_env (an environment variable name) or key_file"
            }
            self.known(item, {"channels", "key_env", "key_file"}, ipath, advice)
            channels = self.patterns(item, "channels", f"{ipath}.channels")
            if not channels:
                self.fail(f"{ipath}.channels", "required")
            key_text: str | None = None
            key_path = f"{ipath}.key_env"
            if item.get("key_env") is not None:
                env_name = item["key_env"]
                if not isinstance(env_name, str) or not env_name:
                    self.fail(key_path, "must be an environment variable name")
                elif not self.env.get(env_name):
                    self.fail(key_path, f"environment variable {env_name} is not set")
                else:
                    key_text = self.env[env_name]
            elif item.get("key_file") is not None:
                key_path = f"{ipath}.key_file"
                key_text = self.read_secret_file(item["key_file"], key_path)
            elif "key" not in item:
                self.fail(ipath, "needs key_env or key_file")
            if key_text is not None and check_cipher_key(key_text, key_path, self) and channels:
                out.append(CipherRule(channels=channels, key=Secret(key_text)))
        return tuple(out)

    def snapshot(self, raw: Any, path: str) -> PresenceSnapshotSettings | None:
        if raw is None or raw is False:
            return None
        if raw is True:
            return PresenceSnapshotSettings()
        if not isinstance(raw, Mapping):
            self.fail(path, "must be true, false or a mapping with 'key'")
            return None
        self.known(raw, {"key"}, path)
        key = self.text(raw, "key", f"{path}.key", DEFAULT_PRESENCE_KEY)
        if key is None:
            return None
        self.template(key, f"{path}.key", PRESENCE_KEY_PLACEHOLDERS)
        return PresenceSnapshotSettings(key=key)

    def template(self, value: str, path: str, allowed: frozenset[str]) -> None:
        try:
            fields = [
                name for _, name, spec, conv in string.Formatter().parse(value) if name is not None
            ]
        except ValueError as exc:
            self.fail(path, f"invalid key template: {exc}")
            return
        for name in fields:
            if name not in allowed:
                known = ", ".join("{" + p + "}" for p in sorted(allowed))
                self.fail(path, f"unknown placeholder {{{name}}}; known: {known}")

    def targets(self, raw: Any, path: str, broker: Secret | None) -> tuple[Target, ...] | None:
        if raw is None:
            self.fail(path, "required (at least one target)")
            return None
        if not isinstance(raw, list) or not raw:
            self.fail(path, "must be a non-empty list")
            return None
        if len(raw) > MAX_TARGETS:
            self.fail(path, f"must have at most {MAX_TARGETS} targets")
            return None
        out: list[Target] = []
        for i, item in enumerate(raw):
            ipath = f"{path}[{i}]"
            if not isinstance(item, Mapping):
                self.fail(ipath, "must be a mapping")
                continue
            kind = item.get("type")
            target: Target | None
            if kind == "celery":
                target = self.celery_target(item, ipath, broker)
            elif kind == "redis_stream":
                target = self.stream_target(item, ipath)
            else:
                self.fail(f"{ipath}.type", "required: 'celery' or 'redis_stream'")
                continue
            if target is not None:
                out.append(target)
        return tuple(out) if len(out) == len(raw) else None

    def celery_target(
        self, raw: Mapping[str, Any], path: str, broker: Secret | None
    ) -> CeleryTarget | None:
        before = len(self.problems)
        self.known(
            raw,
            {"type", "task", "queue", "routing_key", "priority", "expires", "headers",
             "broker_url", "broker_url_file", "queue_type"},
            path,
        )  # fmt: skip
        task = self.text(raw, "task", f"{path}.task")
        if task is None:
            if "task" not in raw:
                self.fail(f"{path}.task", "required")
        elif not _TASK_NAME.match(task):
            self.fail(f"{path}.task", "must be a dotted task name such as 'app.tasks.handle'")
        priority: int | None = None
        if raw.get("priority") is not None:
            priority = self.integer(raw, "priority", f"{path}.priority", 0, minimum=0)
            if priority > 255:
                self.fail(f"{path}.priority", "must be between 0 and 255")
        expires: float | None = None
        if raw.get("expires") is not None:
            expires = self.number(
                raw, "expires", f"{path}.expires", 0.0, exclusive=True, maximum=365 * 86_400.0
            )
        headers: dict[str, str] = {}
        headers_raw = raw.get("headers")
        if headers_raw is not None:
            if not isinstance(headers_raw, Mapping):
                self.fail(f"{path}.headers", "must be a mapping of strings")
            else:
                for name, value in headers_raw.items():
                    if not isinstance(name, str) or not _HEADER_NAME.match(name):
                        self.fail(f"{path}.headers", f"invalid header name {name!r}")
                    elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
                        self.fail(f"{path}.headers.{name}", "must be a string or a number")
                    else:
                        headers[name] = str(value)
        own: Secret | None = None
        if raw.get("broker_url") is not None or raw.get("broker_url_file") is not None:
            own = self.url(
                raw, "broker_url", f"{path}.broker_url", None, BROKER_SCHEMES, required=True
            )
        elif broker is None and not self.reported(
            "CELERY_BROKER_URL", "celery.broker_url", "celery.broker_url_file"
        ):
            self.fail(f"{path}.broker_url", "required (set CELERY_BROKER_URL or celery.broker_url)")
        queue_type = self.text(raw, "queue_type", f"{path}.queue_type")
        if queue_type is not None:
            effective = own or broker
            if queue_type not in QUEUE_TYPES:
                self.fail(f"{path}.queue_type", f"must be one of {', '.join(QUEUE_TYPES)}")
            elif effective is not None and not effective.reveal().lower().startswith(AMQP_SCHEMES):
                self.fail(f"{path}.queue_type", "applies to AMQP (RabbitMQ) brokers only")
        if len(self.problems) != before or task is None:
            return None
        return CeleryTarget(
            task=task,
            queue=self.text(raw, "queue", f"{path}.queue"),
            routing_key=self.text(raw, "routing_key", f"{path}.routing_key"),
            priority=priority,
            expires=expires,
            headers=headers,
            broker_url=own,
            queue_type=queue_type,  # type: ignore[arg-type]
        )

    def stream_target(self, raw: Mapping[str, Any], path: str) -> StreamTarget | None:
        before = len(self.problems)
        self.known(raw, {"type", "key", "maxlen", "approximate", "layout", "url", "url_file"}, path)
        key = self.text(raw, "key", f"{path}.key")
        if key is None:
            if "key" not in raw:
                self.fail(f"{path}.key", "required (e.g. 'ably:{channel}')")
        else:
            self.template(key, f"{path}.key", KEY_PLACEHOLDERS)
        maxlen: int | None = None
        if raw.get("maxlen") is not None:
            maxlen = self.integer(raw, "maxlen", f"{path}.maxlen", 1, minimum=1, maximum=10**10)
        layout = self.text(raw, "layout", f"{path}.layout", "envelope")
        if layout not in LAYOUTS:
            self.fail(f"{path}.layout", f"must be one of {', '.join(LAYOUTS)}")
        url: Secret | None = None
        if raw.get("url") is not None or raw.get("url_file") is not None:
            url = self.url(raw, "url", f"{path}.url", None, STREAM_SCHEMES, required=True)
        approximate = self.boolean(raw, "approximate", f"{path}.approximate", True)
        if len(self.problems) != before or key is None:
            return None
        return StreamTarget(
            key=key,
            maxlen=maxlen,
            approximate=approximate,
            layout=layout,  # type: ignore[arg-type]
            url=url,
        )
