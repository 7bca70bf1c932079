"""Token revocation: ``POST /keys/<keyName>/revokeTokens`` (RSA17, TRT, TRS).

Only Basic auth with the key that issued the tokens may revoke them (a token:
40162; another key: 40133), and only when the key has ``revocableTokens``
(40163). The body names targets as ``type:value`` - ``clientId:<id>`` or
``revocationKey:<key>`` (a token's ``revocationKey``, given when it was
requested) - with an optional ``issuedBefore`` (ms; default now) and
``allowReauthMargin`` (the revocation applies 30 s later, time for clients to
get a new token). Matching tokens issued at or before ``issuedBefore`` stop
working (40141) and connections using one get DISCONNECTED 40141. The answer
is a batch result: ``successCount``, ``failureCount`` and one result per
target with ``target``, ``issuedBefore`` and ``appliesAt``, or an ``error``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ably_bridge.emulator import actions as p
from ably_bridge.emulator.apps import Token
from ably_bridge.emulator.context import RUNTIME, Runtime
from ably_bridge.emulator.errors import error
from ably_bridge.emulator.rest import _credentials
from ably_bridge.emulator.rest_replies import read_body, respond

log = logging.getLogger(__name__)

REAUTH_MARGIN_MS = 30_000
TARGET_TYPES = ("clientId", "revocationKey")


def _matches(token: Token, kind: str, value: str) -> bool:
    if kind == "clientId":
        return token.client_id == value
    return token.revocation_key == value


def revoke(runtime: Runtime, tokens: list[Token]) -> int:
    """Mark ``tokens`` revoked and disconnect the connections that use one (40141)."""
    for token in tokens:
        token.revoked = True
    dropped = 0
    for session in list(runtime.hub.sessions.values()):
        conn = session.conn
        if conn is not None and conn.creds.token is not None and conn.creds.token in tokens:
            session.send_error_and_close(error(40141, "token revoked", 401), p.DISCONNECTED)
            dropped += 1
    return dropped


async def revoke_tokens(request: web.Request) -> web.Response:
    runtime: Runtime = request.app[RUNTIME]
    state = runtime.state
    creds = _credentials(request)
    if creds.token is not None:
        raise error(40162, "token revocation needs Basic auth with the issuing key", 401)
    key_name = request.match_info["keyName"]
    if creds.key.key_name != key_name:
        raise error(40133, "tokens can only be revoked with the key that issued them", 401)
    if not creds.key.revocable_tokens:
        raise error(40163, "revocable tokens are not enabled for this key", 401)
    body, _ = await read_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("targets"), list):
        raise error(40001, "revokeTokens needs a list of targets")
    now = state.now_ms()
    issued_before = body.get("issuedBefore", now)
    if not isinstance(issued_before, int) or isinstance(issued_before, bool):
        raise error(40003, "issuedBefore must be a time in milliseconds")
    margin = body.get("allowReauthMargin") is True
    applies_at = now + (REAUTH_MARGIN_MS if margin else 0)
    results: list[dict[str, Any]] = []
    for target in body["targets"]:
        kind, _, value = str(target).partition(":")
        if kind not in TARGET_TYPES or not value:
            err = error(40003, f"invalid revocation target {str(target)[:60]!r}", 400)
            results.append({"target": str(target)[:200], "error": err.to_dict()})
            continue
        matched = [
            t
            for t in state.tokens.values()
            if t.key_name == key_name and t.issued_ms <= issued_before and _matches(t, kind, value)
        ]
        if margin:

            def later(chosen: list[Token] = matched) -> None:
                revoke(runtime, chosen)

            state.schedule(REAUTH_MARGIN_MS / 1000.0, later)
        else:
            revoke(runtime, matched)
        log.info("revoked %d tokens for %s", len(matched), kind)
        results.append({"target": target, "issuedBefore": issued_before, "appliesAt": applies_at})
    failures = sum(1 for r in results if "error" in r)
    answer = {"successCount": len(results) - failures, "failureCount": failures, "results": results}
    return respond(request, answer, 201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/keys/{keyName}/revokeTokens", revoke_tokens)
