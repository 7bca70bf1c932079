"""``log_payloads`` does what the configuration says: a dead-lettered event's log line
carries its payload only when the option is on (real Redis, and a Redis that is down)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ably_bridge.bridge.deadletter import DeadLetter, DeadLetterWriter, Reason
from ably_bridge.bridge.jsonlog import configure_logging
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.bridge.log_support import root_logging_restored
from tests.support.services import free_port

SECRET_DATA = "payload-4f1c"


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    caplog.set_level(logging.INFO, logger="ably_bridge")  # whatever a client set it to
    with root_logging_restored():
        yield io.StringIO()


def letter() -> DeadLetter:
    env = EnvelopeBuilder("app", "site").message(
        "chat:a", Message("n", {"text": SECRET_DATA}, id="m:1:0", timestamp=5), "r1"
    )
    return DeadLetter(Reason.OVERSIZED, "r1", "chat:a", env, code=40009, error="too big")


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("payloads", [False, True])
def test_dead_letter_log_lines_carry_the_payload_only_when_asked(
    rclient: redis.Redis, prefix: str, log_lines: io.StringIO, payloads: bool
) -> None:
    configure_logging("INFO", payloads=payloads, stream=log_lines)
    writer = DeadLetterWriter(rclient, f"{prefix}:dl")
    assert writer.write(letter())
    (line,) = [x for x in lines(log_lines) if str(x["message"]).startswith("dead-lettered")]
    assert line["channel"] == "chat:a" and line["route"] == "r1"
    assert line["message_id"] == "m:1:0" and line["reason"] == "oversized"
    assert (SECRET_DATA in log_lines.getvalue()) is payloads
    if payloads:
        payload = line["payload"]
        assert isinstance(payload, dict) and payload["channel"] == "chat:a"
        assert payload["messages"][0]["data"] == {"text": SECRET_DATA}


def test_with_redis_down_the_log_keeps_the_payload(log_lines: io.StringIO) -> None:
    configure_logging("INFO", fmt="text", payloads=True, stream=log_lines)
    client = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    writer = DeadLetterWriter(client, "dl")
    assert writer.write(letter()) is False and writer.dropped == 1
    text = log_lines.getvalue()
    assert "unavailable; 1 event(s) lost from it" in text
    assert "dead letter not written: channel.message event on chat:a (route r1)" in text
    assert SECRET_DATA in text.splitlines()[-1]
