"""Shared plumbing of the operator tools: connection options, exit codes, errors, output.

This module owns what every tool has in common:

* the connection options (``--key``/``--key-file``, ``--endpoint``, ``--port``,
  ``--tls/--no-tls``, ``--binary/--json-protocol``) and their environment
  defaults (``ABLY_KEY``, ``ABLY_KEY_FILE``, ``ABLY_ENDPOINT``, ``ABLY_PORT``,
  ``ABLY_TLS``, ``ABLY_USE_BINARY_PROTOCOL``), turned into client keyword
  arguments by :func:`client_kwargs`;
* the exit codes (:data:`EXIT_OK` 0, :data:`EXIT_ERROR` 1 for an Ably or
  runtime error, :data:`EXIT_USAGE` 2, :data:`EXIT_INTERRUPTED` 130) and
  :func:`tool`, the wrapper that maps exceptions to them and prints
  ``error <code>: <message>`` on stderr with every secret redacted;
* the JSON forms of messages, presence members, stats and tokens, and the
  time and duration argument parsers.

Secrets (the API key, a cipher key) are read at run time, never become an
argparse default (so ``--help`` cannot show them) and are scrubbed from every
error message this module prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from ably_bridge.errors import AblyException
from ably_bridge.options import is_loopback_host, parse_key
from ably_bridge.protocol.models import Message, PresenceMessage
from ably_bridge.transports.http import HttpTransportError

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "TOOL_ENV",
    "ConnectionSettings",
    "Handler",
    "UsageError",
    "add_cipher_argument",
    "add_connection_arguments",
    "add_json_argument",
    "cipher_key",
    "client_kwargs",
    "duration",
    "item_json",
    "print_json",
    "time_bound",
    "tool",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Every environment variable the tools read, with what it stands for (env.example lists them).
TOOL_ENV: dict[str, str] = {
    "ABLY_KEY": "API key appId.keyId:secret (--key)",
    "ABLY_KEY_FILE": "file holding the API key (--key-file)",
    "ABLY_ENDPOINT": "endpoint: routing policy name or host (--endpoint)",
    "ABLY_PORT": "port of the endpoint, the TLS port with TLS (--port)",
    "ABLY_TLS": "true/false (--tls/--no-tls)",
    "ABLY_USE_BINARY_PROTOCOL": "true for msgpack, false for JSON (--binary/--json-protocol)",
    "ABLY_CIPHER_KEY": "base64 AES key of encrypted channels (--cipher-key)",
}

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
Handler = Callable[[argparse.Namespace], int]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_REDACTED = "<redacted>"


class UsageError(Exception):
    """A usage problem found after argument parsing (exit 2, usage printed)."""


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every tool shares; their defaults come from the environment at run time."""
    group = parser.add_argument_group(
        "connection",
        "Where Ably is and how to authenticate. Each option falls back to the environment "
        "variable named in its help; prefer the variables for secrets (a command line is "
        "visible to other users of the machine).",
    )
    group.add_argument(
        "--key",
        metavar="KEY",
        help="API key appId.keyId:secret (default: $ABLY_KEY; never printed)",
    )
    group.add_argument(
        "--key-file",
        metavar="PATH",
        help="read the API key from this file (default: $ABLY_KEY_FILE)",
    )
    group.add_argument(
        "--endpoint",
        metavar="HOST",
        help="Ably endpoint: a routing policy name such as 'main', or a host such as "
        "127.0.0.1 for the local emulator (default: $ABLY_ENDPOINT, else Ably's main)",
    )
    group.add_argument(
        "--port",
        type=_port,
        metavar="PORT",
        help="port of the endpoint; the TLS port when TLS is on (default: $ABLY_PORT, "
        "else 443 with TLS and 80 without)",
    )
    group.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use TLS (https/wss); --no-tls for the local emulator, which also allows "
        "Basic auth over plain HTTP (default: $ABLY_TLS, else on)",
    )
    protocol = group.add_mutually_exclusive_group()
    protocol.add_argument(
        "--binary",
        dest="binary",
        action="store_const",
        const=True,
        default=None,
        help="speak msgpack to Ably (default: $ABLY_USE_BINARY_PROTOCOL, else msgpack)",
    )
    protocol.add_argument(
        "--json-protocol",
        dest="binary",
        action="store_const",
        const=False,
        help="speak JSON to Ably instead of msgpack",
    )


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON (for scripts)")


