"""Token types and TokenRequest signing (TK, TE, TD, RSA9): pure data, no I/O.

* :class:`TokenParams` - what a client asks for. Its ``ttl`` is in **seconds**
  (the Python API's unit for durations); on the wire it travels as ms.
* :class:`TokenRequest` - a signed wire record; its fields are in wire units
  (``ttl`` and ``timestamp`` in ms) because the MAC covers their decimal text.
* :class:`TokenDetails` - a token and its metadata; ``issued``/``expires`` are
  Ably timestamps (ms since the epoch).

Capabilities are JSON objects mapping resources to operation lists; before
signing they are put into the canonical form of :func:`canonical_capability`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from ably_bridge.errors import AblyException, ErrorCode

__all__ = [
    "Capability",
    "TokenDetails",
    "TokenParams",
    "TokenRequest",
    "canonical_capability",
    "looks_like_token_request",
    "token_request_mac",
    "token_request_text",
]

Capability = str | Mapping[str, Any]

DEFAULT_TTL_MS = 60 * 60 * 1000  # TK2a: one hour when the request leaves ttl out


def canonical_capability(capability: Capability | None) -> str:
    """Canonical JSON of a capability: no spaces, sorted resources, sorted operations.

    Accepts the JSON text or a mapping. Raises ``AblyException`` 40000 for a
    capability that is not an object of string lists.
    """
    if capability is None or capability == "":
        return ""
    if isinstance(capability, str):
        try:
            parsed = json.loads(capability)
        except ValueError as exc:
            raise AblyException("capability is not valid JSON", ErrorCode.BAD_REQUEST, 400) from exc
    else:
        parsed = capability
    if not isinstance(parsed, Mapping):
        raise AblyException("capability must be a JSON object", ErrorCode.BAD_REQUEST, 400)
    canonical: dict[str, list[str]] = {}
    for resource in sorted(parsed):
        ops = parsed[resource]
        if isinstance(ops, str):
            ops = [ops]
        if not isinstance(resource, str) or not isinstance(ops, list | tuple):
            raise AblyException(
                "capability must map resource names to lists of operations",
                ErrorCode.BAD_REQUEST,
                400,
            )
        if not all(isinstance(op, str) for op in ops):
            raise AblyException("capability operations must be strings", ErrorCode.BAD_REQUEST, 400)
        canonical[resource] = sorted(set(ops))
    return json.dumps(canonical, separators=(",", ":"), ensure_ascii=False)


def token_request_text(
    key_name: str,
    ttl_ms: int | None,
    capability: str | None,
    client_id: str | None,
    timestamp_ms: int,
    nonce: str,
) -> str:
    """The text a TokenRequest MAC covers (RSA9g): six fields, each followed by a LF."""
    fields = (
        key_name,
        "" if ttl_ms is None else str(int(ttl_ms)),
        capability or "",
        client_id or "",
        str(int(timestamp_ms)),
        nonce,
    )
    return "".join(f"{value}\n" for value in fields)


def token_request_mac(
    key_secret: str,
    key_name: str,
    ttl_ms: int | None,
    capability: str | None,
    client_id: str | None,
    timestamp_ms: int,
    nonce: str,
) -> str:
    """base64(HMAC-SHA256(secret, text)) for a TokenRequest (RSA9)."""
    text = token_request_text(key_name, ttl_ms, capability, client_id, timestamp_ms, nonce)
    digest = hmac.new(key_secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenParams:
    """What a client asks a token for (TK1). ``ttl`` is in seconds."""

    ttl: float | None = None
    capability: Capability | None = None
    client_id: str | None = None
    timestamp: int | None = None  # ms; filled in when the request is made
    nonce: str | None = None

    @property
    def ttl_ms(self) -> int | None:
        return None if self.ttl is None else round(self.ttl * 1000)

    def merged(self, overrides: TokenParams | None) -> TokenParams:
        """These params with every field the overrides set taking precedence."""
        if overrides is None:
            return self
        changes = {
            name: getattr(overrides, name)
            for name in ("ttl", "capability", "client_id", "timestamp", "nonce")
            if getattr(overrides, name) is not None
        }
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Wire form (ttl in ms, capability canonical JSON), None fields omitted."""
        out: dict[str, Any] = {}
        if self.ttl is not None:
            out["ttl"] = self.ttl_ms
        if self.capability is not None:
            out["capability"] = canonical_capability(self.capability)
        if self.client_id is not None:
            out["clientId"] = self.client_id
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.nonce is not None:
            out["nonce"] = self.nonce
        return out

    def to_query(self) -> dict[str, str]:
        """The query-string form (Go's ``TokenParams.Query``): wire names, text values.

        What an ``auth_url`` receives (RSA8c1): ``ttl`` in ms, the capability as
        canonical JSON; unset fields are left out.
        """
        return {name: str(value) for name, value in self.to_dict().items()}

    def query_string(self) -> str:
        """:meth:`to_query` URL-encoded, e.g. ``ttl=60000&clientId=bob``."""
        return urlencode(self.to_query())

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TokenParams:
        """Read wire form (``ttl`` in ms, camelCase or snake_case keys) into TokenParams."""
        ttl = raw.get("ttl")
        return cls(
            ttl=None if ttl is None else float(ttl) / 1000.0,
            capability=raw.get("capability"),
            client_id=raw.get("clientId", raw.get("client_id")),
            timestamp=_opt_int(raw.get("timestamp")),
            nonce=raw.get("nonce"),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenRequest:
    """A signed request for a token (TE1-TE6); wire units (ms)."""

    key_name: str
    ttl: int | None = None
    capability: str | None = None
    client_id: str | None = None
    timestamp: int
    nonce: str
    mac: str | None = None

    def signing_text(self) -> str:
        return token_request_text(
            self.key_name, self.ttl, self.capability, self.client_id, self.timestamp, self.nonce
        )

    def signed(self, key_secret: str) -> TokenRequest:
        """This request with its MAC computed from ``key_secret``."""
        mac = token_request_mac(
            key_secret,
            self.key_name,
            self.ttl,
            self.capability,
            self.client_id,
            self.timestamp,
            self.nonce,
        )
        return replace(self, mac=mac)

    def verify(self, key_secret: str) -> bool:
        """True when the MAC matches ``key_secret`` (constant-time compare)."""
        if not self.mac:
            return False
        expected = self.signed(key_secret).mac or ""
        return hmac.compare_digest(expected.encode("ascii"), self.mac.encode("ascii", "replace"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keyName": self.key_name}
        if self.ttl is not None:
            out["ttl"] = self.ttl
        if self.capability:
            out["capability"] = self.capability
        if self.client_id is not None:
            out["clientId"] = self.client_id
        out["timestamp"] = self.timestamp
        out["nonce"] = self.nonce
        if self.mac is not None:
            out["mac"] = self.mac
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TokenRequest:
        try:
            return cls(
                key_name=str(raw["keyName"]),
                ttl=_opt_int(raw.get("ttl")),
                capability=raw.get("capability") or None,
                client_id=raw.get("clientId"),
                timestamp=int(raw["timestamp"]),
                nonce=str(raw["nonce"]),
                mac=raw.get("mac"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AblyException(
                f"invalid TokenRequest: {exc.__class__.__name__} on {exc}",
                ErrorCode.INVALID_REQUEST_BODY,
                400,
            ) from exc

    def __repr__(self) -> str:
        return (
            f"TokenRequest(key_name={self.key_name!r}, ttl={self.ttl}, "
            f"client_id={self.client_id!r}, timestamp={self.timestamp})"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenDetails:
    """A token and what it allows (TD1-TD7); ``issued``/``expires`` in ms since the epoch."""

    token: str
    expires: int | None = None
    issued: int | None = None
    capability: str | None = None
    client_id: str | None = None
    key_name: str | None = field(default=None)

    def issue_time(self) -> datetime | None:
        """``issued`` as an aware UTC datetime (Go's ``IssueTime``); None if unknown."""
        return _datetime(self.issued)

    def expire_time(self) -> datetime | None:
        """``expires`` as an aware UTC datetime (Go's ``ExpireTime``); None if unknown."""
        return _datetime(self.expires)

    def is_expired(self, now_ms: int, margin_ms: int = 0) -> bool:
        """True when the token expires at or before ``now_ms + margin_ms`` (RSA4b1)."""
        return self.expires is not None and self.expires <= now_ms + margin_ms

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"token": self.token}
        for key, value in (
            ("expires", self.expires),
            ("issued", self.issued),
            ("capability", self.capability),
            ("clientId", self.client_id),
            ("keyName", self.key_name),
        ):
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TokenDetails:
        token = raw.get("token")
        if not isinstance(token, str) or not token:
            raise AblyException("token details have no token", ErrorCode.INVALID_REQUEST_BODY, 400)
        capability = raw.get("capability")
        if isinstance(capability, Mapping):
            capability = canonical_capability(capability)
        return cls(
            token=token,
            expires=_opt_int(raw.get("expires")),
            issued=_opt_int(raw.get("issued")),
            capability=capability,
            client_id=raw.get("clientId"),
            key_name=raw.get("keyName"),
        )

    def __repr__(self) -> str:
        # The token is a bearer secret: never shown.
        return (
            f"TokenDetails(token=<redacted>, expires={self.expires}, "
            f"client_id={self.client_id!r}, capability={self.capability!r})"
        )


def looks_like_token_request(raw: Mapping[str, Any]) -> bool:
    """An authCallback/authUrl result with ``keyName`` is a TokenRequest (AO2b)."""
    return "keyName" in raw and "token" not in raw


def _datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _opt_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)
