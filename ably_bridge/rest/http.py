"""The one HTTP funnel every REST call goes through.

:class:`RestHttp` owns, in one place:

* request headers: ``X-Ably-Version`` (RSC7e), ``Ably-Agent`` (RSC7d),
  ``Accept``/``Content-Type`` for JSON or msgpack (RSC8), the auth header,
  ``X-Ably-ClientId`` with Basic auth (RSA7e2), and ``request_id`` (RSC7c);
* host choice: the primary host, fallback hosts in random order on qualifying
  failures (RSC15a, RSC15l), at most ``http_max_retry_count`` retries within
  ``http_max_retry_duration``, and a remembered working fallback for
  ``fallback_retry_timeout`` measured on the injected clock (RSC15f);
* token errors: renew once through the auth provider, resend once (RSC10,
  RSA4b); without a way to renew, error 40171 (RSA4a2);
* refusing Basic auth over plain HTTP to a non-loopback host (RSA1, RSC18);
* turning responses into decoded bodies or :class:`AblyException` (RSC8d,
  RSC8e), from the error body or the ``X-Ably-Errorcode`` headers.

It is thread-safe: one instance serves every thread of an ``AblyRest``.
"""

from __future__ import annotations

import base64
import logging
import platform
import random
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from ably_bridge.errors import AblyException, EncodingError, ErrorCode, is_token_error
from ably_bridge.options import PROTOCOL_VERSION, ClientOptions, is_loopback_host
from ably_bridge.protocol import codec
from ably_bridge.transports.http import Headers, HttpResponse, HttpTransport, HttpTransportError

__all__ = ["AuthProvider", "Credential", "RestHttp", "RestResponse", "agent_header"]

_module_log = logging.getLogger(__name__)

JSON_TYPE = codec.JSON_CONTENT_TYPE
MSGPACK_TYPE = codec.MSGPACK_CONTENT_TYPE
LIBRARY_NAME = "ably-bridge"


@dataclass(frozen=True)
class Credential:
    """An Authorization header value and what it was made from (never logged)."""

    header: str
    basic: bool
    token: str | None = None

    def __repr__(self) -> str:
        return f"Credential(basic={self.basic})"


class AuthProvider(Protocol):
    """What the funnel needs from :class:`~ably_bridge.rest.auth.Auth`."""

    def credential(self) -> Credential: ...

    def renew_after_token_error(self, stale: Credential, error: AblyException) -> None:
        """Get a fresh token (once across threads) or raise 40171 when that is impossible."""
        ...

    @property
    def basic_client_id(self) -> str | None:
        """The clientId to assert with Basic auth (RSA7e2), if any."""
        ...


@dataclass(frozen=True)
class RestResponse:
    """A decoded response: status, headers, body (decoded JSON/msgpack) and request path."""

    status: int
    headers: Headers
    body: Any
    path: str


@dataclass(frozen=True)
class _Pin:
    host: str
    until: float  # monotonic seconds


def agent_header(options: ClientOptions) -> str:
    """The ``Ably-Agent`` value: library, Python, and any ``agents`` option (RSC7d1, RSC7d6)."""
    from ably_bridge import __version__

    parts = [f"{LIBRARY_NAME}/{__version__}", f"python/{platform.python_version()}"]
    for name, version in (options.agents or {}).items():
        parts.append(name if version is None else f"{name}/{version}")
    return " ".join(parts)


def decode_body(response: HttpResponse) -> Any:
    """Decode by the response's Content-Type, whatever format was asked for (RSC8d).

    RSC8e: an undecodable body keeps a >= 400 status (code status*100); below
    400 it is 40013/400 - the codec's error, with its redacted preview.
    """
    try:
        return codec.decode_body(response.body, response.headers.get("Content-Type"))
    except EncodingError as exc:
        if response.status < 400:
            raise
        if response.content_type.startswith("text/"):
            return response.body.decode("utf-8", "replace")
        message = f"{exc.message} (HTTP status {response.status})"
        error = AblyException(message, response.status * 100, response.status, cause=exc)
        error.headers = response.headers
        raise error from exc


def error_from_response(response: HttpResponse, body: Any) -> AblyException:
    """The Ably error of a >=400 response: the ``error`` body first, then the headers.

    The exception carries the response's headers (``Retry-After``...).
    """
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        raw = dict(body["error"])
        raw.setdefault("statusCode", response.status)
    else:
        code_text = response.headers.get("X-Ably-Errorcode")
        code = int(code_text) if code_text and code_text.isdigit() else response.status * 100
        message = response.headers.get("X-Ably-Errormessage") or (
            body if isinstance(body, str) and body else f"HTTP {response.status} error"
        )
        raw = {"code": code, "statusCode": response.status, "message": message}
    error = AblyException.from_dict(raw)
    error.headers = response.headers
    return error


