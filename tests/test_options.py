"""ClientOptions: defaults, validation with Ably codes, host selection, secret-free repr."""

from __future__ import annotations

import dataclasses

import pytest

from ably_bridge.errors import AblyException
from ably_bridge.options import ClientOptions, is_loopback_host, parse_key
from ably_bridge.protocol.tokens import TokenDetails

KEY = "appId.keyId:s3cr3tValue"


def test_documented_defaults_in_seconds() -> None:
    o = ClientOptions(key=KEY)
    assert o.disconnected_retry_timeout == 15.0
    assert o.suspended_retry_timeout == 30.0
    assert o.channel_retry_timeout == 15.0
    assert o.http_open_timeout == 4.0
    assert o.http_request_timeout == 10.0
    assert o.realtime_request_timeout == 10.0
    assert o.fallback_retry_timeout == 600.0
    assert o.http_max_retry_count == 3
    assert o.http_max_retry_duration == 15.0
    assert o.connection_state_ttl == 120.0
    assert o.tls and o.use_binary_protocol and o.queue_messages and o.echo_messages
    assert o.auto_connect and o.idempotent_rest_publishing
    assert o.port == 80 and o.tls_port == 443 and o.effective_port == 443


def test_frozen_and_keyword_only() -> None:
    o = ClientOptions(key=KEY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.key = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ClientOptions(KEY)  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad", ["nocolonXYZZY", "app:XYZZY", "a.b", "a.b:", " a.b:XYZZY", "a.b.c:XYZZY"]
)
def test_malformed_key_is_40005_and_not_echoed(bad: str) -> None:
    with pytest.raises(AblyException) as info:
        ClientOptions(key=bad)
    assert info.value.code == 40005
    assert "XYZZY" not in str(info.value)


def test_key_parts() -> None:
    assert parse_key(KEY) == ("appId.keyId", "s3cr3tValue")
    o = ClientOptions(key=KEY)
    assert o.key_name == "appId.keyId" and o.key_secret == "s3cr3tValue"
    assert ClientOptions(token="t").key_name is None


