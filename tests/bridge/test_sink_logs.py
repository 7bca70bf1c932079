"""What the bridge says about its sinks, in the user's words (issue 15).

A sink is set up before it is reached (it connects on its first delivery), so
the logs must not call it ready; once a batch is accepted they say it was
reached, and after an outage that it was reached again. Retry warnings name
the sink by its kind and redacted URL and say why, never an internal repr.
"""

from __future__ import annotations

import logging
import random

import pytest

from ably_bridge.bridge.config import Target
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.metrics import BridgeMetrics, MeteredSink
from ably_bridge.bridge.sinks.base import MemorySink
from ably_bridge.clock import FakeClock

from .test_dispatch import FakeCheckpoints, FakeDeadLetters, config, msg

STREAMS = "redis_stream:redis://:***@127.0.0.1:6399/0"
CELERY = "celery:redis://127.0.0.1:6399/1"


class Logged:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.streams_inner = MemorySink()
        metrics = BridgeMetrics()
        self.streams = MeteredSink(self.streams_inner, STREAMS, metrics, self.clock)
        self.celery = MeteredSink(MemorySink(), CELERY, metrics, self.clock)
        self.dispatcher = Dispatcher(
            config(),
            sink_for=self.sink_for,
            dead_letters=FakeDeadLetters(),  # type: ignore[arg-type]
            checkpoints=FakeCheckpoints(),  # type: ignore[arg-type]
            clock=self.clock,
            rng=random.Random(1),
        )

    def sink_for(self, target: Target) -> MeteredSink:
        return self.celery if target.kind == "celery" else self.streams


def lines(caplog: pytest.LogCaptureFixture, sink: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if sink in r.getMessage()]


def test_sinks_are_named_reached_and_reached_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ably_bridge.bridge")
    h = Logged()
    assert repr(h.streams) == f"sink {STREAMS}"
    h.streams_inner.fail_with(ConnectionError("Error 111 connecting to 127.0.0.1:6399."))
    h.dispatcher.submit_messages("chat:1", [msg(1)])
    h.dispatcher.drain()
    said = lines(caplog, STREAMS)
    assert said == [
        f"sink {STREAMS}: 1 deliveries to retry in 1.00s (attempt 1): "
        "ConnectionError: Error 111 connecting to 127.0.0.1:6399."
    ]  # not "reached": it never was
    assert lines(caplog, CELERY) == [f"sink {CELERY} reached (deliveries accepted)"]
    h.streams_inner.recover()
    h.clock.advance(1.0)
    h.dispatcher.drain()
    assert lines(caplog, STREAMS)[1:] == [f"sink {STREAMS} reached (deliveries accepted)"]
    h.dispatcher.submit_messages("chat:1", [msg(2)])
    h.dispatcher.drain()
    assert len(lines(caplog, STREAMS)) == 2  # said once, not per batch
    h.streams_inner.fail_with(ConnectionError("down"))
    h.dispatcher.submit_messages("chat:1", [msg(3)])
    h.dispatcher.drain()
    h.streams_inner.recover()
    h.clock.advance(1.0)
    h.dispatcher.drain()
    assert lines(caplog, STREAMS)[-1] == f"sink {STREAMS} reached again (deliveries accepted)"
    assert not any("MeteredSink" in r.getMessage() for r in caplog.records)


def test_a_sink_that_breaks_its_contract_is_named_by_label(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Logged()

    def broken(batch: object) -> list[object]:
        raise RuntimeError("bug in a sink")

    h.streams.inner.deliver = broken  # type: ignore[method-assign]
    h.dispatcher.submit_messages("chat:1", [msg(1)])
    h.dispatcher.drain()
    raised = [r for r in caplog.records if "raised from deliver" in r.getMessage()]
    assert [r.getMessage() for r in raised] == [f"sink {STREAMS} raised from deliver"]
