"""ConnectionWatch: a FAILED connection is logged once per code and reported to the probes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ably_bridge.bridge.connection_watch import ConnectionWatch, is_credential_error
from ably_bridge.errors import AblyException
from ably_bridge.protocol.events import ConnectionState

WATCH_LOGGER = "ably_bridge.bridge.connection_watch"


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    """Capture this module's records whatever earlier tests did to logger levels."""
    caplog.set_level(logging.DEBUG, logger=WATCH_LOGGER)


@dataclass
class Change:
    current: Any
    reason: Any = None


class FakeConnection:
    """What ConnectionWatch reads of ``AblyRealtime.connection``: state, reason, listeners."""

    def __init__(self, state: Any = ConnectionState.CONNECTING, reason: Any = None) -> None:
        self.state = state
        self.error_reason = reason
        self.listeners: list[Callable[[Change], None]] = []

    def on(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: None

    def emit(self, state: Any, reason: Any = None) -> None:
        self.state, self.error_reason = state, reason
        for listener in self.listeners:
            listener(Change(state, reason))


def bad_key() -> AblyException:
    return AblyException("invalid credentials for key app.key", 40101, 401)


def test_a_failure_is_logged_once_per_code_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    watch = ConnectionWatch()
    first, second = FakeConnection(), FakeConnection()
    watch.observe(0, first)
    watch.observe(1, second)
    assert watch.failures() == []
    first.emit(ConnectionState.FAILED, bad_key())
    second.emit(ConnectionState.FAILED, bad_key())
    logged = [r for r in caplog.records if r.name == "ably_bridge.bridge.connection_watch"]
    assert len(logged) == 1
    assert logged[0].levelname == "ERROR" and logged[0].__dict__["code"] == 40101
    assert "Ably error 40101" in logged[0].getMessage()
    failures = watch.failures()
    assert [f.split(":")[0] for f in failures] == [
        "realtime connection 0 failed",
        "realtime connection 1 failed",
    ]
    assert all("check the Ably key (ABLY_KEY or ably.key_file)" in f for f in failures)


def test_a_connection_already_failed_when_observed_counts(caplog: pytest.LogCaptureFixture) -> None:
    watch = ConnectionWatch()
    watch.observe(3, FakeConnection(ConnectionState.FAILED, bad_key()))
    assert watch.failures()[0].startswith("realtime connection 3 failed: Ably error 40101")
    assert len(caplog.records) == 1


def test_recovery_and_other_codes(caplog: pytest.LogCaptureFixture) -> None:
    watch = ConnectionWatch()
    conn = FakeConnection()
    watch.observe(0, conn)
    conn.emit(ConnectionState.FAILED, AblyException("internal", 50000, 500))
    (failure,) = watch.failures()
    assert failure == "realtime connection 0 failed: Ably error 50000 (internal)"  # no key advice
    conn.emit(ConnectionState.CONNECTED)  # connect() called again, and it worked
    assert watch.failures() == []
    conn.emit(ConnectionState.FAILED, None)
    assert watch.failures() == ["realtime connection 0 failed: Ably error None (no reason given)"]
    conn.emit("closed")
    assert watch.failures() == []
    assert len(caplog.records) == 2  # 50000 once, then "no reason" once


def test_a_credential_error_that_retries_is_a_warning_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = ConnectionWatch()
    conn = FakeConnection()
    watch.observe(0, conn)
    expired = AblyException("token expired", 40142, 401)
    for _ in range(3):
        conn.emit(ConnectionState.DISCONNECTED, expired)
    conn.emit(ConnectionState.DISCONNECTED, AblyException("net", 80003, 503))  # not a key issue
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "is disconnected: Ably error 40142" in record.message
    assert watch.failures() == []


@pytest.mark.parametrize(
    ("code", "credential"),
    [(40101, True), (40142, True), (40160, True), (40300, True), (40400, True),
     (40000, False), (40401, False), (50000, False), (80003, False), (None, False)],
)  # fmt: skip
def test_credential_codes(code: int | None, credential: bool) -> None:
    assert is_credential_error(code) is credential
