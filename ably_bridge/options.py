"""Client options: every setting of the REST and realtime clients, with its default.

:class:`ClientOptions` is a frozen, keyword-only dataclass. Durations are
seconds (floats) in Python; the spec's millisecond defaults (TO3l, DF1) are
converted here, once. Validation happens at construction, so a bad key or a
clientId of ``"*"`` fails where it was written, with an Ably error code.

Host selection (REC1-REC2) also lives here because both clients need it:
:meth:`ClientOptions.rest_host`, :meth:`ClientOptions.realtime_host` and
:meth:`ClientOptions.fallback_host_list`.

Secrets (the key's secret, tokens, auth headers and params) never appear in
``repr``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ably_bridge.clock import Clock, SystemClock
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.tokens import TokenDetails, TokenParams
from ably_bridge.protocol.transport_params import is_loopback_host

__all__ = ["ClientOptions", "is_loopback_host", "parse_key"]

# REC1a: the default primary domain and its fallbacks (REC2a).
DEFAULT_DOMAIN = "main.realtime.ably.net"
DEFAULT_FALLBACK_HOSTS: tuple[str, ...] = tuple(
    f"main.{letter}.fallback.ably-realtime.com" for letter in "abcde"
)
PROTOCOL_VERSION = "6"  # CSV2b; sent as X-Ably-Version and the `v` query param

_KEY_RE = re.compile(r"^(?P<app>[^.:\s]+)\.(?P<key_id>[^.:\s]+):(?P<secret>\S+)$")

AuthCallback = Callable[[TokenParams], Any]


def parse_key(key: str) -> tuple[str, str]:
    """Split ``appId.keyId:secret`` into ``(key_name, secret)``; 40005 if malformed."""
    match = _KEY_RE.match(key)
    if match is None:
        raise AblyException(
            "invalid key: expected the form appId.keyId:secret", ErrorCode.INVALID_CREDENTIAL, 400
        )
    return f"{match['app']}.{match['key_id']}", match["secret"]


def _ms(value: float) -> float:
    return value / 1000.0


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """Every option of the Ably clients (TO3), with the spec's defaults.

    Auth: ``key``, ``token``, ``token_details``, ``auth_callback``, ``auth_url``
    (with ``auth_method``, ``auth_headers``, ``auth_params``), ``query_time``,
    ``default_token_params``, ``use_token_auth``, ``client_id``.
    Hosts: ``endpoint`` (REC1), or the older ``environment`` / ``rest_host`` /
    ``realtime_host``; ``port``, ``tls_port``, ``tls``, ``fallback_hosts``.
    Timeouts are in seconds.
    """

    # -- auth (RSA, AO) -----------------------------------------------------
    key: str | None = None
    token: str | None = None
    token_details: TokenDetails | None = None
    auth_callback: AuthCallback | None = None
    auth_url: str | None = None
    auth_method: str = "GET"
    auth_headers: Mapping[str, str] | None = None
    auth_params: Mapping[str, str] | None = None
    query_time: bool = False
    default_token_params: TokenParams | None = None
    use_token_auth: bool | None = None
    client_id: str | None = None
    # Basic auth over plain HTTP to a non-loopback host is refused (RSA1, 40103)
    # unless this is set; loopback hosts (the emulator) are always allowed.
    insecure_allow_basic_over_http: bool = False

    # -- hosts (REC1, REC2, RSC15) -----------------------------------------
    endpoint: str | None = None
    environment: str | None = None
    rest_host: str | None = None
    realtime_host: str | None = None
    port: int = 80
    tls_port: int = 443
    tls: bool = True
    fallback_hosts: Sequence[str] | None = None
    connectivity_check_url: str | None = None

    # -- HTTP (RSC15, TO3l) -------------------------------------------------
    http_max_retry_count: int = 3  # TO3l5
    http_max_retry_duration: float = _ms(15_000)  # TO3l6
    http_open_timeout: float = _ms(4_000)  # TO3l3
    http_request_timeout: float = _ms(10_000)  # TO3l4
    fallback_retry_timeout: float = _ms(600_000)  # TO3l10
    add_request_ids: bool = False  # TO3p

    # -- realtime (RTN, RTL, TO3l) ------------------------------------------
    realtime_request_timeout: float = _ms(10_000)  # TO3l11
    disconnected_retry_timeout: float = _ms(15_000)  # TO3l1
    suspended_retry_timeout: float = _ms(30_000)  # TO3l2
    channel_retry_timeout: float = _ms(15_000)  # TO3l7
    connection_state_ttl: float = _ms(120_000)  # DF1a; the server's value wins
    auto_connect: bool = True  # TO3e
    echo_messages: bool = True  # TO3h
    queue_messages: bool = True  # TO3g
    recover: str | None = None  # RTN16
    transport_params: Mapping[str, Any] | None = None  # RTC1f
    # Listeners run on the callback pool every realtime client in the process
    # shares (few threads, few wake-ups); False gives this client its own pool,
    # so that other clients' slow listeners never queue ahead of its own.
    shared_callback_pool: bool = True
    # WebSockets are read by the one reader thread every realtime client in the
    # process shares (ably_bridge.transports.reactor); False gives each of this
    # client's websockets a reader thread of its own (and its inline listeners
    # a thread that only this connection waits for).
    shared_reader: bool = True

    # TO3r: operations gated on a granted channel mode fail instead of logging (RTL7i, RTP11f)
    strict_mode: bool = False

    # -- formats and publishing ---------------------------------------------
    use_binary_protocol: bool = True  # TO3f
    idempotent_rest_publishing: bool = True  # TO3n, RSL1k
    max_message_size: int = 65_536  # TO3l8; the server's value wins on realtime
    # PC3: applies vcdiff deltas (channel param ``delta: vcdiff``); anything with
    # ``decode(delta: bytes, base: bytes) -> bytes``. None: deltas fail with 40019.
    vcdiff_decoder: Any = field(default=None, compare=False)

    # -- logging and agents --------------------------------------------------
    log_level: int | None = None
    log_handler: logging.Handler | None = None
    agents: Mapping[str, str | None] | None = None

    # -- injection points for tests and embedding ---------------------------
    http_session: Any = field(default=None, compare=False)  # a requests.Session-like object
    websocket_dialer: Callable[..., Any] | None = field(default=None, compare=False)
    clock: Clock = field(default_factory=SystemClock, compare=False)

    # ------------------------------------------------------------------------
    def __post_init__(self) -> None:
        if self.key is not None:
            parse_key(self.key)  # raises 40005 for a malformed key
        if self.client_id is not None:
            if not isinstance(self.client_id, str) or not self.client_id:
                raise AblyException(
                    "client_id must be a non-empty string", ErrorCode.INVALID_CLIENT_ID, 400
                )
            if self.client_id == "*":
                # RSA7c: a wildcard belongs in a token, not in ClientOptions.
                raise AblyException(
                    'client_id "*" is not allowed in ClientOptions; use a wildcard token',
                    ErrorCode.INVALID_CLIENT_ID,
                    400,
                )
        if self.endpoint is not None and (
            self.environment is not None
            or self.rest_host is not None
            or self.realtime_host is not None
        ):
            # REC1b1: endpoint cannot be combined with the deprecated host options.
            raise AblyException(
                "endpoint cannot be combined with environment, rest_host or realtime_host",
                ErrorCode.BAD_REQUEST,
                400,
            )
        if self.environment is not None and (
            self.rest_host is not None or self.realtime_host is not None
        ):
            raise AblyException(
                "environment cannot be combined with rest_host or realtime_host",
                ErrorCode.BAD_REQUEST,
                400,
            )
        if self.token is not None and self.token_details is not None:
            raise AblyException(
                "give either token or token_details, not both", ErrorCode.BAD_REQUEST, 400
            )
        if self.auth_callback is not None and self.auth_url is not None:
            raise AblyException(
                "give either auth_callback or auth_url, not both", ErrorCode.BAD_REQUEST, 400
            )
        if self.auth_method.upper() not in ("GET", "POST"):
            raise AblyException("auth_method must be GET or POST", ErrorCode.BAD_REQUEST, 400)
        for name in (
            "http_open_timeout",
            "http_request_timeout",
            "http_max_retry_duration",
            "fallback_retry_timeout",
            "realtime_request_timeout",
            "disconnected_retry_timeout",
            "suspended_retry_timeout",
            "channel_retry_timeout",
            "connection_state_ttl",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise AblyException(
                    f"{name} must be a positive number of seconds", ErrorCode.BAD_REQUEST, 400
                )
        if self.http_max_retry_count < 0:
            raise AblyException(
                "http_max_retry_count must not be negative", ErrorCode.BAD_REQUEST, 400
            )
        for port_name in ("port", "tls_port"):
            port = getattr(self, port_name)
            if not 0 < port < 65536:
                raise AblyException(f"{port_name} must be 1-65535", ErrorCode.BAD_REQUEST, 400)

    # -- derived auth facts ---------------------------------------------------
    @property
    def key_name(self) -> str | None:
        return None if self.key is None else parse_key(self.key)[0]

    @property
    def key_secret(self) -> str | None:
        return None if self.key is None else parse_key(self.key)[1]

    @property
    def has_token_source(self) -> bool:
        """A token, or a way to get one, was given (RSA4)."""
        return any(
            value is not None
            for value in (self.token, self.token_details, self.auth_callback, self.auth_url)
        )

    @property
    def uses_token_auth(self) -> bool:
        """Token auth when asked for, or when there is no key to use Basic with (RSA4)."""
        if self.use_token_auth:
            return True
        if self.has_token_source and self.use_token_auth is None:
            return True
        return self.key is None

    # -- hosts (REC1, REC2) ---------------------------------------------------
    def _primary_host(self, explicit: str | None) -> str:
        if explicit is not None:
            return explicit
        if self.endpoint is not None:
            return _endpoint_host(self.endpoint)
        if self.environment is not None and self.environment != "production":
            return f"{self.environment}.realtime.ably.net"
        return DEFAULT_DOMAIN

    @property
    def rest_host_name(self) -> str:
        """The primary REST host."""
        return self._primary_host(self.rest_host)

    @property
    def realtime_host_name(self) -> str:
        """The primary realtime host (REC1; realtime_host, else the REST rules)."""
        return self._primary_host(self.realtime_host or self.rest_host)

    @property
    def effective_port(self) -> int:
        return self.tls_port if self.tls else self.port

    def fallback_host_list(self) -> list[str]:
        """Fallback hosts in configured order; the caller shuffles (RSC15a, REC2)."""
        if self.fallback_hosts is not None:
            return list(self.fallback_hosts)  # REC2a2: explicit list wins, [] disables
        if self.rest_host is not None or self.realtime_host is not None:
            return []  # REC2c6: a custom host has no fallbacks
        if self.endpoint is not None:
            return _endpoint_fallbacks(self.endpoint)
        if self.environment is not None and self.environment != "production":
            return [f"{self.environment}.{c}.fallback.ably-realtime.com" for c in "abcde"]
        return list(DEFAULT_FALLBACK_HOSTS)

    def base_url(self, host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        host = host or self.rest_host_name
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.effective_port}"

    @classmethod
    def build(cls, first: str | ClientOptions | None = None, /, **kwargs: Any) -> ClientOptions:
        """Options from what a client constructor was given (RSC1).

        ``first`` is a key or token string (RSC1a: with a ``:`` it is a key), or a
        ClientOptions that ``kwargs`` then override; keywords alone also work.
        """
        if isinstance(first, ClientOptions):
            return first.replace(**kwargs) if kwargs else first
        if isinstance(first, str):
            kwargs = {**kwargs, ("key" if ":" in first else "token"): first}
        elif first is not None:
            raise TypeError("expected a key or token string, or ClientOptions")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> ClientOptions:
        """A copy with ``changes`` applied (and validated)."""
        return replace(self, **changes)

    @classmethod
    def option_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name in (
                "clock",
                "http_session",
                "websocket_dialer",
                "vcdiff_decoder",
            ):
                continue
            if f.name == "key":
                value = f"{self.key_name}:<redacted>"
            elif f.name in ("token", "auth_headers", "auth_params"):
                value = "<redacted>"
            elif f.name == "auth_callback":
                value = "<callable>"
            if f.default is not None and value == f.default and f.name != "key":
                continue
            shown.append(
                f"{f.name}={value!r}" if not isinstance(value, str) else f"{f.name}={value}"
            )
        return f"ClientOptions({', '.join(shown)})"


def _endpoint_host(endpoint: str) -> str:
    """REC1b: a host-like endpoint is used verbatim; others name a routing policy."""
    if "." in endpoint or "::" in endpoint or endpoint == "localhost":
        return endpoint
    if endpoint.startswith("nonprod:"):
        return f"{endpoint.removeprefix('nonprod:')}.realtime.ably-nonprod.net"
    return f"{endpoint}.realtime.ably.net"


def _endpoint_fallbacks(endpoint: str) -> list[str]:
    if "." in endpoint or "::" in endpoint or endpoint == "localhost":
        return []  # REC2c1: an explicit hostname has no fallbacks
    if endpoint.startswith("nonprod:"):
        name = endpoint.removeprefix("nonprod:")
        return [f"{name}.{c}.fallback.ably-realtime-nonprod.com" for c in "abcde"]
    return [f"{endpoint}.{c}.fallback.ably-realtime.com" for c in "abcde"]
