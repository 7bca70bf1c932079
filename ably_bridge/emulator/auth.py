"""Credential resolution and token issuing (RSA1-RSA15, ably-protocol.md section 6).

* :func:`from_key` / :func:`from_token` turn a key string or a token (Ably
  token or HS256 JWT, 6.7) into :class:`~ably_bridge.emulator.state.Credentials`,
  with the error Ably would give (40005 malformed, 40101 bad secret or unknown
  app, 40142 expired, 40143 unknown token, 40144 bad JWT, 40400 a JWT of no
  app ...);
* :func:`from_rest_request` reads ``Authorization: Basic|Bearer`` (raw or
  base64 token), ``?key=`` and ``?access_token=``/``?accessToken=``;
* :func:`connection_identity` applies the realtime clientId rules (RSA7, RSA15);
* :func:`request_token` serves ``POST /keys/{keyName}/requestToken`` for signed
  TokenRequests (HMAC, timestamp window, nonce replay; RSA9) and for unsigned
  TokenParams authenticated by the key itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

from ably_bridge.emulator import capability as caps
from ably_bridge.emulator.apps import Token
from ably_bridge.emulator.errors import error
from ably_bridge.emulator.state import Credentials, EmulatorState
from ably_bridge.protocol.tokens import token_request_mac

log = logging.getLogger(__name__)


def from_key(state: EmulatorState, key_str: str, client_id: str | None = None) -> Credentials:
    """Basic-auth credentials for ``appId.keyId:secret`` (40005 malformed, else 40101)."""
    name, sep, secret = key_str.partition(":")
    app_id, dot, key_id = name.partition(".")
    if not sep or not dot or not app_id or not key_id or not secret:
        raise error(40005, "invalid key: expected appId.keyId:secret")
    app = state.apps.get(app_id)
    if app is None:  # Ably answers an unknown app's key like a wrong secret
        raise error(40101, f"invalid credentials: no application {app_id}")
    key = app.keys.get(key_id)
    if key is None or not hmac.compare_digest(key.secret.encode(), secret.encode()):
        raise error(40101, f"invalid credentials for key {name}")
    return Credentials(app, key, key.capability, client_id)


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _from_jwt(state: EmulatorState, token: str) -> Token:
    """Verify an HS256 JWT signed with an app key (kid = keyName) (6.7)."""
    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header = json.loads(_b64url_decode(head_b64))
        claims = json.loads(_b64url_decode(body_b64))
        signature = _b64url_decode(sig_b64)
    except (ValueError, binascii.Error) as exc:
        raise error(40144, "invalid JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise error(40144, "invalid JWT")
    if header.get("alg") != "HS256" or not isinstance(header.get("kid"), str):
        raise error(40144, "invalid JWT: HS256 with kid=keyName required")
    key = state.find_key(header["kid"])
    if key is None:
        if header["kid"].partition(".")[0] not in state.apps:
            raise error(40400, "invalid JWT: no application for its kid", 404)
        raise error(40144, "invalid JWT: unknown kid")
    expected = hmac.new(
        key.secret.encode(), f"{head_b64}.{body_b64}".encode(), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(expected, signature):
        raise error(40144, "invalid JWT signature")
    try:
        iat_ms = int(claims.get("iat", 0)) * 1000
        exp_ms = int(claims["exp"]) * 1000
    except (KeyError, TypeError, ValueError) as exc:
        raise error(40144, "invalid JWT: iat/exp") from exc
    capability = key.capability
    if "x-ably-capability" in claims:
        capability = caps.intersect(caps.parse(claims["x-ably-capability"]), key.capability)
    client_id = claims.get("x-ably-clientId")
    return Token(
        token=token,
        app_id=key.app_id,
        key_name=key.key_name,
        issued_ms=iat_ms,
        expires_ms=exp_ms,
        capability=capability,
        client_id=client_id if isinstance(client_id, str) else None,
    )


def lookup_token(state: EmulatorState, token: str) -> Token:
    """The live token record for ``token`` (40143 unknown, 40141 revoked, 40142 expired)."""
    record = state.tokens.get(token)
    if record is None:
        if token.count(".") == 2:
            record = _from_jwt(state, token)
        else:
            raise error(40143, "token unrecognised")
    if record.revoked:
        raise error(40141, "token revoked")
    if record.expires_ms <= state.now_ms():
        raise error(40142, "token expired")
    if record.app_id not in state.apps:
        raise error(40143, "token unrecognised (app deleted)")
    return record


def from_token(state: EmulatorState, token: str) -> Credentials:
    record = lookup_token(state, token)
    app = state.apps[record.app_id]
    key = state.find_key(record.key_name)
    if key is None:
        raise error(40143, "token unrecognised (key deleted)")
    return Credentials(app, key, record.capability, record.client_id, record)


def decode_bearer(value: str) -> str:
    """Bearer tokens arrive raw (UTS mocks) or base64 (SDKs); accept both (6.1)."""
    value = value.strip()
    if "." in value:
        return value
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return value
    return decoded if decoded.isprintable() and decoded else value


def from_rest_request(
    state: EmulatorState,
    authorization: str | None,
    query: Mapping[str, str],
    client_id_header: str | None,
    tls: bool,
) -> Credentials:
    """Credentials of a REST request (40101 when none, RSC1b / 6.1)."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                key_str = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
                raise error(40005, "malformed Basic credentials") from exc
            return _basic(state, key_str, client_id_header, tls)
        if scheme.lower() == "bearer":
            return from_token(state, decode_bearer(value))
        raise error(40101, f"unsupported Authorization scheme {scheme!r}")
    if "key" in query:
        return _basic(state, query["key"], client_id_header, tls)
    token = query.get("access_token") or query.get("accessToken")
    if token:
        return from_token(state, token)
    raise error(40101, "no credentials supplied", 401)


