"""The shortcut fence: the table, the version check, the one log line, the switches."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ably_bridge import shortcuts
from ably_bridge.shortcuts import SHORTCUTS, VersionRange, parse_version


@pytest.fixture(autouse=True)
def fresh_decisions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(shortcuts.ENV_VAR, raising=False)
    shortcuts.reset()
    yield
    shortcuts.reset()


def test_versions_parse_to_release_numbers() -> None:
    assert parse_version("5.4.2") == (5, 4, 2)
    assert parse_version("8.2") == (8, 2, 0)
    assert parse_version("5.5.0rc1") == (5, 5, 0)
    assert parse_version("2.32.3.post1") == (2, 32, 3)
    assert parse_version("not a version") is None


def test_a_range_holds_its_low_end_and_stops_before_its_high_end() -> None:
    tested = VersionRange("5.1.1", "5.5")
    assert "5.1.1" in tested and "5.4.99" in tested
    assert "5.1.0" not in tested and "5.5.0" not in tested and "6.0" not in tested
    assert "garbage" not in tested and str(tested) == ">=5.1.1,<5.5"


def in_range() -> dict[str, bool]:
    """Each shortcut: whether every library it names is installed within its range."""
    return {name: not shortcuts.mismatches(name) for name in SHORTCUTS}


def test_the_table_names_each_library_with_a_range_that_holds_what_is_installed() -> None:
    """The project's venv (the newest tested releases) runs the differential tests, so
    every shortcut must be on in it; a library upgraded past the table shows up here.
    (make test-lowest sets ABLY_BRIDGE_LOWEST=1: there a shortcut whose range starts
    above a declared lower bound is off, and its public path is what is tested.)"""
    assert len(SHORTCUTS) >= 8
    for name, shortcut in SHORTCUTS.items():
        assert shortcut.name == name and shortcut.libraries and shortcut.public_path
    assert shortcuts.check() == in_range()
    if os.environ.get("ABLY_BRIDGE_LOWEST") != "1":
        assert all(in_range().values()), shortcuts.check()


def test_a_version_outside_the_table_turns_the_shortcut_off_and_logs_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        shortcuts, "installed_version", lambda lib: "99.1.0" if lib == "redis" else "0"
    )
    caplog.set_level(logging.WARNING, logger="ably_bridge.shortcuts")
    assert shortcuts.enabled("redis.raw_pipeline") is False
    assert shortcuts.enabled("redis.raw_pipeline") is False  # decided once
    lines = [r.getMessage() for r in caplog.records if "redis.raw_pipeline" in r.getMessage()]
    assert len(lines) == 1
    (line,) = lines
    assert "redis 99.1.0" in line and ">=5.3.0,<8.3" in line and "public path" in line


def test_a_missing_library_turns_its_shortcuts_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(shortcuts, "installed_version", lambda lib: None)
    caplog.set_level(logging.WARNING, logger="ably_bridge.shortcuts")
    assert not any(shortcuts.check().values())
    assert "(not installed)" in caplog.text


def test_forcing_a_mismatch_switches_every_component_to_its_public_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ably_bridge.bridge.sinks.celery import CelerySink
    from ably_bridge.bridge.sinks.redis_streams import RedisStreamSink
    from ably_bridge.transports.http import RequestsTransport
    from ably_bridge.transports.websocket import WebSocketTransport

    monkeypatch.setattr(shortcuts, "installed_version", lambda lib: "999")
    redis_sink = RedisStreamSink("redis://127.0.0.1:1/0")
    celery_sink = CelerySink("redis://127.0.0.1:1/0")
    http = RequestsTransport()
    ws = WebSocketTransport("ws://127.0.0.1:1/", on_frame=print, on_close=print)
    try:
        assert redis_sink._raw is False
        assert celery_sink._encoder is None
        assert (celery_sink._pipelined, celery_sink._buffered, celery_sink._templated) == (
            False,
            False,
            False,
        )
        assert http._direct is False and ws._raw is False
    finally:
        redis_sink.close()
        celery_sink.close()
        http.close()


def test_the_environment_switches_every_shortcut_or_the_named_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(shortcuts.ENV_VAR, "1")
    assert not any(shortcuts.check().values())
    monkeypatch.setenv(shortcuts.ENV_VAR, "redis.raw_pipeline, amqp.frame_writer")
    taken = shortcuts.check()
    assert not taken["redis.raw_pipeline"] and not taken["amqp.frame_writer"]
    assert taken["websocket.raw_socket"] and taken["celery.task_template"]
    monkeypatch.setenv(shortcuts.ENV_VAR, "0")
    assert shortcuts.check() == in_range()


def test_public_paths_switches_every_shortcut_within_the_block() -> None:
    with shortcuts.public_paths():
        assert not any(shortcuts.check().values())
        with shortcuts.public_paths():  # nests
            pass
        assert not shortcuts.enabled("redis.raw_pipeline")
    assert shortcuts.check() == in_range()


def test_the_documented_table_is_the_table_in_code() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "dependencies.md").read_text()
    table = text.split("<!-- shortcuts-table: start -->")[1].split("<!-- shortcuts-table: end -->")[
        0
    ]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| `")]
    documented = {name.strip().strip("`"): libs.strip() for name, libs in rows}
    in_code = {
        name: "; ".join(f"{lib} {tested}" for lib, tested in s.libraries.items())
        for name, s in SHORTCUTS.items()
    }
    assert documented == in_code


def test_an_unknown_shortcut_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="unknown shortcut"):
        shortcuts.enabled("no.such")
