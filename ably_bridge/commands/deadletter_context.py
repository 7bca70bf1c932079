"""Where ``ably-bridge deadletter`` works: the stream, the configuration, the redaction.

This module owns :class:`Context` (the dead-letter store on its Redis, the
bridge configuration when ``-c`` is given, and the secrets to keep out of
every message), :func:`load_bridge_config` (the configuration, without an Ably
key when the app id is known otherwise: nothing here talks to Ably) and
:func:`handler`, which runs an action with its context and turns Redis and
configuration errors into exit code 1 with a redacted message.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ably_bridge.bridge.secret import redact_url
from ably_bridge.commands import common
from ably_bridge.commands.deadletter_store import DeadLetterStore

if TYPE_CHECKING:
    from ably_bridge.bridge.config import BridgeConfig

__all__ = ["DEFAULT_REDIS_URL", "DEFAULT_STREAM", "Context", "handler", "load_bridge_config"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_STREAM = "ably-bridge:deadletter"


class Context:
    """The store, the configuration (if given) and the redaction of this invocation."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.config: BridgeConfig | None = load_bridge_config(args.config) if args.config else None
        url = args.redis_url or (
            self.config.redis_url.reveal()
            if self.config is not None
            else os.environ.get("REDIS_URL", "").strip() or DEFAULT_REDIS_URL
        )
        default_stream = self.config.dead_letter.stream if self.config else DEFAULT_STREAM
        self.stream: str = args.stream or default_stream
        self.where = f"{self.stream} on {redact_url(url)}"
        self._secrets = _secrets(args, url, self.config)
        from ably_bridge.bridge.redis_connect import open_redis

        client = open_redis(url, socket_timeout=10, socket_connect_timeout=5)
        self.store = DeadLetterStore(client, self.stream)

    def redact(self, text: str) -> str:
        return common.redact(text, self._secrets)

    def close(self) -> None:
        self.store.client.close()


_NO_KEY = "deadletter-tool.unused:unused"  # stands in for an Ably key nothing here uses


def load_bridge_config(path: str) -> BridgeConfig:
    """The configuration; without an Ably key too, when the app id is known otherwise.

    Nothing here talks to Ably, so a missing key only matters for the app id
    (which rebuilt envelopes carry): with ``app_id`` in the file or
    ``$ABLY_APP_ID`` the key is not needed.
    """
    from ably_bridge.bridge.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        if not all(p.startswith("ably.key_file:") for p in err.problems):
            raise
        try:
            config = load_config(path, {**os.environ, "ABLY_KEY": _NO_KEY})
        except ConfigError:
            raise err from None
        if config.app_id == _NO_KEY.split(".", 1)[0]:
            raise err from None
        return config


def _secrets(args: argparse.Namespace, url: str, config: BridgeConfig | None) -> list[str]:
    """Every secret this invocation may print by accident, longest first."""
    found = [url]
    if config is not None:
        found += [config.redis_url.reveal()]
        if config.celery_broker_url is not None:
            found.append(config.celery_broker_url.reveal())
        if config.ably.key is not None:
            found.append(config.ably.key.reveal())
        for route in config.routes:
            found += [rule.key.reveal() for rule in route.ciphers]
            for target in route.targets:
                secret = getattr(target, "url", None) or getattr(target, "broker_url", None)
                if secret is not None:
                    found.append(secret.reveal())
    values: set[str] = set()
    for value in found:
        try:
            password = urlsplit(value).password if "://" in value else None
        except ValueError:
            password = None
        if password:
            values.add(password)
        elif "://" not in value:
            values.add(value)
            if ":" in value:
                values.add(value.split(":", 1)[1])  # an Ably key's secret on its own
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def handler(run: Callable[[argparse.Namespace, Context], int]) -> common.Handler:
    """A handler: the context made, Redis and configuration errors as exit 1, redacted."""

    def guarded(args: argparse.Namespace) -> int:
        import redis

        from ably_bridge.bridge.config import ConfigError

        prog = args.tool_parser.prog
        ctx: Context | None = None
        try:
            ctx = Context(args)
            return run(args, ctx)
        except ConfigError as err:
            print(f"{prog}: {args.config}: {len(err.problems)} problem(s)", file=sys.stderr)
            for problem in err.problems:
                print(f"  {problem}", file=sys.stderr)
            return common.EXIT_ERROR
        except (redis.RedisError, ValueError) as exc:
            text = f"{type(exc).__name__}: {exc}"
            where = f" ({ctx.where})" if ctx is not None else ""
            redacted = ctx.redact(text) if ctx is not None else _redact_urls(text)
            print(f"{prog}: error{where}: {redacted}", file=sys.stderr)
            return common.EXIT_ERROR
        except BrokenPipeError:  # `... list | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return common.EXIT_OK
        finally:
            if ctx is not None:
                ctx.close()

    return common.tool(guarded)


def _redact_urls(text: str) -> str:
    return " ".join(redact_url(word) if "://" in word else word for word in text.split(" "))
