"""AblyException: construction, wire form, subclass selection."""

from __future__ import annotations

import pytest

from ably_bridge.errors import (
    AblyAuthException,
    AblyException,
    AuthenticationError,
    EncodingError,
    ErrorCode,
    TokenError,
    exception_for,
    help_href,
    is_token_error,
)


def test_positional_construction_matches_official_signature() -> None:
    cause = ValueError("boom")
    exc = AblyException("nope", 40160, 401, "https://example.invalid/h", cause)
    assert (exc.message, exc.code, exc.status_code) == ("nope", 40160, 401)
    assert exc.href == "https://example.invalid/h"
    assert exc.cause is cause
    assert exc.__cause__ is cause


def test_status_and_href_default_from_code() -> None:
    exc = AblyException("too big", ErrorCode.MAX_MESSAGE_SIZE_EXCEEDED)
    assert exc.status_code == 400
    assert exc.href == help_href(40009) == "https://help.ably.io/error/40009"
    assert AblyException("x", 80002).status_code == 500


def test_str_names_code_status_and_link() -> None:
    text = str(AblyException("denied", 40160, 401))
    assert "denied" in text and "40160" in text and "401" in text and "help.ably.io" in text


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        (40142, 401, TokenError),
        (40140, 401, TokenError),
        (40149, 401, TokenError),
        (40150, 401, AuthenticationError),
        (40101, 401, AuthenticationError),
        (80019, 401, AuthenticationError),
        (40142, 400, AuthenticationError),
        (40013, 400, EncodingError),
        (50000, 500, AblyException),
    ],
)
def test_subclass_follows_code(code: int, status: int, kind: type[AblyException]) -> None:
    exc = exception_for("m", code, status)
    assert type(exc) is kind


def test_token_error_rule() -> None:
    assert is_token_error(401, 40142)
    assert not is_token_error(403, 40142)
    assert not is_token_error(401, 40160)
    assert not is_token_error(401, None)


def test_wire_round_trip_keeps_nested_cause() -> None:
    inner = AblyException("inner", 40142, 401)
    outer = AblyException("outer", 80019, 401, cause=inner, detail={"k": "v"})
    raw = outer.to_dict()
    assert raw["statusCode"] == 401 and raw["cause"]["code"] == 40142
    back = AblyException.from_dict(raw)
    assert isinstance(back, AuthenticationError)
    assert back == outer
    assert isinstance(back.cause, TokenError)
    assert back.detail == {"k": "v"}


def test_from_dict_tolerates_missing_and_legacy_fields() -> None:
    exc = AblyException.from_dict({"reason": "old style", "code": "40400"})
    assert exc.message == "old style" and exc.code == 40400 and exc.status_code == 404
    empty = AblyException.from_dict(None)
    assert empty.code == 50000 and empty.message
    bad = AblyException.from_dict({"code": "not-a-number", "statusCode": None})
    assert bad.code == 50000
    huge = AblyException.from_dict({"code": float("inf"), "statusCode": 1e999})
    assert (huge.code, huge.status_code) == (50000, 500)


def test_from_code_uses_registry_title() -> None:
    exc = AblyException.from_code(40142)
    assert isinstance(exc, TokenError)
    assert exc.message == "Token expired"


def test_equality_and_hash() -> None:
    a = AblyException("m", 40000, 400)
    assert a == AblyException("m", 40000, 400)
    assert a != AblyException("m", 40001, 400)
    assert len({a, AblyException("m", 40000, 400)}) == 1
    assert a.__eq__("m") is NotImplemented


def test_official_alias() -> None:
    assert AblyAuthException is AuthenticationError
    assert "code=40000" in repr(AblyException("m"))
