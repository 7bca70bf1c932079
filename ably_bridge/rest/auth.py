"""Auth for the REST client (RSA1-RSA15): which credential to send, and tokens.

:class:`Auth` owns the auth state of one client - the scheme (Basic or
token), the current :class:`TokenDetails`, the stored default
:class:`TokenParams` and :class:`AuthOptions`, and the server-time offset
(RSA10k) - behind one lock, so that when many threads hit an expired token
at once it is renewed once, not once per thread.

Tokens come from a key (a signed :class:`TokenRequest` exchanged at
``/keys/{keyName}/requestToken``), an ``auth_callback`` (a token string or
JWT, TokenRequest, TokenDetails, or their dict forms) or an ``auth_url``
(GET or POST; text/plain, application/jwt or JSON answers). Keys, secrets,
tokens and auth parameters are never logged or shown in a repr.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ably_bridge.errors import AblyException, AuthenticationError, ErrorCode, help_href
from ably_bridge.options import AuthCallback, ClientOptions, parse_key
from ably_bridge.protocol.tokens import (
    TokenDetails,
    TokenParams,
    TokenRequest,
    canonical_capability,
    looks_like_token_request,
)
from ably_bridge.rest.http import Credential, RestHttp, decode_body, error_from_response
from ably_bridge.transports.http import HttpResponse, HttpTransportError

__all__ = ["Auth", "AuthOptions"]


MAX_TOKEN_BYTES = 128 * 1024  # RSA4f: a larger token or token object is invalid
_TOKEN_TYPES = ("text/plain", "application/jwt")


@dataclass(frozen=True, kw_only=True)
class AuthOptions:
    """The auth subset of the client options (AO2), as ``authorize`` takes it."""

    key: str | None = None
    token: str | None = None
    token_details: TokenDetails | None = None
    auth_callback: AuthCallback | None = None
    auth_url: str | None = None
    auth_method: str = "GET"
    auth_headers: Mapping[str, str] | None = None
    auth_params: Mapping[str, str] | None = None
    query_time: bool = False

    @classmethod
    def from_client_options(cls, options: ClientOptions) -> AuthOptions:
        return cls(**{f.name: getattr(options, f.name) for f in fields(cls)})

    @classmethod
    def coerce(
        cls, value: AuthOptions | Mapping[str, Any] | None, **extra: Any
    ) -> AuthOptions | None:
        """An AuthOptions from an instance, a dict of its fields, keywords, or None."""
        if value is None and not extra:
            return None
        if isinstance(value, AuthOptions):
            return replace(value, **extra) if extra else value
        return cls(**{**dict(value or {}), **extra})

    @property
    def can_renew(self) -> bool:
        """A means to get a new token exists (RSA4a, RSA4b)."""
        return any(v is not None for v in (self.key, self.auth_callback, self.auth_url))

    def __repr__(self) -> str:
        shown = [
            f"{f.name}=<set>" for f in fields(self) if getattr(self, f.name) not in (None, False)
        ]
        return f"AuthOptions({', '.join(shown)})"


def _coerce_params(value: TokenParams | Mapping[str, Any] | None) -> TokenParams | None:
    if value is None or isinstance(value, TokenParams):
        return value
    raw = dict(value)
    if "ttl" in raw and "ttl_ms" not in raw:
        return TokenParams(**raw)
    return TokenParams.from_dict(raw)


def _auth_failure(message: str, cause: BaseException | None = None) -> AuthenticationError:
    """RSA4e: a failing auth callback or URL is 40170 with HTTP status 401."""
    return AuthenticationError(
        message, ErrorCode.ERROR_FROM_CLIENT_TOKEN_CALLBACK, 401, cause=cause
    )


class Auth:
    """Credentials and tokens of one REST client (``rest.auth``)."""

    def __init__(self, options: ClientOptions, http: RestHttp) -> None:
        self._options = options
        self._http = http
        self._log = http.log  # the client's logger (.logs)
        self._clock = options.clock
        self._lock = threading.RLock()
        self._auth_options = AuthOptions.from_client_options(options)
        self._token_params = options.default_token_params or TokenParams()
        self._basic = not options.uses_token_auth  # RSA2, RSA4
        self._token_details = options.token_details or (
            TokenDetails(token=options.token) if options.token else None
        )
        self._server_offset_ms: int | None = None
        if not self._basic and self._token_details is None and not self._auth_options.can_renew:
            # RSC1b, RSA14: token auth with no token and no way to get one.
            raise AuthenticationError(
                "no means to authenticate: give a key, token, auth_callback or auth_url",
                ErrorCode.NO_VALID_AUTHENTICATION_METHOD_PROVIDED,
                401,
            )
        if self._token_details is not None and not self._auth_options.can_renew:
            # RSA4a1: warn early that an expired token will be fatal.
            self._log.info(
                "a token was given with no means to renew it (code 40171, see %s)",
                help_href(ErrorCode.TOKEN_RENEWAL_NOT_CONFIGURED),
            )
        if self._token_details is not None:
            self._check_client_id(self._token_details)

    # -- state -------------------------------------------------------------------
    @property
    def client_id(self) -> str | None:
        """The identity of this client (RSA7b): the option, else the token's (maybe ``*``)."""
        if self._options.client_id is not None:
            return self._options.client_id
        details = self._token_details
        return None if self._basic or details is None else details.client_id

    @property
    def token_details(self) -> TokenDetails | None:
        """The token in use, if token auth has one yet."""
        return None if self._basic else self._token_details

    @property
    def auth_mechanism(self) -> str:
        """``"basic"`` or ``"token"``."""
        return "basic" if self._basic else "token"

    @property
    def default_token_params(self) -> TokenParams:
        """TokenParams for calls that give none (TO3j11); ``authorize`` replaces them (RSA10g)."""
        return self._token_params

    @property
    def server_time_offset_ms(self) -> int | None:
        """Server time minus local time, once ``query_time`` has asked (RSA10k)."""
        return self._server_offset_ms

    @property
    def basic_client_id(self) -> str | None:
        return self._options.client_id if self._basic else None

    # -- the funnel's view ---------------------------------------------------------
    def credential(self) -> Credential:
        """The Authorization header for the next request (RSA11, RSA3b)."""
        if self._basic:
            key = self._auth_options.key or ""
            return Credential("Basic " + _b64(key), basic=True)
        details = self._current_token()
        return Credential("Bearer " + _b64(details.token), basic=False, token=details.token)

    def renew_after_token_error(self, stale: Credential, error: AblyException) -> None:
        """RSA4b: replace the refused token once, however many threads saw it refused."""
        with self._lock:
            if not self._auth_options.can_renew:
                # RSA4a2: the token was given as-is and cannot be replaced.
                raise AuthenticationError(
                    f"token rejected ({error.code}) and no means to renew it was given",
                    ErrorCode.TOKEN_RENEWAL_NOT_CONFIGURED,
                    403,
                    cause=error,
                )
            current = self._token_details
            if current is not None and current.token != stale.token:
                return  # another thread renewed it already
            self._token_details = None
            self._token_details = self._obtain(self._request_params(None), self._auth_options)

    def _current_token(self) -> TokenDetails:
        with self._lock:
            details = self._token_details
            if details is not None and not self._expired(details):
                return details
            if details is not None and not self._auth_options.can_renew:
                return details  # let the server refuse it (RSA4a2)
            if details is not None:
                self._log.info("token expired locally; renewing before the request (RSA4b1)")
            self._token_details = self._obtain(self._request_params(None), self._auth_options)
            return self._token_details

    def _expired(self, details: TokenDetails) -> bool:
        """RSA4b1: compare ``expires`` with the (server-adjusted) injected clock."""
        return details.is_expired(self._now_ms())

    def _now_ms(self) -> int:
        return self._clock.time_ms() + (self._server_offset_ms or 0)

    # -- public API --------------------------------------------------------------
    def create_token_request(
        self,
        token_params: TokenParams | Mapping[str, Any] | None = None,
        auth_options: AuthOptions | Mapping[str, Any] | None = None,
        **auth_kwargs: Any,
    ) -> TokenRequest:
        """A TokenRequest signed with the key (RSA9); any client may exchange it for a token."""
        options = self._effective_options(auth_options, auth_kwargs)
        if options.key is None:
            raise AuthenticationError(
                "a key is needed to sign a token request", ErrorCode.INVALID_CREDENTIALS, 401
            )
        params = self._request_params(_coerce_params(token_params))
        key_name, secret = parse_key(options.key)
        capability = canonical_capability(params.capability) or None  # RSA9f, canonical form
        request = TokenRequest(
            key_name=key_name,
            ttl=params.ttl_ms,  # RSA5, RSA9e: omitted unless asked for
            capability=capability,  # RSA6: omitted -> the key's capability
            client_id=params.client_id,
            timestamp=params.timestamp or self._timestamp(options.query_time),  # RSA9d
            nonce=params.nonce or secrets.token_hex(16),  # RSA9c: 32 random characters
        )
        return request.signed(secret)  # RSA9g

    def request_token(
        self,
        token_params: TokenParams | Mapping[str, Any] | None = None,
        auth_options: AuthOptions | Mapping[str, Any] | None = None,
        **auth_kwargs: Any,
    ) -> TokenDetails:
        """Get a new token (RSA8) without changing this client's credentials.

        Given ``token_params``/``auth_options`` replace the stored ones for
        this call (RSA8e); the stored key is kept when none is given.
        """
        options = self._effective_options(auth_options, auth_kwargs)
        return self._obtain(self._request_params(_coerce_params(token_params)), options)

    def authorize(
        self,
        token_params: TokenParams | Mapping[str, Any] | None = None,
        auth_options: AuthOptions | Mapping[str, Any] | None = None,
        **auth_kwargs: Any,
    ) -> TokenDetails:
        """Switch to token auth with a fresh token now (RSA10a) and keep the arguments.

        The arguments become the defaults for later renewals, except
        ``timestamp`` and ``query_time`` (RSA10g).
        """
        params = _coerce_params(token_params)
        with self._lock:
            options = self._effective_options(auth_options, auth_kwargs)
            given = options.token_details or (
                TokenDetails(token=options.token) if options.token else None
            )
            details = given or self._obtain(self._request_params(params), options)  # RSA10e
            self._check_client_id(details)
            self._auth_options = replace(options, token=None, token_details=None, query_time=False)
            if params is not None:
                self._token_params = replace(params, timestamp=None)
            self._basic = False
            self._token_details = details
            return details

    # -- token sources -------------------------------------------------------------
    def _effective_options(
        self, given: AuthOptions | Mapping[str, Any] | None, extra: Mapping[str, Any]
    ) -> AuthOptions:
        options = AuthOptions.coerce(given, **extra)
        if options is None:
            return self._auth_options
        if options.key is None and self._auth_options.key is not None:
            options = replace(options, key=self._auth_options.key)  # RSA10i: keep the key
        return options

    def _request_params(self, given: TokenParams | None) -> TokenParams:
        params = given if given is not None else self._token_params
        if self._options.client_id is not None:
            # RSA7d, RSA7a4: the client's own clientId is what the token is for.
            params = replace(params, client_id=self._options.client_id)
        return params

    def _obtain(self, params: TokenParams, options: AuthOptions) -> TokenDetails:
        if options.auth_callback is not None:
            result = self._call_callback(options.auth_callback, params)
        elif options.auth_url is not None:
            result = self._fetch_auth_url(options, params)
        elif options.key is not None:
            result = self.create_token_request(params, options)
        else:
            raise AuthenticationError(
                "no means to obtain a token",
                ErrorCode.NO_VALID_AUTHENTICATION_METHOD_PROVIDED,
                401,
            )
        details = self._to_token_details(result)
        self._check_client_id(details)
        self._log.debug(
            "obtained a token (client_id=%r, expires=%s)", details.client_id, details.expires
        )
        return details

    def _call_callback(self, callback: AuthCallback, params: TokenParams) -> Any:
        try:
            return callback(params)  # RSA8d
        except Exception as exc:
            raise _auth_failure(f"auth_callback failed: {exc.__class__.__name__}", exc) from exc

    def _fetch_auth_url(self, options: AuthOptions, params: TokenParams) -> Any:
        """RSA8c: GET with a merged query, or POST a form; decode by Content-Type."""
        assert options.auth_url is not None
        values = {**(options.auth_params or {}), **params.to_query()}  # RSA8c2
        headers = dict(options.auth_headers or {})
        method = options.auth_method.upper()
        url, body = options.auth_url, None
        if method == "GET":
            url = _merge_query(url, values)  # RSA8c1a, RSA8c1c
        else:
            body = urlencode(values).encode("ascii")  # RSA8c1b
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self._log.debug("requesting a token from auth_url %s (%s)", _without_query(url), method)
        timeout = (self._options.http_open_timeout, self._options.http_request_timeout)
        try:
            response = self._http.transport.request(method, url, headers, body, timeout)
        except HttpTransportError as exc:
            raise _auth_failure(f"auth_url request failed: {exc.message}", exc) from exc
        return _auth_url_result(response)

    def _to_token_details(self, result: Any) -> TokenDetails:
        if isinstance(result, TokenDetails):
            return result
        if isinstance(result, TokenRequest):
            return self._exchange(result)
        if isinstance(result, str):
            if not result or len(result.encode("utf-8")) > MAX_TOKEN_BYTES:
                raise _auth_failure("the token is empty or larger than 128 KiB")  # RSA4f
            return TokenDetails(token=result)
        if isinstance(result, Mapping):
            if len(json.dumps(result, default=str)) > MAX_TOKEN_BYTES:
                raise _auth_failure("the token object is larger than 128 KiB")
            if looks_like_token_request(result):
                return self._exchange(TokenRequest.from_dict(result))
            try:
                return TokenDetails.from_dict(result)
            except AblyException as exc:
                raise _auth_failure("the token object has no token", exc) from exc
        raise _auth_failure(f"unusable token of type {type(result).__name__}")  # RSA4f

    def _exchange(self, request: TokenRequest) -> TokenDetails:
        """POST a signed TokenRequest to Ably; its errors propagate as Ably sent them."""
        path = f"/keys/{quote(request.key_name, safe='')}/requestToken"
        response = self._http.request("POST", path, body=request.to_dict(), authenticated=False)
        if not isinstance(response.body, Mapping):
            raise AblyException(
                "token response is not an object", ErrorCode.INVALID_REQUEST_BODY, 400
            )
        return TokenDetails.from_dict(response.body)

    def _check_client_id(self, details: TokenDetails) -> None:
        """RSA15a-c: a token for another identity than the configured clientId is an error."""
        wanted, got = self._options.client_id, details.client_id
        if wanted is not None and got not in (None, "*", wanted):
            raise AuthenticationError(
                f"the token's clientId {got!r} does not match the client's clientId {wanted!r}",
                ErrorCode.INCOMPATIBLE_CREDENTIALS,
                401,
            )

    # -- time ----------------------------------------------------------------------
    def _timestamp(self, query_time: bool) -> int:
        """Now in ms; with ``query_time`` ask the server once and keep the offset (RSA10k)."""
        if query_time and self._server_offset_ms is None:
            response = self._http.request("GET", "/time", authenticated=False)
            server_ms = int(response.body[0])
            self._server_offset_ms = server_ms - self._clock.time_ms()
            self._log.debug("server time offset is %d ms", self._server_offset_ms)
        return self._now_ms()

    def __repr__(self) -> str:
        return f"Auth(mechanism={self.auth_mechanism}, client_id={self.client_id!r})"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _merge_query(url: str, values: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in values]
    query = urlencode(kept + list(values.items()))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _auth_url_result(response: HttpResponse) -> Any:
    """A token string, or a TokenDetails/TokenRequest dict, from an authUrl answer."""
    if response.status >= 400:
        try:
            cause: AblyException = error_from_response(response, decode_body(response))
        except AblyException as exc:
            cause = exc
        raise _auth_failure(f"auth_url answered HTTP {response.status}", cause)
    if len(response.body) > MAX_TOKEN_BYTES:
        raise _auth_failure("auth_url answer is larger than 128 KiB")  # RSA4f
    kind = response.content_type
    if kind in _TOKEN_TYPES:
        return response.body.decode("utf-8").strip()
    if kind == "application/json":
        try:
            return json.loads(response.body)
        except ValueError as exc:
            raise _auth_failure("auth_url answered malformed JSON", exc) from exc
    raise _auth_failure(f"auth_url answered unsupported content type {kind or '(none)'!r}")