def add_cipher_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--cipher-key",
        metavar="KEY",
        help=f"base64 AES-128/256 key to {what} (default: $ABLY_CIPHER_KEY; never printed)",
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number 1-65535")
    return value


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def duration(text: str) -> float:
    """Seconds from ``90``, ``1.5``, ``30s``, ``15m``, ``2h`` or ``7d`` (an argparse type)."""
    match = _DURATION.match(text.strip())
    if match is None or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30, 30s, 15m, 2h, 7d)")
    return float(match[1]) * _UNITS[match[2]]


def time_bound(text: str) -> int:
    """ms since the epoch from ms digits, an ISO 8601 time, or a duration ago (``2h``)."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    match = _DURATION.match(raw)
    if match is not None and match[2]:
        return int((time.time() - float(match[1]) * _UNITS[match[2]]) * 1000)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use ms since the epoch, ISO 8601 "
            "(2024-05-01T12:00:00Z) or a duration ago (90s, 15m, 2h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# ---------------------------------------------------------------------------
# Connection settings
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionSettings:
    """The resolved connection settings; ``key`` is a secret (never in ``repr``)."""

    key: str
    options: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"ConnectionSettings(key=<redacted>, options={dict(self.options)!r})"


def _env_bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise UsageError(f"{name} must be true or false")


def _read_key_file(path: str, origin: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"cannot read the key file given by {origin}: {exc.strerror}") from None


def resolve_key(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """The API key: --key, --key-file, $ABLY_KEY, $ABLY_KEY_FILE, in that order."""
    key: str | None = None
    if getattr(args, "key", None):
        key = args.key
    elif getattr(args, "key_file", None):
        key = _read_key_file(args.key_file, "--key-file")
    elif env.get("ABLY_KEY"):
        key = env["ABLY_KEY"].strip()
    elif env.get("ABLY_KEY_FILE"):
        key = _read_key_file(env["ABLY_KEY_FILE"], "ABLY_KEY_FILE")
    if not key:
        raise UsageError("no API key: pass --key or --key-file, or set ABLY_KEY or ABLY_KEY_FILE")
    try:
        parse_key(key)
    except AblyException:
        raise UsageError("the API key is malformed: expected appId.keyId:secret") from None
    return key


def client_kwargs(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> ConnectionSettings:
    """Client keyword arguments from the options, falling back to the environment."""
    env = os.environ if env is None else env
    key = resolve_key(args, env)
    options: dict[str, Any] = {}
    endpoint = args.endpoint or env.get("ABLY_ENDPOINT", "").strip() or None
    if endpoint:
        options["endpoint"] = endpoint
    tls = args.tls if args.tls is not None else _env_bool(env, "ABLY_TLS")
    tls = True if tls is None else tls
    options["tls"] = tls
    port = args.port
    if port is None and env.get("ABLY_PORT", "").strip():
        try:
            port = _port(env["ABLY_PORT"].strip())
        except argparse.ArgumentTypeError:
            raise UsageError("ABLY_PORT must be a port number 1-65535") from None
    if port is not None:
        options["tls_port" if tls else "port"] = port
    if not tls:
        # --no-tls is an explicit choice (the emulator in Compose is not on loopback).
        options["insecure_allow_basic_over_http"] = True
    binary = args.binary if args.binary is not None else _env_bool(env, "ABLY_USE_BINARY_PROTOCOL")
    options["use_binary_protocol"] = True if binary is None else binary
    if endpoint and not tls and not is_loopback_host(endpoint):
        print(
            f"warning: Basic auth over plain HTTP to {endpoint}: use this only for an emulator",
            file=sys.stderr,
        )
    return ConnectionSettings(key=key, options=options)


def cipher_key(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> str | None:
    """The cipher key (--cipher-key, else $ABLY_CIPHER_KEY), or None."""
    env = os.environ if env is None else env
    value = getattr(args, "cipher_key", None) or env.get("ABLY_CIPHER_KEY", "").strip()
    return value or None


# ---------------------------------------------------------------------------
# Running a tool: exit codes and errors
# ---------------------------------------------------------------------------


def _secrets(args: argparse.Namespace) -> list[str]:
    """Every secret this invocation may hold, longest first (for redaction)."""
    found: list[str] = []
    for value in (
        getattr(args, "key", None),
        getattr(args, "cipher_key", None),
        os.environ.get("ABLY_KEY"),
        os.environ.get("ABLY_CIPHER_KEY"),
    ):
        if not value:
            continue
        found.append(value)
        if ":" in value:
            found.append(value.split(":", 1)[1])  # the key's secret part on its own
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


def _usage(args: argparse.Namespace, message: str) -> int:
    parser: argparse.ArgumentParser | None = getattr(args, "tool_parser", None)
    prog = parser.prog if parser is not None else "ably-bridge"
    if parser is not None:
        sys.stderr.write(parser.format_usage())
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _failed_below_http(exc: BaseException) -> bool:
    """True when no HTTP answer came back (so an HTTP status would be made up)."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, HttpTransportError):
            return True
        current = getattr(current, "cause", None) or current.__cause__
    return False