def test_wildcard_client_id_is_refused() -> None:
    with pytest.raises(AblyException) as info:
        ClientOptions(key=KEY, client_id="*")
    assert info.value.code == 40012
    with pytest.raises(AblyException):
        ClientOptions(key=KEY, client_id="")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"endpoint": "sandbox", "rest_host": "h"},
        {"endpoint": "sandbox", "environment": "x"},
        {"environment": "x", "realtime_host": "h"},
        {"token": "t", "token_details": TokenDetails(token="t")},
        {"auth_url": "http://x", "auth_callback": lambda p: "t"},
        {"auth_method": "PUT"},
        {"http_request_timeout": 0},
        {"realtime_request_timeout": -1},
        {"http_max_retry_count": -1},
        {"port": 0},
        {"tls_port": 70000},
    ],
)
def test_conflicting_or_invalid_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(AblyException) as info:
        ClientOptions(key=KEY, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == 40000


def test_token_auth_selection() -> None:
    assert not ClientOptions(key=KEY).uses_token_auth
    assert ClientOptions(key=KEY, use_token_auth=True).uses_token_auth
    assert ClientOptions(token="abc").uses_token_auth
    assert ClientOptions(key=KEY, auth_callback=lambda p: "t").uses_token_auth
    assert ClientOptions(auth_url="https://auth.example").has_token_source
    assert not ClientOptions(key=KEY, auth_url="https://a", use_token_auth=False).uses_token_auth


def test_default_hosts_and_fallbacks() -> None:
    o = ClientOptions(key=KEY)
    assert o.rest_host_name == "main.realtime.ably.net"
    assert o.realtime_host_name == "main.realtime.ably.net"
    assert o.fallback_host_list() == [f"main.{c}.fallback.ably-realtime.com" for c in "abcde"]
    assert o.base_url() == "https://main.realtime.ably.net:443"


@pytest.mark.parametrize(
    ("endpoint", "host", "first_fallback"),
    [
        ("127.0.0.1", "127.0.0.1", None),
        ("localhost", "localhost", None),
        ("::1", "::1", None),
        (
            "nonprod:sandbox",
            "sandbox.realtime.ably-nonprod.net",
            "sandbox.a.fallback.ably-realtime-nonprod.com",
        ),
        ("acme", "acme.realtime.ably.net", "acme.a.fallback.ably-realtime.com"),
    ],
)
def test_endpoint_routing(endpoint: str, host: str, first_fallback: str | None) -> None:
    o = ClientOptions(key=KEY, endpoint=endpoint)
    assert o.rest_host_name == host
    fallbacks = o.fallback_host_list()
    assert (fallbacks[0] if fallbacks else None) == first_fallback


def test_legacy_hosts_and_explicit_fallbacks() -> None:
    o = ClientOptions(key=KEY, rest_host="rest.example", realtime_host="rt.example")
    assert o.rest_host_name == "rest.example" and o.realtime_host_name == "rt.example"
    assert o.fallback_host_list() == []
    env = ClientOptions(key=KEY, environment="eu")
    assert env.rest_host_name == "eu.realtime.ably.net"
    assert env.fallback_host_list()[0] == "eu.a.fallback.ably-realtime.com"
    assert ClientOptions(key=KEY, environment="production").rest_host_name.startswith("main.")
    custom = ClientOptions(key=KEY, fallback_hosts=["f1", "f2"])
    assert custom.fallback_host_list() == ["f1", "f2"]
    assert ClientOptions(key=KEY, fallback_hosts=[]).fallback_host_list() == []


def test_base_url_plain_http_and_ipv6() -> None:
    o = ClientOptions(key=KEY, endpoint="::1", tls=False, port=8080)
    assert o.base_url() == "http://[::1]:8080"
    assert o.replace(port=9090).base_url("127.0.0.1") == "http://127.0.0.1:9090"


def test_repr_never_shows_secrets() -> None:
    o = ClientOptions(
        key=KEY,
        auth_headers={"Authorization": "Bearer hunter2"},
        auth_params={"password": "hunter3"},
        client_id="alice",
    )
    text = repr(o)
    assert "s3cr3tValue" not in text and "hunter2" not in text and "hunter3" not in text
    assert "appId.keyId" in text and "alice" in text
    assert "tokenSecret" not in repr(ClientOptions(token="tokenSecret"))
    assert "<callable>" in repr(ClientOptions(key=KEY, auth_callback=lambda p: "x"))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.5.5.5", True),
        ("::1", True),
        ("[::1]", True),
        ("api.localhost", True),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected


def test_option_names_cover_the_go_sdk_list() -> None:
    names = ClientOptions.option_names()
    for required in (
        "key",
        "token",
        "token_details",
        "auth_callback",
        "auth_url",
        "auth_method",
        "auth_headers",
        "auth_params",
        "query_time",
        "default_token_params",
        "use_token_auth",
        "client_id",
        "endpoint",
        "environment",
        "rest_host",
        "realtime_host",
        "port",
        "tls_port",
        "tls",
        "fallback_hosts",
        "http_max_retry_count",
        "http_open_timeout",
        "http_request_timeout",
        "fallback_retry_timeout",
        "realtime_request_timeout",
        "disconnected_retry_timeout",
        "suspended_retry_timeout",
        "channel_retry_timeout",
        "auto_connect",
        "echo_messages",
        "queue_messages",
        "recover",
        "transport_params",
        "use_binary_protocol",
        "idempotent_rest_publishing",
        "log_level",
        "log_handler",
        "agents",
        "http_session",
        "websocket_dialer",
        "clock",
    ):
        assert required in names, required


def test_build_from_what_a_constructor_was_given() -> None:
    assert ClientOptions.build(KEY).key == KEY
    assert ClientOptions.build("just-a-token").token == "just-a-token"
    base = ClientOptions(key=KEY, port=8080)
    assert ClientOptions.build(base) is base
    assert ClientOptions.build(base, port=9090).port == 9090
    assert ClientOptions.build(token="t", tls=False).tls is False
    with pytest.raises(TypeError):
        ClientOptions.build(42)  # type: ignore[arg-type]
