"""Who may call which REST route: every route against every kind of credential (issue 17.3).

App administration (``DELETE /apps/<id>``, ``POST /stats``) takes only Basic
auth with the app's admin key (its first key); a token is refused with 40162,
another key of the app with 40160, another app's admin key with 40300. The
other routes follow the capability of the key or token. ``/time`` and
``POST /apps`` need no credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ably_bridge.emulator import Emulator

from .conftest import app_setup, basic

KINDS = [
    "none",
    "wrong_secret",
    "admin_basic",
    "admin_query",
    "full_key",
    "subscribe_key",
    "admin_token",
    "channel_token",
    "jwt",
    "expired_token",
    "other_app_admin",
]


def _jwt(key_str: str, claims: dict[str, Any]) -> str:
    name, _, secret = key_str.partition(":")

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    head = part({"alg": "HS256", "typ": "JWT", "kid": name})
    body = part(claims)
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


class World:
    """A fresh app (test-app-setup.json) plus a second app, and credentials of each kind."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.app = emulator.create_app(app_setup()["post_apps"])
        self.other = emulator.create_app(app_setup()["post_apps"])
        self.keys = [k["keyStr"] for k in self.app["keys"]]
        self.admin = self.keys[0]
        self.deleted = False

    def token(self, capability: dict[str, Any] | None = None, ttl: int | None = None) -> str:
        body: dict[str, Any] = {}
        if capability is not None:
            body["capability"] = json.dumps(capability)
        if ttl is not None:
            body["ttl"] = ttl
        r = requests.post(
            f"{self.emulator.url}/keys/{self.admin.split(':')[0]}/requestToken",
            json=body,
            auth=basic(self.admin),
            timeout=5,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def credentials(self, kind: str) -> tuple[dict[str, str], dict[str, str], Any]:
        """(headers, query, requests auth) for one kind of credential."""

        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": "Bearer " + base64.b64encode(token.encode()).decode()}

        if kind == "none":
            return {}, {}, None
        if kind == "wrong_secret":
            return {}, {}, (self.admin.split(":")[0], "not-the-secret")
        if kind == "admin_basic":
            return {}, {}, basic(self.admin)
        if kind == "admin_query":
            return {}, {"key": self.admin}, None
        if kind == "full_key":
            return {}, {}, basic(self.keys[4])  # {"*":["*"]}, not the first key
        if kind == "subscribe_key":
            return {}, {}, basic(self.keys[3])  # {"*":["subscribe"]}
        if kind == "admin_token":
            return bearer(self.token()), {}, None
        if kind == "channel_token":
            return bearer(self.token({"one": ["*"]})), {}, None
        if kind == "jwt":
            now = int(self.emulator.state.now_ms() / 1000)
            token = _jwt(self.admin, {"iat": now, "exp": now + 600})
            return {"Authorization": f"Bearer {token}"}, {}, None
        if kind == "expired_token":
            token = self.token()
            self.emulator.call(lambda: setattr(self.emulator.state.tokens[token], "expires_ms", 0))
            return bearer(token), {}, None
        if kind == "other_app_admin":
            return {}, {}, basic(self.other["keys"][0]["keyStr"])
        raise AssertionError(kind)

    def call(self, kind: str, method: str, path: str, body: Any = None) -> requests.Response:
        headers, query, auth = self.credentials(kind)
        return requests.request(
            method,
            self.emulator.url + path,
            headers=headers,
            params=query,
            auth=auth,
            json=body,
            timeout=5,
        )

    def alive(self) -> bool:
        r = requests.get(
            f"{self.emulator.url}/channels/x/messages", auth=basic(self.admin), timeout=5
        )
        return r.status_code == 200

    def close(self) -> None:
        for created in (self.app, self.other):
            if created["appId"] in self.emulator.state.apps:
                self.emulator.delete_app(created["appId"])


@pytest.fixture
def world(emulator: Emulator) -> Iterator[World]:
    w = World(emulator)
    yield w
    w.close()


# What each kind gets where authentication itself fails.
AUTH_FAILURES = {"none": 40101, "wrong_secret": 40101, "expired_token": 40142}
TOKENS = {"admin_token", "channel_token", "jwt"}
ADMINS = {"admin_basic", "admin_query"}


def expected_admin(kind: str, other_app_code: int | None) -> int:
    if kind in AUTH_FAILURES:
        return AUTH_FAILURES[kind]
    if kind in ADMINS:
        return 0
    if kind == "other_app_admin":
        return other_app_code or 0
    if kind in TOKENS:
        return 40162
    return 40160  # full_key, subscribe_key: keys of the app, but not its admin key


STATUS = {0: None, 40101: 401, 40142: 401, 40160: 401, 40162: 401, 40300: 403}


def check(response: requests.Response, code: int, ok_status: int) -> None:
    if code == 0:
        assert response.status_code == ok_status, response.text
        return
    assert response.status_code == STATUS[code], response.text
    assert response.json()["error"]["code"] == code, response.text
    assert response.headers["X-Ably-Errorcode"] == str(code)


@pytest.mark.parametrize("kind", KINDS)
def test_delete_app_only_with_its_admin_key(world: World, kind: str) -> None:
    r = world.call(kind, "DELETE", f"/apps/{world.app['appId']}")
    code = expected_admin(kind, 40300)
    check(r, code, 204)
    if code:
        assert world.alive(), "a refused delete must leave the app working"
    else:
        assert not world.alive()
        assert world.app["appId"] not in world.emulator.state.apps


@pytest.mark.parametrize("kind", KINDS)
def test_post_stats_only_with_the_admin_key(world: World, kind: str) -> None:
    fixture = [{"intervalId": "2021-02-03:04:05", "inbound": {"rest": {"messages": {"count": 3}}}}]
    r = world.call(kind, "POST", "/stats", fixture)
    check(r, expected_admin(kind, None), 201)
    stats = requests.get(
        f"{world.emulator.url}/stats",
        params={"start": "2021-02-03:04:05", "end": "2021-02-03:04:05", "unit": "minute"},
        auth=basic(world.admin),
        timeout=5,
    ).json()
    injected = kind in ADMINS
    assert bool(stats) == injected


# route -> (method, path, body, success status, the kinds refused 40160 by capability)
ROUTES: dict[str, tuple[str, str, Any, int, set[str]]] = {
    "get_stats": ("GET", "/stats", None, 200, {"subscribe_key", "channel_token"}),
    "channels_list": ("GET", "/channels", None, 200, {"subscribe_key", "channel_token"}),
    "channel_status": ("GET", "/channels/one", None, 200, {"subscribe_key"}),
    "publish": ("POST", "/channels/one/messages", {"data": "x"}, 201, {"subscribe_key"}),
    "history": ("GET", "/channels/one/messages", None, 200, {"subscribe_key"}),
    "history_alias": ("GET", "/channels/one/history", None, 200, {"subscribe_key"}),
    "presence": ("GET", "/channels/one/presence", None, 200, set()),
    "presence_history": ("GET", "/channels/one/presence/history", None, 200, {"subscribe_key"}),
    "publish_elsewhere": (
        "POST", "/channels/two/messages", {"data": "x"}, 201, {"subscribe_key", "channel_token"}
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_rest_route_by_credential(world: World, route: str, kind: str) -> None:
    method, path, body, ok, denied = ROUTES[route]
    r = world.call(kind, method, path, body)
    code = AUTH_FAILURES.get(kind) or (40160 if kind in denied else 0)
    check(r, code, ok)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_routes_by_credential(world: World, kind: str) -> None:
    headers, query, auth = world.credentials(kind)
    headers = {**headers, "X-Ably-Version": "3"}
    spec = {"channels": ["one", "two"], "messages": [{"data": "x"}]}
    pub = requests.post(
        world.emulator.url + "/messages",
        json=spec,
        headers=headers,
        params=query,
        auth=auth,
        timeout=5,
    )
    pres = requests.get(
        world.emulator.url + "/presence",
        params={**query, "channels": "one,two"},
        headers=headers,
        auth=auth,
        timeout=5,
    )
    if kind in AUTH_FAILURES:
        check(pub, AUTH_FAILURES[kind], 0)
        check(pres, AUTH_FAILURES[kind], 0)
        return
    assert pub.status_code == 201 and pres.status_code == 200
    failed_pub = {"subscribe_key": 2, "channel_token": 1}.get(kind, 0)
    assert pub.json()["failureCount"] == failed_pub
    failed_pres = {"channel_token": 1}.get(kind, 0)
    assert pres.json()["failureCount"] == failed_pres
    for result in pub.json()["results"]:
        if "error" in result:
            assert result["error"]["code"] == 40160


@pytest.mark.parametrize("kind", KINDS)
def test_request_token_route_by_credential(world: World, kind: str) -> None:
    """Unsigned TokenParams: only the key itself, or a token of that key."""
    key_name = world.admin.split(":")[0]
    r = world.call(kind, "POST", f"/keys/{key_name}/requestToken", {})
    if kind in AUTH_FAILURES:
        check(r, AUTH_FAILURES[kind], 0)
    elif kind in ADMINS | TOKENS:
        assert r.status_code == 200, r.text
    else:  # another key of the app, or another app's key
        check(r, 40101, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_unauthenticated_routes(world: World, kind: str) -> None:
    assert world.call(kind, "GET", "/time").status_code == 200
    created = world.call(kind, "POST", "/apps", {"keys": [{}]})
    assert created.status_code == 201
    world.emulator.delete_app(created.json()["appId"])