def tool(run: Callable[[argparse.Namespace], int]) -> Handler:
    """Wrap a tool's ``run(args)`` so that failures become exit codes, secrets redacted."""

    def handler(args: argparse.Namespace) -> int:
        secrets = _secrets(args)
        parser: argparse.ArgumentParser | None = getattr(args, "tool_parser", None)
        prog = parser.prog if parser is not None else "ably-bridge"
        try:
            return run(args)
        except UsageError as exc:
            return _usage(args, redact(str(exc), secrets))
        except AblyException as exc:
            # The Ably code says what failed; an HTTP status is shown only when a
            # server answered with one (not for a refused connection or a timeout here).
            answered = exc.status_code and exc.code < 50000 and not _failed_below_http(exc)
            status = f" (HTTP {exc.status_code})" if answered else ""
            message = redact(exc.message, secrets)
            print(f"{prog}: error {exc.code}{status}: {message}", file=sys.stderr)
            return EXIT_ERROR
        except OSError as exc:
            print(f"{prog}: error: {redact(str(exc), secrets)}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    handler.__doc__ = run.__doc__
    return handler


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _enum_name(value: Any) -> Any:
    return value.name.lower() if isinstance(value, Enum) else value


def item_json(item: Message | PresenceMessage) -> dict[str, Any]:
    """A decoded message or member as JSON (bytes as base64 with ``encoding``)."""
    out = item.to_dict(binary=False)
    out.pop("connectionKey", None)  # a secret of the publisher's connection
    if item.action is not None:
        out["action"] = _enum_name(item.action)
    return out


def print_json(value: Any, stream: TextIO | None = None) -> None:
    """One compact JSON document on one line, flushed (so pipes see it at once)."""
    stream = stream or sys.stdout
    stream.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
    stream.flush()


def data_text(data: Any) -> str:
    """``data`` for a human: text as is, JSON compact, binary as its size."""
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray)):
        return f"<{len(data)} bytes>"
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def iso_ms(ms: int | None) -> str:
    """ms since the epoch as ISO 8601 UTC with milliseconds ('-' when unknown)."""
    if ms is None:
        return "-"
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
