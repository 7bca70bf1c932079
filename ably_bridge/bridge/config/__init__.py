"""Bridge configuration: the file format, environment overrides, secrets and validation.

This module owns the entry points: :func:`load_config` that reads a YAML
(``.yaml``/``.yml``, PyYAML ``safe_load``) or TOML (``.toml``) file and applies
environment overrides, :func:`parse_config` that validates an already-parsed
mapping, and :func:`check_config` behind ``ably-bridge check-config``. It
re-exports the model - :class:`BridgeConfig` and everything in it (routes,
targets, delivery, dead-letter, health and sharding settings, :class:`ConfigError`)
from :mod:`~ably_bridge.bridge.config.model` - and :data:`ENV_OVERRIDES`; import
them from here. Nothing here connects to anything.

Rules that matter to operators:

* **Secrets come only from the environment or from a file path.** The Ably key
  is ``ABLY_KEY`` or ``ably.key_file``; a cipher key is ``key_env`` or
  ``key_file``; a Redis or broker URL with a password comes from ``REDIS_URL`` /
  ``CELERY_BROKER_URL`` or ``url_file`` / ``broker_url_file``. A literal secret in
  the file is an error that names the field and says what to use instead.
* **Every problem is reported at once**, each with its field path, e.g.
  ``routes[2].targets[0].task: required``. Secret values never appear in an
  error, a repr or a log line (they are held as :class:`Secret`).
* Environment overrides: ``ABLY_KEY``, ``ABLY_KEY_FILE``, ``ABLY_ENDPOINT``,
  ``ABLY_PORT``, ``ABLY_TLS``,
  ``ABLY_APP_ID``, ``REDIS_URL``, ``CELERY_BROKER_URL``, ``ABLY_BRIDGE_SITE``,
  ``ABLY_BRIDGE_KEY_PREFIX``, ``ABLY_BRIDGE_HEALTH_PORT``, ``ABLY_BRIDGE_LOG_LEVEL``,
  and for sharding ``ABLY_BRIDGE_SHARDING`` (the mode), ``ABLY_BRIDGE_REPLICA_INDEX``
  and ``ABLY_BRIDGE_REPLICAS`` (static mode; the index defaults to the ordinal of a
  StatefulSet host name such as ``ably-bridge-2``).

The validating parser lives in :mod:`~ably_bridge.bridge.config.parse` (the
sections and environment overrides), :mod:`~ably_bridge.bridge.config.routes`
(routes and targets) and :mod:`~ably_bridge.bridge.config.fields` (typed fields
and secret sources).
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ably_bridge.bridge.config.checks import MAX_DEPTH, MAX_FILE_BYTES
from ably_bridge.bridge.config.model import (
    DEFAULT_PRESENCE_KEY as DEFAULT_PRESENCE_KEY,
)
from ably_bridge.bridge.config.model import (
    KEY_PLACEHOLDERS,
    SOURCES,
    AblySettings,
    BridgeConfig,
    CeleryTarget,
    CipherRule,
    ConfigError,
    DeadLetterSettings,
    DeliverySettings,
    Discovery,
    HealthSettings,
    PresenceSnapshotSettings,
    RetrySettings,
    Route,
    ShardingSettings,
    StreamTarget,
    Target,
)
from ably_bridge.bridge.config.model import (
    PRESENCE_KEY_PLACEHOLDERS as PRESENCE_KEY_PLACEHOLDERS,
)
from ably_bridge.bridge.config.model import Source as Source
from ably_bridge.bridge.config.parse import ENV_OVERRIDES, Parser
from ably_bridge.bridge.secret import redact_text

__all__ = [
    "ENV_OVERRIDES",
    "KEY_PLACEHOLDERS",
    "SOURCES",
    "AblySettings",
    "BridgeConfig",
    "CeleryTarget",
    "CipherRule",
    "ConfigError",
    "DeadLetterSettings",
    "DeliverySettings",
    "Discovery",
    "HealthSettings",
    "PresenceSnapshotSettings",
    "RetrySettings",
    "Route",
    "ShardingSettings",
    "StreamTarget",
    "Target",
    "check_config",
    "load_config",
    "parse_config",
]

logger = logging.getLogger(__name__)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> BridgeConfig:
    """Read, override from ``env`` (default ``os.environ``) and validate a config file.

    Raises :class:`ConfigError` listing every problem with its field path.
    """
    env = os.environ if env is None else env
    raw = _read_file(Path(path))
    return parse_config(raw, env, source=str(path), base_dir=Path(path).parent)


def check_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The problems of a config file (empty when valid); never connects anywhere, never raises.

    An unexpected error while validating is reported as a problem too (with its type
    and a redacted message), so ``check-config`` never ends in a traceback.
    """
    try:
        load_config(path, env)
    except ConfigError as err:
        return err.problems
    except Exception as exc:  # a validator bug must not show a traceback (nor a secret)
        logger.debug("validating %s failed", path, exc_info=True)
        return [f"<file>: could not be validated ({type(exc).__name__}: {redact_text(str(exc))})"]
    return []


def _read_file(path: Path) -> Mapping[str, Any]:
    try:
        with path.open("rb") as fh:
            text = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([f"<file>: cannot read {path}: {reason}"], str(path)) from None
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(
            [f"<file>: larger than {MAX_FILE_BYTES:,} bytes (is this the configuration?)"],
            str(path),
        )
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(
            [f"<file>: unknown config format {suffix or '(none)'!r}; use .yaml, .yml or .toml"],
            str(path),
        )
    try:
        if suffix == ".toml":
            raw: Any = tomllib.loads(text.decode("utf-8"))
        else:
            raw = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        message = redact_text(str(exc))
        raise ConfigError(
            [f"<file>: not valid {suffix[1:].upper()}: {message}"], str(path)
        ) from None
    except RecursionError:  # the parsers recurse once per nesting level
        raise ConfigError(
            [f"<file>: nested too deeply (the configuration needs at most {MAX_DEPTH} levels)"],
            str(path),
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(["<file>: the top level must be a mapping"], str(path))
    return raw


def parse_config(
    raw: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    *,
    source: str | None = None,
    base_dir: Path | None = None,
) -> BridgeConfig:
    """Validate an already-parsed mapping (e.g. from a test) with env overrides."""
    env = os.environ if env is None else env
    parser = Parser(env, base_dir or Path.cwd())
    config = parser.config(raw)
    if parser.problems or config is None:
        raise ConfigError(parser.problems, source)
    return config
