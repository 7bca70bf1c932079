"""Router and patterns: exact, glob and regex channels, sources, name filters, ciphers."""

from __future__ import annotations

import base64

import pytest

from ably_bridge.bridge.config import parse_config
from ably_bridge.bridge.patterns import NameMatcher, PatternError, compile_pattern, is_pattern
from ably_bridge.bridge.router import Router

KEY_A = base64.b64encode(b"a" * 16).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()
STREAM = [{"type": "redis_stream", "key": "s:{channel}"}]


def router() -> Router:
    raw = {
        "redis": {"url": "redis://127.0.0.1:6379/0"},
        "routes": [
            {
                "id": "chat",
                "channels": ["lobby", "chat:*", "re:^room-[0-9]+$", "[meta]channel.lifecycle"],
                "sources": ["message", "presence"],
                "names": ["text", "react*"],
                "ciphers": [
                    {"channels": ["chat:secret-*"], "key_env": "KA"},
                    {"channels": ["chat:*"], "key_env": "KB"},
                ],
                "targets": STREAM,
            },
            {"id": "all-life", "channels": ["re:."], "sources": ["lifecycle"], "targets": STREAM},
            {
                "id": "tele",
                "discover": {"prefixes": ["telemetry:"]},
                "targets": STREAM,
            },
            {
                "id": "filtered",
                "channels": ["re:^dev:[a-z]+$"],
                "discover": {"prefixes": ["dev:"]},
                "targets": STREAM,
            },
        ],
    }
    config = parse_config(raw, {"ABLY_KEY": "a.b:c", "KA": KEY_A, "KB": KEY_B})
    return Router(config.routes)


def ids(matches: list) -> list[str]:  # type: ignore[type-arg]
    return [m.route_id for m in matches]


def test_exact_glob_and_regex_channels() -> None:
    r = router()
    assert ids(r.match("lobby", "message", "text")) == ["chat"]
    assert ids(r.match("chat:general", "message", "text")) == ["chat"]
    assert ids(r.match("room-12", "message", "text")) == ["chat"]
    assert ids(r.match("room-12x", "message", "text")) == []
    assert ids(r.match("lobby2", "message", "text")) == []
    # Brackets are literal, so qualified names can be written exactly.
    assert ids(r.match("[meta]channel.lifecycle", "message", "text")) == ["chat"]


def test_sources_select_routes() -> None:
    r = router()
    assert ids(r.match("lobby", "presence")) == ["chat"]
    assert ids(r.match("lobby", "lifecycle")) == ["all-life"]
    assert r.sources_for("lobby") == {"message", "presence", "lifecycle"}
    assert r.wants("lobby", "presence") and not r.wants("telemetry:x", "presence")


def test_name_filters_apply_to_messages_only() -> None:
    r = router()
    assert ids(r.match("lobby", "message", "reaction")) == ["chat"]
    assert ids(r.match("lobby", "message", "typing")) == []
    assert ids(r.match("lobby", "message", None)) == []
    assert ids(r.match("lobby", "presence", None)) == ["chat"]


def test_discovery_prefixes() -> None:
    r = router()
    assert ids(r.match("telemetry:dev-1", "message", "x")) == ["tele"]
    # With channel patterns, the prefixes only say where to look.
    assert ids(r.match("dev:abc", "message", "x")) == ["filtered"]
    assert ids(r.match("dev:ABC", "message", "x")) == []
    assert sorted(r.discovery()) == [("dev:", 30.0), ("telemetry:", 30.0)]
    assert r.static_channels() == ["lobby", "[meta]channel.lifecycle"]


def test_cipher_key_first_matching_rule_wins() -> None:
    r = router()
    (m,) = r.match("chat:secret-1", "message", "text")
    assert m.cipher_key is not None and m.cipher_key.reveal() == KEY_A
    (m,) = r.match("chat:open", "message", "text")
    assert m.cipher_key is not None and m.cipher_key.reveal() == KEY_B
    (m,) = r.match("lobby", "message", "text")
    assert m.cipher_key is None
    key = r.cipher_key("chat:open")
    assert key is not None and key.reveal() == KEY_B
    assert r.cipher_key("telemetry:x") is None


def test_cache_is_bounded() -> None:
    raw = {
        "redis": {"url": "redis://h/0"},
        "routes": [{"id": "a", "channels": ["x*"], "targets": STREAM}],
    }
    r = Router(parse_config(raw, {"ABLY_KEY": "a.b:c"}).routes, cache_size=3)
    for i in range(10):
        assert ids(r.match(f"x{i}", "message")) == ["a"]
    assert len(r._cache) <= 3 and len(r._matches) <= 3


def test_cached_answers_still_apply_name_filters_per_message() -> None:
    both = ["message", "presence"]
    raw = {
        "redis": {"url": "redis://h/0"},
        "routes": [
            {"id": "all", "channels": ["c"], "sources": both, "targets": STREAM},
            {
                "id": "named",
                "channels": ["c"],
                "names": ["hot"],
                "sources": both,
                "targets": STREAM,
            },
            {"id": "tail", "channels": ["c"], "sources": both, "targets": STREAM},
        ],
    }
    r = Router(parse_config(raw, {"ABLY_KEY": "a.b:c"}).routes)
    for _ in range(2):  # the second round is answered from the cache
        assert ids(r.match("c", "message", "hot")) == ["all", "named", "tail"]
        assert ids(r.match("c", "message", "cold")) == ["all", "tail"]
        assert ids(r.match("c", "presence")) == ["all", "named", "tail"]
    # With no name filter among a channel's routes, the kept answer itself is returned.
    assert r.match("c", "presence") is r.match("c", "presence")


def test_patterns() -> None:
    assert not is_pattern("plain:name") and is_pattern("a*") and is_pattern("re:x")
    m = NameMatcher(["a?c", "re:(?i)^upper", "exact"])
    assert m.matches("abc") and not m.matches("abcd")
    assert m.matches("UPPERCASE") and m.matches("exact") and not m.matches("exactly")
    assert NameMatcher([]).empty
    with pytest.raises(PatternError):
        compile_pattern("re:")
    with pytest.raises(PatternError):
        compile_pattern("re:(")
