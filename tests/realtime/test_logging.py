"""Realtime clients log through their own loggers (TO3b, TO3c; Go's WithLogLevel per client)."""

from __future__ import annotations

import logging

from ably_bridge.realtime import AblyRealtime
from tests.support.wait import eventually

from .conftest import MakeClient


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_two_realtime_clients_log_at_their_own_levels(make_client: MakeClient) -> None:
    chatty, quiet = Records(), Records()
    a = make_client(log_level=logging.DEBUG, log_handler=chatty)
    b = make_client(log_level=logging.WARNING, log_handler=quiet)
    for client in (a, b):
        client.connection.wait_for_state("connected", timeout=5)
        client.channels.get("logged").subscribe(lambda _m: None)
    assert a.log.name.startswith("ably_bridge.client.realtime-") and a.log is a.rest.log
    assert {r.name for r in chatty.records} == {a.log.name}
    assert any("opening transport" in r.getMessage() for r in chatty.records)
    assert quiet.records == []  # nothing at WARNING or above happened to b

    def boom(_message: object) -> None:
        raise RuntimeError("listener failure")

    channel = b.channels.get("raising")
    channel.subscribe(boom)
    channel.publish("m", "x")
    eventually(lambda: quiet.records, what="the listener's failure was not logged")
    assert [r.levelno for r in quiet.records] == [logging.ERROR]
    assert "listener" in quiet.records[0].getMessage()
    assert all(r.name == a.log.name for r in chatty.records)  # b's error is not a's


def test_a_malformed_recover_option_is_logged_by_the_client() -> None:
    seen = Records()
    client = AblyRealtime(
        key="app.key:secret", recover="garbage", auto_connect=False, log_handler=seen
    )
    try:
        messages = [r.getMessage() for r in seen.records if r.levelno == logging.ERROR]
        assert messages == [
            "ignoring the recover option: invalid recovery key: not JSON; connecting afresh"
        ]
    finally:
        client.close()
