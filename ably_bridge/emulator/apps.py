"""Apps, API keys and issued tokens, and building an app from a ``POST /apps`` body.

An :class:`App` holds its keys, namespaces and channels; :func:`build_app`
accepts the ``post_apps`` shape of ably-common's ``test-app-setup.json``
unchanged (ably-protocol.md section 9) plus two optional extras for fixed
credentials in dev configs: a top-level ``appId`` and per-key ``id``/``value``.
:func:`app_response` renders the sandbox's 201 reply. Secrets and tokens never
appear in a ``repr``.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.emulator import capability as caps
from ably_bridge.emulator.channels import Channel
from ably_bridge.emulator.errors import error

_ID_ALPHABET = string.ascii_letters + string.digits


def random_id(length: int) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


@dataclass(eq=False)
class Key:
    """One API key: ``appId.keyId:secret`` with its capability."""

    app_id: str
    key_id: str
    secret: str
    capability: caps.Capability
    revocable_tokens: bool = False
    created_ms: int = 0
    echo: dict[str, Any] = field(default_factory=dict)

    @property
    def key_name(self) -> str:
        return f"{self.app_id}.{self.key_id}"

    @property
    def key_str(self) -> str:
        return f"{self.key_name}:{self.secret}"

    def __repr__(self) -> str:
        return f"Key({self.key_name!r}, capability={caps.to_json(self.capability)!r})"


@dataclass(eq=False)
class Token:
    """An issued token (or a verified JWT) and what it grants."""

    token: str
    app_id: str
    key_name: str
    issued_ms: int
    expires_ms: int
    capability: caps.Capability
    client_id: str | None = None
    revoked: bool = False
    revocation_key: str | None = None  # a revokeTokens target (revocation.py)

    def details(self) -> dict[str, Any]:
        """TokenDetails as returned by requestToken (TD1-TD7, ably-protocol.md 7.7)."""
        out: dict[str, Any] = {
            "token": self.token,
            "keyName": self.key_name,
            "issued": self.issued_ms,
            "expires": self.expires_ms,
            "capability": caps.to_json(self.capability),
        }
        if self.client_id is not None:
            out["clientId"] = self.client_id
        return out

    def __repr__(self) -> str:
        return (
            f"Token(<redacted>, key_name={self.key_name!r}, client_id={self.client_id!r}, "
            f"expires_ms={self.expires_ms})"
        )


@dataclass(eq=False)
class App:
    """One application: keys, namespaces, channels and stats counters."""

    app_id: str
    account_id: str
    created_ms: int
    keys: dict[str, Key] = field(default_factory=dict)
    key_order: list[str] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    channels: dict[str, Channel] = field(default_factory=dict)
    tls_only: bool = False
    limits: dict[str, Any] = field(default_factory=dict)
    fixtures: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def channel(self, name: str) -> Channel:
        found = self.channels.get(name)
        if found is None:
            found = self.channels[name] = Channel(self.app_id, name)
        return found

    def ordered_keys(self) -> list[Key]:
        return [self.keys[k] for k in self.key_order]

    def __repr__(self) -> str:
        return f"App({self.app_id!r}, keys={len(self.keys)}, channels={len(self.channels)})"


def build_app(body: dict[str, Any], now_ms: int, taken: set[str]) -> App:
    """Create an app from a sandbox ``POST /apps`` body (validated; 40001 on bad shape)."""
    if not isinstance(body, dict):
        raise error(40001, "app body must be a JSON object")
    app_id = body.get("appId")
    if app_id is None:
        app_id = random_id(6)
        while app_id in taken:
            app_id = random_id(6)
    elif not isinstance(app_id, str) or not app_id or any(c in app_id for c in ".:"):
        raise error(40003, "appId must be a non-empty string without '.' or ':'")
    elif app_id in taken:
        raise error(40900, f"app {app_id} already exists", 409)
    app = App(app_id=app_id, account_id=random_id(6), created_ms=now_ms)
    app.tls_only = bool(body.get("tlsOnly", False))
    limits = body.get("limits")
    app.limits = dict(limits) if isinstance(limits, dict) else {}
    keys = body.get("keys")
    if keys is None:
        keys = [{}]
    if not isinstance(keys, list) or not keys:
        raise error(40001, "keys must be a non-empty list")
    for spec in keys:
        if not isinstance(spec, dict):
            raise error(40001, "each key must be a JSON object")
        key = Key(
            app_id=app_id,
            key_id=str(spec.get("id") or random_id(6)),
            secret=str(spec.get("value") or secrets.token_urlsafe(32)),
            capability=caps.parse(spec.get("capability")),
            revocable_tokens=bool(spec.get("revocableTokens", False)),
            created_ms=now_ms,
            echo={k: v for k, v in spec.items() if k not in ("id", "value", "capability")},
        )
        if any(c in key.key_id for c in ".:") or ":" in key.secret:
            raise error(40003, "key id/value must not contain '.' or ':'")
        if key.key_id in app.keys:
            raise error(40003, f"duplicate key id {key.key_id}")
        app.keys[key.key_id] = key
        app.key_order.append(key.key_id)
    namespaces = body.get("namespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, dict) for n in namespaces):
        raise error(40001, "namespaces must be a list of objects")
    app.namespaces = [dict(n, created=now_ms, modified=now_ms) for n in namespaces]
    channels = body.get("channels") or []
    if not isinstance(channels, list) or not all(isinstance(c, dict) for c in channels):
        raise error(40001, "channels must be a list of objects")
    app.fixtures = [dict(c) for c in channels]
    return app


def app_response(app: App) -> dict[str, Any]:
    """The sandbox's reply to ``POST /apps`` (ably-protocol.md section 9)."""
    keys = []
    for key in app.ordered_keys():
        entry: dict[str, Any] = dict(key.echo)
        entry.update(
            {
                "id": key.key_id,
                "value": key.secret,
                "keyName": key.key_name,
                "keyStr": key.key_str,
                "capability": caps.to_json(key.capability),
                "status": 0,
                "created": key.created_ms,
                "modified": key.created_ms,
                "expires": None,
                "privileged": False,
            }
        )
        keys.append(entry)
    return {
        "appId": app.app_id,
        "accountId": app.account_id,
        "id": f"{app.account_id}:{app.app_id}",
        "status": 0,
        "created": app.created_ms,
        "modified": app.created_ms,
        "tlsOnly": app.tls_only,
        "labels": "emulator",
        "keys": keys,
        "namespaces": app.namespaces,
        "channels": [dict(c, connection={"key": None}) for c in app.fixtures],
        "connections": [],
    }