def _basic(
    state: EmulatorState, key_str: str, client_id_header: str | None, tls: bool
) -> Credentials:
    if state.config.require_tls_for_basic and not tls:
        raise error(40103, "cannot use Basic auth over non-TLS connections")
    client_id = None
    if client_id_header:
        try:
            client_id = base64.b64decode(client_id_header, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise error(40012, "X-Ably-ClientId must be base64 UTF-8") from exc
        if client_id == "*":
            raise error(40012, "clientId '*' is reserved")
    return from_key(state, key_str, client_id)


def connection_identity(creds: Credentials, requested: str | None) -> str | None:
    """The clientId a realtime connection gets from its credentials and ``clientId`` (RSA7)."""
    if requested == "":
        requested = None
    if creds.basic:
        if requested == "*":
            raise error(40012, "clientId '*' is reserved")
        return requested
    token_id = creds.client_id
    if requested is None:
        return token_id
    if token_id == "*":  # noqa: S105 - the wildcard clientId, not a password
        return requested
    if requested == "*" or token_id != requested:
        raise error(40012, f"clientId {requested!r} does not match the token's {token_id!r}")
    return requested


def _opt_int(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise error(40003, f"invalid {what}") from exc


def request_token(
    state: EmulatorState,
    key_name: str,
    body: Any,
    caller: Credentials | None,
) -> Token:
    """Serve ``POST /keys/{keyName}/requestToken`` (RSA8, RSA9)."""
    if not isinstance(body, dict):
        raise error(40001, "token request body must be an object")
    key = state.find_key(key_name)
    if key is None:
        raise error(40400 if "." not in key_name else 40101, f"unknown key {key_name}")
    ttl = _opt_int(body.get("ttl"), "ttl")
    raw_cap = body.get("capability")
    requested = caps.parse(raw_cap) if raw_cap not in (None, "") else None
    client_id = body.get("clientId")
    if client_id is not None and not isinstance(client_id, str):
        raise error(40012, "clientId must be a string")
    if client_id == "":
        client_id = None
    ceiling = None
    if body.get("mac"):
        if body.get("keyName", key_name) != key_name:
            raise error(40101, "keyName does not match the request path")
        timestamp = _opt_int(body.get("timestamp"), "timestamp")
        nonce = body.get("nonce")
        if timestamp is None or not isinstance(nonce, str) or not nonce:
            raise error(40001, "signed token request needs timestamp and nonce")
        cap_text = raw_cap if isinstance(raw_cap, str) else None
        if isinstance(raw_cap, dict):
            cap_text = caps.to_json(caps.parse(raw_cap))
        expected = token_request_mac(
            key.secret, key_name, ttl, cap_text, client_id, timestamp, nonce
        )
        if not hmac.compare_digest(expected.encode(), str(body["mac"]).encode()):
            raise error(40101, "invalid mac on token request")
        if abs(state.now_ms() - timestamp) > state.config.token_request_window_ms:
            raise error(40104, "timestamp not current")
        state.check_nonce(key_name, nonce, timestamp)
    else:
        if caller is None or caller.key is not key:
            raise error(40101, "unsigned token request needs the key's own credentials")
        if caller.token is not None:
            ceiling = caller.capability
            if caller.client_id not in (None, "*") and client_id != caller.client_id:
                raise error(40102, "token may not request a token for another clientId")
            ttl = _within_parent(state, caller.token, ttl, requested)
    log.debug("issuing token for %s", key_name)
    token = state.issue_token(
        key, ttl_ms=ttl, capability=requested, client_id=client_id, ceiling=ceiling
    )
    if isinstance(body.get("revocationKey"), str):
        token.revocation_key = body["revocationKey"]
    return token


def _within_parent(
    state: EmulatorState, parent: Token, ttl: int | None, requested: caps.Capability | None
) -> int:
    """A token asking for a token gets no more than it holds (issue 17 item 4).

    The capability must lie inside the parent's: a wider one is refused with
    40160, never silently narrowed. The lifetime ends no later than the
    parent's: an explicit ``ttl`` past it is refused (40003); the default ttl
    is cut to what the parent has left.
    """
    if requested is not None and not caps.covers(parent.capability, requested):
        raise error(40160, "requested capability exceeds the capability of the token in use")
    remaining = parent.expires_ms - state.now_ms()
    if remaining <= 0:
        raise error(40142, "token expired")
    if ttl is None:
        return min(state.config.default_token_ttl_ms, remaining)
    if ttl > remaining:
        raise error(40003, "ttl exceeds the remaining lifetime of the token in use")
    return ttl
