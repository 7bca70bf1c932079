"""Auth: scheme choice, token requests, callbacks, auth URLs, authorize, renewal, clientId (RSA)."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest

from ably_bridge.clock import FakeClock
from ably_bridge.errors import AblyException, AuthenticationError
from ably_bridge.protocol.tokens import TokenDetails, TokenParams, TokenRequest
from ably_bridge.rest import AblyRest, AuthOptions
from ably_bridge.transports.http import HttpTransportError
from ably_bridge.transports.mock_http import (
    MockHttpTransport,
    RecordedRequest,
    error_body,
    response,
)
from tests.rest.conftest import KEY, MakeRest, bearer_token

TOKEN_PATH = "/keys/appId.keyId/requestToken"


def token_json(
    token: str = "tok-1", *, client_id: str | None = None, expires: int = 1_700_003_600_000
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "token": token,
        "keyName": "appId.keyId",
        "issued": 1,
        "expires": expires,
    }
    if client_id is not None:
        out["clientId"] = client_id
    return out


# -- scheme selection (RSA1-RSA4, RSC1) ---------------------------------------------
def test_key_alone_uses_basic(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", json=[])
    rest = make_rest()
    rest.stats()
    assert rest.auth.auth_mechanism == "basic"  # RSA2
    expected = "Basic " + base64.b64encode(KEY.encode()).decode()  # RSA11
    assert mock.last.headers["Authorization"] == expected


def test_string_without_colon_is_a_token(mock: MockHttpTransport, clock: FakeClock) -> None:
    mock.add(path="/stats", json=[])
    rest = AblyRest("just-a-token", transport=mock, clock=clock)  # RSC1a
    rest.stats()
    assert rest.auth.auth_mechanism == "token"
    assert bearer_token(mock.last.headers["Authorization"]) == "just-a-token"  # RSA3b


def test_token_details_used(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", json=[])
    make_rest(token_details=TokenDetails(token="td", expires=1_800_000_000_000)).stats()
    assert bearer_token(mock.last.headers["Authorization"]) == "td"


def test_use_token_auth_with_key_requests_a_token(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path=TOKEN_PATH, json=token_json("from-key"))
    mock.add(path="/stats", json=[])
    rest = make_rest(use_token_auth=True)
    rest.stats()
    token_request = mock.requests[0]
    assert token_request.path == TOKEN_PATH
    assert "Authorization" not in token_request.headers  # signed requests need no auth
    body = token_request.decoded_body()
    assert body["keyName"] == "appId.keyId" and body["mac"]
    assert bearer_token(mock.last.headers["Authorization"]) == "from-key"
    assert rest.auth.token_details is not None and rest.auth.token_details.token == "from-key"


def test_no_auth_method_is_40106(mock: MockHttpTransport) -> None:
    with pytest.raises(AblyException) as info:
        AblyRest(transport=mock, use_token_auth=True)  # RSC1b, RSA14
    assert info.value.code == 40106


def test_token_without_renewal_logs_40171(
    mock: MockHttpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="ably_bridge"):
        AblyRest(token="secret-token-value", transport=mock)
    assert any("40171" in r.getMessage() for r in caplog.records)  # RSA4a1
    assert not any("secret-token-value" in r.getMessage() for r in caplog.records)


# -- createTokenRequest (RSA9) --------------------------------------------------------
def test_create_token_request_signature_matches_worked_example(make_rest: MakeRest) -> None:
    rest = make_rest()
    request = rest.auth.create_token_request(
        TokenParams(
            ttl=3600, capability={"*": ["*"]}, timestamp=1_700_000_000_000, nonce="0123456789abcdef"
        )
    )
    assert request.mac == "OI6IfzIRgCveuFLXwJmQfPBxOvllJtAKbXA+Ls5wNn0="
    assert request.ttl == 3_600_000 and request.capability == '{"*":["*"]}'


def test_create_token_request_defaults(make_rest: MakeRest, clock: FakeClock) -> None:
    request = make_rest().auth.create_token_request()
    assert request.key_name == "appId.keyId"
    assert request.ttl is None and request.capability is None  # RSA5, RSA6
    assert request.timestamp == clock.time_ms()  # RSA9d
    assert len(request.nonce) >= 16  # RSA9c
    assert request.verify("keySecret")
    other = make_rest().auth.create_token_request()
    assert other.nonce != request.nonce


def test_create_token_request_canonical_capability(make_rest: MakeRest) -> None:
    request = make_rest().auth.create_token_request(
        {"capability": {"b": ["subscribe", "publish"], "a": ["presence", "history"]}}
    )
    assert request.capability == '{"a":["history","presence"],"b":["publish","subscribe"]}'


def test_create_token_request_needs_a_key(make_rest: MakeRest) -> None:
    with pytest.raises(AuthenticationError):
        make_rest(token="t").auth.create_token_request()


def test_query_time_asks_once_and_keeps_offset(
    make_rest: MakeRest, mock: MockHttpTransport, clock: FakeClock
) -> None:
    server_ms = clock.time_ms() + 5_000
    mock.add(path="/time", json=[server_ms])
    rest = make_rest()
    first = rest.auth.create_token_request(auth_options={"query_time": True, "key": KEY})
    assert first.timestamp == server_ms  # RSA10k
    clock.advance(1.0)
    second = rest.auth.create_token_request(query_time=True)
    assert second.timestamp == server_ms + 1000
    assert [r.path for r in mock.requests] == ["/time"]
    assert rest.auth.server_time_offset_ms == 5000


# -- authCallback (RSA8d) ---------------------------------------------------------------
@pytest.mark.parametrize(
    "kind", ["string", "jwt", "details", "details_dict", "request", "request_dict"]
)
def test_auth_callback_results(make_rest: MakeRest, mock: MockHttpTransport, kind: str) -> None:
    mock.add(path=TOKEN_PATH, json=token_json("exchanged"))
    mock.add(path="/stats", json=[])
    signer = make_rest()
    seen: list[TokenParams] = []

    def callback(params: TokenParams) -> Any:
        seen.append(params)
        if kind == "string":
            return "plain-token"
        if kind == "jwt":
            return "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.sig"
        if kind == "details":
            return TokenDetails(token="plain-token")
        if kind == "details_dict":
            return {"token": "plain-token", "expires": 1_800_000_000_000}
        request = signer.auth.create_token_request(params)
        return request if kind == "request" else request.to_dict()

    rest = make_rest(auth_callback=callback, default_token_params=TokenParams(ttl=60))
    rest.stats()
    assert seen and seen[0].ttl == 60  # RSA8d: callback receives the TokenParams
    expected = {"jwt": "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.sig"}.get(kind, "plain-token")
    if kind.startswith("request"):
        expected = "exchanged"
        assert mock.requests[0].decoded_body()["ttl"] == 60_000
    assert bearer_token(mock.last.headers["Authorization"]) == expected


def test_auth_callback_error_is_40170(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    def callback(params: TokenParams) -> str:
        raise RuntimeError("backend down")

    with pytest.raises(AuthenticationError) as info:
        make_rest(auth_callback=callback).stats()
    assert (info.value.code, info.value.status_code) == (40170, 401)  # RSA4e
    assert isinstance(info.value.cause, RuntimeError)
    assert mock.requests == []


@pytest.mark.parametrize("bad", [42, {"nothing": 1}, "", "x" * (128 * 1024 + 1)])
def test_auth_callback_invalid_result(make_rest: MakeRest, bad: Any) -> None:
    with pytest.raises(AuthenticationError) as info:
        make_rest(auth_callback=lambda p: bad).stats()
    assert info.value.code == 40170  # RSA4f


# -- authUrl (RSA8c) ------------------------------------------------------------------
AUTH_URL = "https://auth.example.com/token?app=1&ttl=999"


def test_auth_url_get_merges_params(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(host="auth.example.com", body="url-token", headers={"Content-Type": "text/plain"})
    mock.add(path="/stats", json=[])
    rest = make_rest(
        auth_url=AUTH_URL,
        auth_params={"user": "u1", "ttl": "5"},
        auth_headers={"X-Secret": "s"},
        default_token_params=TokenParams(ttl=30, client_id="bob"),
    )
    rest.stats()
    auth_request = mock.requests[0]
    assert auth_request.method == "GET"
    # RSA8c1c: URL params kept, TokenParams beat authParams (RSA8c2), ours beat the URL's
    assert auth_request.query == {"app": "1", "user": "u1", "ttl": "30000", "clientId": "bob"}
    assert auth_request.headers["X-Secret"] == "s"
    assert "Authorization" not in auth_request.headers
    assert bearer_token(mock.last.headers["Authorization"]) == "url-token"


def test_auth_url_post_form(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(host="auth.example.com", json=token_json("posted"))
    mock.add(path="/stats", json=[])
    make_rest(
        auth_url="https://auth.example.com/t", auth_method="POST", auth_params={"a": "b"}
    ).stats()
    auth_request = mock.requests[0]
    assert auth_request.method == "POST"
    assert auth_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert auth_request.decoded_body() == {"a": "b"}  # RSA8c1b
    assert bearer_token(mock.last.headers["Authorization"]) == "posted"


def test_auth_url_jwt_and_token_request(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    signed = make_rest().auth.create_token_request()
    mock.add(host="auth.example.com", json=signed.to_dict())
    mock.add(path=TOKEN_PATH, json=token_json("via-request"))
    mock.add(path="/stats", json=[])
    make_rest(auth_url="https://auth.example.com/t").stats()
    assert bearer_token(mock.last.headers["Authorization"]) == "via-request"
    mock.reset()
    mock.add(host="auth.example.com", body=b"a.b.c", headers={"Content-Type": "application/jwt"})
    mock.add(path="/stats", json=[])
    make_rest(auth_url="https://auth.example.com/t").stats()
    assert bearer_token(mock.last.headers["Authorization"]) == "a.b.c"


@pytest.mark.parametrize(
    "setup",
    [
        {"status": 500, "json": error_body(50000, 500)},
        {"status": 200, "body": b"<x/>", "headers": {"Content-Type": "text/html"}},
        {"error": HttpTransportError("refused", retryable=True)},
    ],
)
def test_auth_url_failures_are_40170(
    make_rest: MakeRest, mock: MockHttpTransport, setup: dict[str, Any]
) -> None:
    mock.add(host="auth.example.com", **setup)
    with pytest.raises(AuthenticationError) as info:
        make_rest(auth_url="https://auth.example.com/t").stats()
    assert info.value.code == 40170


# -- authorize (RSA10) ----------------------------------------------------------------
def test_authorize_switches_to_token_and_stores_params(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path=TOKEN_PATH, json=token_json("t1"))
    mock.add(path=TOKEN_PATH, json=token_json("t2"))
    mock.add(path="/stats", json=[], times=None)
    rest = make_rest()
    details = rest.auth.authorize(TokenParams(ttl=120, timestamp=1_600_000_000_000))
    assert details.token == "t1" and rest.auth.auth_mechanism == "token"  # RSA10a
    assert mock.requests[0].decoded_body()["ttl"] == 120_000
    assert mock.requests[0].decoded_body()["timestamp"] == 1_600_000_000_000
    rest.stats()
    assert bearer_token(mock.last.headers["Authorization"]) == "t1"
    rest.auth.authorize()  # RSA10g: stored params reused, timestamp not
    again = mock.requests[-1].decoded_body()
    assert again["ttl"] == 120_000
    assert again["timestamp"] != 1_600_000_000_000  # the clock's time, not the stored one
    assert rest.auth.token_details is not None and rest.auth.token_details.token == "t2"
    assert rest.auth.default_token_params == TokenParams(ttl=120)  # RSA10g: no timestamp


def test_default_token_params_come_from_the_options(make_rest: MakeRest) -> None:
    assert make_rest().auth.default_token_params == TokenParams()
    given = TokenParams(ttl=60, capability={"a": ["subscribe"]})
    assert make_rest(default_token_params=given).auth.default_token_params == given


def test_authorize_with_new_callback_keeps_key_and_becomes_default(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path="/stats", json=[])
    mock.add(path="/stats", status=401, json=error_body(40142, 401, "expired"))
    mock.add(path="/stats", json=[])
    tokens = iter(["cb-1", "cb-2"])
    rest = make_rest()
    rest.auth.authorize(auth_options=AuthOptions(auth_callback=lambda p: next(tokens)))
    rest.stats()
    assert bearer_token(mock.last.headers["Authorization"]) == "cb-1"
    rest.stats()  # renewal uses the stored callback (RSA10g)
    assert bearer_token(mock.last.headers["Authorization"]) == "cb-2"
    assert rest.auth.create_token_request().key_name == "appId.keyId"  # RSA10i


def test_authorize_with_explicit_token(make_rest: MakeRest) -> None:
    rest = make_rest()
    details = rest.auth.authorize(auth_options={"token": "given"})
    assert details.token == "given"  # RSA10e


def test_request_token_does_not_change_state(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path=TOKEN_PATH, json=token_json("side"))
    rest = make_rest()
    details = rest.auth.request_token(TokenParams(capability={"ch": ["publish"]}))
    assert details.token == "side"
    assert mock.last.decoded_body()["capability"] == '{"ch":["publish"]}'
    assert rest.auth.auth_mechanism == "basic"


def test_request_token_error_from_ably_propagates(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path=TOKEN_PATH, status=401, json=error_body(40101, 401, "bad mac"))
    with pytest.raises(AuthenticationError) as info:
        make_rest().auth.request_token()
    assert info.value.code == 40101


# -- renewal (RSA4b, RSC10) ---------------------------------------------------------------
def _counting_callback() -> tuple[list[int], Any]:
    calls: list[int] = []

    def callback(params: TokenParams) -> TokenDetails:
        calls.append(1)
        return TokenDetails(token=f"cb-{len(calls)}", expires=1_700_003_600_000)

    return calls, callback


@pytest.mark.parametrize("code", [40140, 40142, 40149])
def test_token_error_renews_once_and_retries(
    make_rest: MakeRest, mock: MockHttpTransport, code: int
) -> None:
    calls, callback = _counting_callback()
    mock.add(path="/stats", status=401, json=error_body(code, 401, "token"))
    mock.add(path="/stats", json=[])
    make_rest(auth_callback=callback).stats()
    assert len(calls) == 2
    tokens = [bearer_token(r.headers["Authorization"]) for r in mock.requests]
    assert tokens == ["cb-1", "cb-2"]


def test_second_token_error_is_final(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    calls, callback = _counting_callback()
    mock.add(path="/stats", status=401, json=error_body(40142, 401), times=None)
    with pytest.raises(AblyException) as info:
        make_rest(auth_callback=callback).stats()
    assert info.value.code == 40142
    assert len(calls) == 2 and len(mock.requests) == 2


def test_non_token_401_does_not_renew(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    calls, callback = _counting_callback()
    mock.add(path="/stats", status=401, json=error_body(40160, 401))
    with pytest.raises(AblyException) as info:
        make_rest(auth_callback=callback).stats()
    assert info.value.code == 40160 and len(calls) == 1  # RSC10b


def test_token_error_without_renewal_is_40171(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", status=401, json=error_body(40142, 401))
    with pytest.raises(AblyException) as info:
        make_rest(token="fixed").stats()
    assert info.value.code == 40171  # RSA4a2
    assert len(mock.requests) == 1


def test_msgpack_token_error_renews(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    calls, callback = _counting_callback()
    mock.add(path="/stats", status=401, msgpack_body=error_body(40142, 401))
    mock.add(path="/stats", msgpack_body=[])
    make_rest(auth_callback=callback).stats()
    assert len(calls) == 2


def test_expired_token_renewed_before_request(
    make_rest: MakeRest, mock: MockHttpTransport, clock: FakeClock
) -> None:
    calls: list[int] = []

    def callback(params: TokenParams) -> TokenDetails:
        calls.append(1)
        return TokenDetails(token=f"cb-{len(calls)}", expires=clock.time_ms() + 60_000)

    mock.add(path="/stats", json=[], times=None)
    rest = make_rest(auth_callback=callback)
    rest.stats()
    clock.advance(30)
    rest.stats()
    assert len(calls) == 1
    clock.advance(31)
    rest.stats()  # RSA4b1: known expired by the clock, renewed without a 401
    assert len(calls) == 2
    assert bearer_token(mock.last.headers["Authorization"]) == "cb-2"


def test_concurrent_token_errors_renew_once(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    calls: list[int] = []
    barrier = threading.Barrier(6)

    def callback(params: TokenParams) -> TokenDetails:
        calls.append(1)
        return TokenDetails(token=f"cb-{len(calls)}")

    def handler(request: RecordedRequest) -> Any:
        if bearer_token(request.headers["Authorization"]) == "cb-1":
            return response(401, json=error_body(40142, 401))
        return response(json=[])

    mock.handler = handler
    rest = make_rest(auth_callback=callback)
    rest.auth.authorize()
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait(5)
        try:
            rest.stats()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert len(calls) == 2  # one initial token, one renewal for all six threads


# -- clientId (RSA7, RSA12, RSA15) -----------------------------------------------------------
def test_client_id_from_options_and_basic_header(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path="/stats", json=[])
    rest = make_rest(client_id="alice")
    rest.stats()
    assert rest.auth.client_id == "alice" and rest.client_id == "alice"  # RSA7b1, RSC17
    assert mock.last.headers["X-Ably-ClientId"] == base64.b64encode(b"alice").decode()  # RSA7e2


def test_client_id_from_token(make_rest: MakeRest) -> None:
    rest = make_rest(token_details=TokenDetails(token="t", client_id="bob"))
    assert rest.auth.client_id == "bob"  # RSA7b2
    assert (
        make_rest(token_details=TokenDetails(token="t", client_id="*")).auth.client_id == "*"
    )  # RSA7b4
    assert make_rest(token="t").auth.client_id is None


def test_client_id_sent_in_token_params(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    seen: list[TokenParams] = []
    mock.add(path="/stats", json=[])

    def callback(params: TokenParams) -> str:
        seen.append(params)
        return "t"

    make_rest(auth_callback=callback, client_id="carol").stats()
    assert seen[0].client_id == "carol"  # RSA7d, RSA12a


def test_client_id_mismatch_is_an_error(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    with pytest.raises(AuthenticationError) as info:
        make_rest(
            client_id="alice", auth_callback=lambda p: TokenDetails(token="t", client_id="bob")
        ).stats()
    assert info.value.code == 40102  # RSA15c
    assert mock.requests == []
    with pytest.raises(AuthenticationError):
        make_rest(client_id="alice", token_details=TokenDetails(token="t", client_id="bob"))


def test_wildcard_token_allows_client_id(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", json=[])
    rest = make_rest(
        client_id="alice", auth_callback=lambda p: TokenDetails(token="t", client_id="*")
    )
    rest.stats()  # RSA15b
    assert rest.auth.client_id == "alice"


def test_secrets_not_in_reprs(make_rest: MakeRest) -> None:
    rest = make_rest(client_id="alice")
    text = repr(rest) + repr(rest.auth) + repr(rest.auth.credential()) + repr(AuthOptions(key=KEY))
    assert "keySecret" not in text
    request = rest.auth.create_token_request()
    assert request.mac is not None and request.mac not in repr(request)


def test_auth_options_coerce() -> None:
    assert AuthOptions.coerce(None) is None
    assert AuthOptions.coerce({"auth_url": "u"}, auth_method="POST") == AuthOptions(
        auth_url="u", auth_method="POST"
    )
    assert json.dumps(TokenRequest(key_name="k", timestamp=1, nonce="n").to_dict())