def _qualifies_for_fallback(response: HttpResponse) -> bool:
    """RSC15l3 (500-504) and RSC15l4 (CloudFront said >= 400)."""
    if 500 <= response.status <= 504:
        return True
    server = response.headers.get("Server", "")
    return response.status >= 400 and server.lower() == "cloudfront"


def _transport_exception(error: HttpTransportError) -> AblyException:
    if error.timeout:
        return AblyException(
            f"REST request timed out: {error.message}", ErrorCode.TIMEOUT_ERROR, 500, cause=error
        )
    return AblyException(
        f"REST request failed: {error.message}",
        ErrorCode.INTERNAL_CONNECTION_ERROR,
        500,
        cause=error,
    )


class RestHttp:
    """Sends Ably REST requests with the library's headers, fallbacks and auth renewal."""

    def __init__(
        self,
        options: ClientOptions,
        transport: HttpTransport,
        auth: AuthProvider | None = None,
        *,
        rng: random.Random | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.options = options
        self.transport = transport
        self.auth = auth
        self.log = log or _module_log  # the client's logger (.logs)
        self._clock = options.clock
        self._rng = rng or random.Random()  # shuffles fallbacks; not a secret (RSC15a)
        self._primary = options.rest_host_name
        self._fallbacks = options.fallback_host_list()
        self._pin: _Pin | None = None
        self._pin_lock = threading.Lock()
        self._agent = agent_header(options)
        self._origins: dict[str, tuple[str, str]] = {}

    # -- public ----------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
        version: str | None = None,
        raise_on_error: bool = True,
    ) -> RestResponse:
        """Send a request; return the decoded response or raise :class:`AblyException`.

        ``path`` may carry a query string (page links do); ``params`` are added
        to it. ``body`` is any JSON/msgpack-able object, encoded once so that
        every retry sends the same bytes (RSL1k). With ``raise_on_error=False``
        a >= 400 response is returned rather than raised (RSC19d).
        """
        path, query = _split_path(path, params)
        if self.options.add_request_ids:
            query.append(("request_id", _request_id()))  # RSC7c: same id on every retry
        payload = (
            None
            if body is None
            else codec.encode_body(body, binary=self.options.use_binary_protocol)
        )
        base_headers = self._headers(payload is not None, headers, version)
        target = path + (f"?{urlencode(query)}" if query else "")

        credential = self._credential(authenticated)
        response = self._send(method, target, base_headers, payload, credential)
        decoded = decode_body(response)
        if response.status >= 400 and credential is not None and not credential.basic:
            error = error_from_response(response, decoded)
            if is_token_error(error.status_code, error.code):
                # RSC10, RSA4b: renew once, resend once; a second token error is final.
                self.log.info("token rejected (code %s); renewing and retrying once", error.code)
                assert self.auth is not None
                self.auth.renew_after_token_error(credential, error)
                credential = self._credential(authenticated)
                response = self._send(method, target, base_headers, payload, credential)
                decoded = decode_body(response)
        if response.status >= 400 and raise_on_error:
            raise error_from_response(response, decoded)
        return RestResponse(response.status, response.headers, decoded, path)

    def preferred_host(self) -> str:
        """The host the next request will try first (a remembered fallback or the primary)."""
        pin = self._current_pin()
        return pin.host if pin is not None else self._primary

    # -- headers and auth ------------------------------------------------------
    def _headers(
        self, has_body: bool, extra: Mapping[str, str] | None, version: str | None
    ) -> dict[str, str]:
        fmt = MSGPACK_TYPE if self.options.use_binary_protocol else JSON_TYPE
        headers = {
            "X-Ably-Version": str(version)
            if version is not None
            else PROTOCOL_VERSION,  # RSC7e, RSC19f1
            "Ably-Agent": self._agent,  # RSC7d2
            "Accept": fmt,  # RSC8c
        }
        if has_body:
            headers["Content-Type"] = fmt
        for name, value in (extra or {}).items():
            if name.lower() != "authorization":  # RSC19b: auth cannot be overridden
                headers[name] = value
        return headers

    def _credential(self, authenticated: bool) -> Credential | None:
        if not authenticated:
            return None
        if self.auth is None:
            raise AblyException(
                "no auth configured", ErrorCode.NO_VALID_AUTHENTICATION_METHOD_PROVIDED, 401
            )
        return self.auth.credential()

    def _clear_text_basic_allowed(self, host: str) -> bool:
        options = self.options
        return options.tls or is_loopback_host(host) or options.insecure_allow_basic_over_http

    def _auth_headers(self, credential: Credential | None, host: str) -> dict[str, str]:
        if credential is None:
            return {}
        # RSA1, RSC18: never send a key in clear text, except to this machine.
        if credential.basic and not self._clear_text_basic_allowed(host):
            raise AblyException(
                "Basic auth over plain HTTP is refused; use TLS or token auth",
                ErrorCode.INVALID_USE_OF_BASIC_AUTH_OVER_NON_TLS_TRANSPORT,
                401,
            )
        headers = {"Authorization": credential.header}
        client_id = self.auth.basic_client_id if (credential.basic and self.auth) else None
        if client_id:
            headers["X-Ably-ClientId"] = base64.b64encode(client_id.encode()).decode(
                "ascii"
            )  # RSA7e2
        return headers

    # -- hosts and retries -----------------------------------------------------
    def _current_pin(self) -> _Pin | None:
        with self._pin_lock:
            if self._pin is not None and self._clock.monotonic() >= self._pin.until:
                self.log.debug("fallback host %s no longer preferred", self._pin.host)
                self._pin = None  # RSC15f: expired; start again from the primary
            return self._pin

    def _host_plan(self) -> tuple[list[str], _Pin | None]:
        """Hosts to try in order, and the remembered fallback this plan started from."""
        if not self._fallbacks:
            return [self._primary], None  # RSC15m: no fallbacks, no retries
        pin = self._current_pin()
        first = [pin.host, self._primary] if pin is not None else [self._primary]
        others = [h for h in self._fallbacks if h not in first]
        self._rng.shuffle(others)  # RSC15a: random order
        plan = first + others
        return plan[: 1 + self.options.http_max_retry_count], pin

    def _remember(self, host: str, started_from: _Pin | None) -> None:
        if host == self._primary:
            return
        if started_from is not None and started_from.host == host:
            return  # a success on the remembered host neither extends nor revives it
        with self._pin_lock:
            self._pin = _Pin(host, self._clock.monotonic() + self.options.fallback_retry_timeout)
        self.log.info(
            "remembering fallback host %s for %.0fs", host, self.options.fallback_retry_timeout
        )

    def _forget(self, host: str) -> None:
        with self._pin_lock:
            if self._pin is not None and self._pin.host == host:
                self._pin = None  # RSC15f: a qualifying error on the remembered host

    def _origin(self, host: str) -> tuple[str, str]:
        """``scheme://host:port`` and the Host header for ``host``, computed once per host."""
        origin = self._origins.get(host)
        if origin is None:
            base = self.options.base_url(host)
            default = ":443" if self.options.tls else ":80"
            origin = self._origins[host] = (base, urlsplit(base).netloc.removesuffix(default))
        return origin

    def _may_retry(self, index: int, hosts: list[str], deadline: float) -> bool:
        """Another host remains and ``http_max_retry_duration`` has not run out (RSC15a)."""
        return index + 1 < len(hosts) and self._clock.monotonic() < deadline

    def _send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        payload: bytes | None,
        credential: Credential | None,
    ) -> HttpResponse:
        hosts, started_from = self._host_plan()
        deadline = self._clock.monotonic() + self.options.http_max_retry_duration
        timeout = (self.options.http_open_timeout, self.options.http_request_timeout)  # RSC13
        for index, host in enumerate(hosts):
            base, host_header = self._origin(host)
            url = base + target
            all_headers = {**headers, **self._auth_headers(credential, host)}
            all_headers["Host"] = host_header  # RSC15j
            self.log.debug("%s %s%s", method, host, target.split("?")[0])
            try:
                response = self.transport.request(method, url, all_headers, payload, timeout)
            except HttpTransportError as exc:
                self._forget(host)
                if not exc.retryable or not self._may_retry(index, hosts, deadline):
                    raise _transport_exception(exc) from exc
                self.log.info("%s on %s; trying a fallback host", exc.message, host)
                continue
            if not _qualifies_for_fallback(response):
                self._remember(host, started_from)
                return response
            self._forget(host)
            if not self._may_retry(index, hosts, deadline):
                return response
            self.log.info("status %s from %s; trying a fallback host", response.status, host)
        raise AssertionError("unreachable: the host plan is never empty")  # pragma: no cover


def _split_path(
    path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None
) -> tuple[str, list[tuple[str, str]]]:
    """Separate a path from its query string and append ``params`` (None values dropped)."""
    if not path.startswith("/"):
        path = "/" + path
    if not params and "?" not in path:
        return path, []
    base, _, existing = path.partition("?")
    query = parse_qsl(existing, keep_blank_values=True)
    items = params.items() if isinstance(params, Mapping) else (params or [])
    for name, value in items:
        if value is None:
            continue
        query.append((name, _param_text(value)))
    return base, query


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _request_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(12)).decode("ascii").rstrip("=")
