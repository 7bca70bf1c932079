"""Typed field readers of the configuration parser, and where secrets come from.

This module owns :class:`FieldReader`, the base of the validating parser: it walks
a raw mapping, collecting every problem as ``field.path: reason`` instead of
stopping at the first; reads typed fields (strings, numbers, booleans, lists,
channel patterns); reports unknown fields (with advice when a literal secret is
written in the file); and reads secrets - a URL from the environment, a file or a
password-free literal (:meth:`FieldReader.url`), a secret file
(:meth:`FieldReader.read_secret_file`) and cipher keys (:func:`check_cipher_key`).
A secret value never appears in a problem. The sections and routes are read by
:mod:`~ably_bridge.bridge.config.parse` and :mod:`~ably_bridge.bridge.config.routes`.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ably_bridge.bridge.config.checks import MAX_LIST, url_problem
from ably_bridge.bridge.patterns import PatternError, compile_pattern, is_pattern
from ably_bridge.bridge.secret import Secret, url_credentials

__all__ = ["BROKER_SCHEMES", "STREAM_SCHEMES", "FieldReader", "check_cipher_key"]

STREAM_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "redis+cluster",
    "rediss+cluster",
    "memory",
)
BROKER_SCHEMES = ("amqp", "amqps", "pyamqp", "redis", "rediss", "sentinel", "memory")

MAX_SECRET_FILE_BYTES = 65_536

_MISSING: Any = object()
_ABLY_KEY_LIKE = re.compile(r"^[^.:\s/]+\.[^.:\s/]+:\S{8,}$")
_SECRET_WORDS = frozenset({"key", "secret", "password", "token"})


class FieldReader:
    """Reads typed fields of a raw mapping, collecting every problem with its field path."""

    def __init__(self, env: Mapping[str, str], base_dir: Path) -> None:
        self.env = env
        self.base_dir = base_dir
        self.problems: list[str] = []

    # -- small helpers ---------------------------------------------------
    def fail(self, path: str, reason: str) -> None:
        self.problems.append(f"{path}: {reason}")

    def reported(self, *paths: str) -> bool:
        """Whether a problem was already reported for one of ``paths``."""
        return any(p.split(": ", 1)[0] in paths for p in self.problems)

    def section(self, raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, "must be a mapping")
            return {}
        return value

    def known(
        self,
        raw: Mapping[str, Any],
        allowed: set[str],
        path: str,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """Report unknown fields; a literal secret field gets its own advice."""
        for key in raw:
            if key in allowed:
                continue
            where = f"{path}.{key}" if path else str(key)
            if secrets and key in secrets:
                self.fail(where, secrets[key])
            elif key in _SECRET_WORDS:
                self.fail(where, "unknown field (secrets come from the environment or a file)")
            else:
                self.fail(where, "unknown field")

    def text(
        self, raw: Mapping[str, Any], key: str, path: str, default: str | None = None
    ) -> str | None:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "must be a non-empty string")
            return default
        return value

    def number(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        minimum: float = 0.0,
        maximum: float = 1e9,
        exclusive: bool = False,
    ) -> float:
        """A finite number in [minimum, maximum] (or (minimum, maximum] when ``exclusive``)."""
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, "must be a number")
            return default
        if not math.isfinite(value):
            self.fail(path, "must be a finite number (not NaN or infinity)")
            return default
        if (value <= minimum) if exclusive else (value < minimum):
            self.fail(path, f"must be {'>' if exclusive else '>='} {minimum:g}")
            return default
        if value > maximum:
            self.fail(path, f"must be <= {maximum:g}")
            return default
        return float(value)

    def integer(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        default: int,
        *,
        minimum: int = 1,
        maximum: int = 1_000_000_000,
    ) -> int:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, "must be an integer")
            return default
        if value < minimum:
            self.fail(path, f"must be >= {minimum}")
            return default
        if value > maximum:
            self.fail(path, f"must be <= {maximum:_}".replace("_", ","))
            return default
        return value

    def port(
        self, raw: Mapping[str, Any], key: str, path: str, default: int, *, minimum: int
    ) -> int:
        """A TCP port number (``minimum`` is 0 where 0 means "any free port")."""
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 65535:
            self.fail(path, f"must be a port number {minimum}-65535")
            return default
        return value

    def boolean(self, raw: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, bool):
            self.fail(path, "must be true or false")
            return default
        return value

    def str_list(self, raw: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.fail(path, "must be a string or a list of strings")
            return ()
        if len(value) > MAX_LIST:
            self.fail(path, f"must have at most {MAX_LIST:,} items")
            return ()
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.fail(f"{path}[{i}]", "must be a non-empty string")
            else:
                out.append(item)
        return tuple(out)

    def patterns(self, raw: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        items = self.str_list(raw, key, path)
        for i, item in enumerate(items):
            if is_pattern(item):
                try:
                    compile_pattern(item)
                except PatternError as exc:
                    self.fail(f"{path}[{i}]", str(exc))
        return items

    def read_secret_file(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.fail(path, "must be a file path")
            return None
        if _ABLY_KEY_LIKE.match(value) or "://" in value:
            # Never echo it: this is a secret written where its file's path belongs.
            self.fail(path, "must be the path of a file holding the secret, not the secret")
            return None
        file_path = Path(value)
        if not file_path.is_absolute():
            file_path = self.base_dir / file_path
        try:
            with file_path.open("rb") as fh:
                data = fh.read(MAX_SECRET_FILE_BYTES + 1)
        except OSError as exc:
            self.fail(path, f"cannot read secret file {value}: {exc.strerror or exc}")
            return None
        if len(data) > MAX_SECRET_FILE_BYTES:
            self.fail(path, f"secret file {value} is larger than {MAX_SECRET_FILE_BYTES} bytes")
            return None
        try:
            content = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.fail(path, f"secret file {value} is not UTF-8 text")
            return None
        if not content:
            self.fail(path, f"secret file {value} is empty")
            return None
        return content

    def url(
        self,
        raw: Mapping[str, Any],
        name: str,
        path: str,
        env_name: str | None,
        schemes: tuple[str, ...],
        *,
        required: bool,
    ) -> Secret | None:
        """A URL from ``env_name``, ``<name>_file`` or ``<name>`` (only without a credential).

        A credential written in the file is refused whether or not the environment
        variable or the file overrides it (the file is what must not hold it).
        """
        literal = raw.get(name)
        file_value = raw.get(f"{name}_file")
        via = f"the {env_name} environment variable or " if env_name else ""
        literal_ok = self.literal_url(literal, name, path, via)
        value: str | None = None
        where = path
        if env_name and self.env.get(env_name):
            value, where = self.env[env_name], env_name
        elif file_value is not None:
            value, where = self.read_secret_file(file_value, f"{path}_file"), f"{path}_file"
            if value is None:
                return None
        elif literal is not None:
            if not literal_ok:
                return None
            value = literal
        if value is None:
            if required:
                self.fail(path, f"required (set {via}{name} or {name}_file)")
            return None
        problem = url_problem(value, schemes)
        if problem is not None:
            self.fail(where, problem)
            return None
        return Secret.url(value)

    def literal_url(self, literal: Any, name: str, path: str, via: str) -> bool:
        """Whether a URL written in the file is usable: a string without a credential."""
        if literal is None:
            return False
        if not isinstance(literal, str) or not literal:
            self.fail(path, "must be a URL string")
            return False
        found = url_credentials(literal)
        if found:
            self.fail(
                path,
                f"contains {' and '.join(found.forms)}: a credential must not be written in "
                f"the config file; put the URL in {via}a file named by {name}_file",
            )
            return False
        return True


def check_cipher_key(text: str, path: str, parser: FieldReader) -> bool:
    """Base64 (or base64url) of 16 or 32 bytes; the error never echoes the key."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        parser.fail(path, "cipher key is not valid base64")
        return False
    if len(raw) * 8 not in (128, 256):
        parser.fail(path, f"cipher key must be 128 or 256 bits, not {len(raw) * 8}")
        return False
    return True
