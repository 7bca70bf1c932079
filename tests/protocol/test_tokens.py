"""Token types and TokenRequest signing (RSA9), checked against worked examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ably_bridge.errors import AblyException
from ably_bridge.protocol.tokens import (
    TokenDetails,
    TokenParams,
    TokenRequest,
    canonical_capability,
    looks_like_token_request,
    token_request_mac,
    token_request_text,
)


def test_signing_text_layout() -> None:
    text = token_request_text("appId.keyId", 3600000, '{"*":["*"]}', None, 1700000000000, "n")
    assert text == 'appId.keyId\n3600000\n{"*":["*"]}\n\n1700000000000\nn\n'


@pytest.mark.parametrize(
    ("ttl", "capability", "client_id", "mac"),
    [
        (3600000, '{"*":["*"]}', None, "OI6IfzIRgCveuFLXwJmQfPBxOvllJtAKbXA+Ls5wNn0="),
        (None, None, "alice", "AQ+4Tzhbd0GYHup62jUwc0H+khnMwTUK7xD4nnTEdGQ="),
    ],
)
def test_mac_matches_worked_examples(
    ttl: int | None, capability: str | None, client_id: str | None, mac: str
) -> None:
    got = token_request_mac(
        "keySecret", "appId.keyId", ttl, capability, client_id, 1700000000000, "0123456789abcdef"
    )
    assert got == mac


def test_signed_request_verifies_and_detects_tampering() -> None:
    req = TokenRequest(key_name="a.b", ttl=1000, timestamp=1, nonce="abcdefabcdefabcdef")
    signed = req.signed("secret")
    assert signed.verify("secret")
    assert not signed.verify("other")
    assert not req.verify("secret")
    raw = signed.to_dict()
    raw["ttl"] = 2000
    assert not TokenRequest.from_dict(raw).verify("secret")


def test_canonical_capability_sorts_and_compacts() -> None:
    assert canonical_capability(
        '{ "b": ["subscribe","publish"], "a": ["presence","history"] }'
    ) == ('{"a":["history","presence"],"b":["publish","subscribe"]}')
    assert canonical_capability({"x": "publish"}) == '{"x":["publish"]}'
    assert canonical_capability(None) == "" and canonical_capability("") == ""


@pytest.mark.parametrize("bad", ["not json", "[1]", '{"a": [1]}', '{"a": 5}'])
def test_bad_capability_is_40000(bad: str) -> None:
    with pytest.raises(AblyException) as info:
        canonical_capability(bad)
    assert info.value.code == 40000


def test_token_params_wire_form_and_merge() -> None:
    params = TokenParams(ttl=60, capability={"a": ["publish"]}, client_id="c")
    assert params.to_dict() == {"ttl": 60000, "capability": '{"a":["publish"]}', "clientId": "c"}
    assert TokenParams.from_dict({"ttl": 1500, "clientId": "z", "nonce": "n"}).ttl == 1.5
    merged = params.merged(TokenParams(client_id="d", timestamp=5))
    assert (merged.ttl, merged.client_id, merged.timestamp) == (60, "d", 5)
    assert params.merged(None) is params
    assert TokenParams().to_dict() == {}
    assert TokenParams(timestamp=1, nonce="n").to_dict() == {"timestamp": 1, "nonce": "n"}


def test_token_request_round_trip_and_errors() -> None:
    req = TokenRequest(
        key_name="a.b", capability='{"*":["*"]}', client_id="c", timestamp=5, nonce="n", mac="m"
    )
    assert TokenRequest.from_dict(req.to_dict()) == req
    with pytest.raises(AblyException) as info:
        TokenRequest.from_dict({"keyName": "a.b"})
    assert info.value.code == 40001
    assert "mac" not in repr(req).lower() or "m'" not in repr(req)


def test_token_details_expiry_and_secret_free_repr() -> None:
    details = TokenDetails.from_dict(
        {"token": "sekrit-token", "expires": 2000, "issued": 1000, "capability": {"a": ["*"]}}
    )
    assert details.capability == '{"a":["*"]}'
    assert details.is_expired(2000) and not details.is_expired(1999)
    assert details.is_expired(1500, margin_ms=500)
    assert not TokenDetails(token="t").is_expired(10**15)
    assert "sekrit-token" not in repr(details)
    assert TokenDetails.from_dict(details.to_dict()) == details
    with pytest.raises(AblyException):
        TokenDetails.from_dict({"expires": 5})


def test_token_request_detection() -> None:
    assert looks_like_token_request({"keyName": "a.b", "nonce": "n"})
    assert not looks_like_token_request({"token": "t", "keyName": "a.b"})


def test_token_params_query_string_form() -> None:
    params = TokenParams(ttl=60, capability={"b": ["x"], "a": ["y"]}, client_id="bob & co")
    assert params.to_query() == {
        "ttl": "60000",
        "capability": '{"a":["y"],"b":["x"]}',
        "clientId": "bob & co",
    }
    assert params.query_string() == (
        "ttl=60000&capability=%7B%22a%22%3A%5B%22y%22%5D%2C%22b%22%3A%5B%22x%22%5D%7D"
        "&clientId=bob+%26+co"
    )
    assert TokenParams().to_query() == {} and TokenParams().query_string() == ""
    stamped = TokenParams(timestamp=1_700_000_000_000, nonce="n1").to_query()
    assert stamped == {"timestamp": "1700000000000", "nonce": "n1"}


def test_token_details_times_as_datetimes() -> None:
    details = TokenDetails(token="t", issued=1_700_000_000_123, expires=1_700_003_600_123)
    issued, expires = details.issue_time(), details.expire_time()
    assert issued == datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC)
    assert expires is not None and issued is not None
    assert expires - issued == timedelta(hours=1)
    assert round(expires.timestamp() * 1000) == details.expires
    assert TokenDetails(token="t").issue_time() is None
    assert TokenDetails(token="t").expire_time() is None
