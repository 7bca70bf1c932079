"""The Celery sink on a Redis broker behind Sentinel (issue 21), through a failover.

The test starts its own group (:mod:`tests.support.sentinel`). The sink's URL is
kombu's ``sentinel://`` form with ``?master_name=``. 20 events are delivered,
the primary is SIGKILLed once the replica has them (``WAIT``), 20 more are
delivered while the Sentinels promote the replica (a batch that fails is
delivered again, as the bridge does), and then the first 20 are delivered once
more (the bridge re-reading history after a crash). On the new primary each of
the 40 task ids is queued exactly once: the push-once script ran on whichever
node was primary, and its marks came through the failover with the tasks.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis

from ably_bridge.bridge.config import CeleryTarget, ConfigError, parse_config
from ably_bridge.bridge.secret import redact_url
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions
from ably_bridge.bridge.sinks.celery import CelerySink, make_sender_app
from ably_bridge.bridge.sinks.celery_redis import PushOnceSentinelTransport, split_sentinel_master
from ably_bridge.envelope import Envelope, EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.support.sentinel import WAIT, sentinel_group
from tests.support.wait import eventually

B = EnvelopeBuilder("appX", "test")
TARGET = CeleryTarget(task="t.sentinel", queue="qs")


def _envelopes(first: int, last: int) -> list[Envelope]:
    return [
        B.message("chan", Message("e", i, id=f"s:{i}:0", timestamp=1000 + i), "route")
        for i in range(first, last)
    ]


def _deliver_until_done(sink: CelerySink, envelopes: Sequence[Envelope]) -> None:
    def attempt() -> bool:
        results = sink.deliver([Delivery(e, TARGET) for e in envelopes])
        return all(r.outcome is Outcome.DELIVERED for r in results)

    eventually(attempt, WAIT, "the batch to be delivered", interval=0.2)


def _queued_ids(port: int) -> Counter[str]:
    import json

    client = redis.Redis(port=port, socket_timeout=5)
    try:
        raw = client.lrange("qs", 0, -1)
    finally:
        client.close()
    return Counter(json.loads(item)["headers"]["id"] for item in raw)


def test_the_master_name_rides_on_the_url_and_is_required() -> None:
    url = "sentinel://:pw@h1:26379/0;sentinel://h2:26379/0?master_name=svc&x=1"
    assert split_sentinel_master(url) == ("sentinel://:pw@h1:26379/0;sentinel://h2:26379/0?x=1",
                                          "svc")  # fmt: skip
    app = make_sender_app(url, push_once=("p", 60))
    assert app.conf.broker_transport_options["master_name"] == "svc"
    assert app.conf.broker_transport is PushOnceSentinelTransport
    assert "pw" not in redact_url(url)
    with pytest.raises(ValueError, match="master_name"):
        make_sender_app("sentinel://h1:26379/0")
    routes = [{"id": "r", "channels": ["a"], "targets": [{"type": "celery", "task": "t"}]}]
    env = {"ABLY_KEY": "app.key:secret", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    with pytest.raises(ConfigError, match="master_name"):
        parse_config({"routes": routes}, {**env, "CELERY_BROKER_URL": "sentinel://h1:26379/0"})
    config = parse_config({"routes": routes}, {**env, "CELERY_BROKER_URL": url})
    assert config.celery_broker_url is not None and config.celery_broker_url.reveal() == url


@pytest.mark.slow
def test_push_once_follows_a_failover_and_queues_each_task_once(tmp_path: Path) -> None:
    with sentinel_group(tmp_path) as group:
        options = SinkOptions(key_prefix="sent", dedup_ttl=600, socket_timeout=2)
        sink = CelerySink(group.kombu_url(master_param=True), options)
        try:
            _deliver_until_done(sink, _envelopes(0, 20))
            primary = redis.Redis(port=group.primary, socket_timeout=5)
            primary.set("replicated-up-to-here", "1")  # WAIT covers every write before it
            assert primary.execute_command("WAIT", 1, 5000) == 1
            primary.close()
            group.procs[group.primary].send_signal(signal.SIGKILL)
            _deliver_until_done(sink, _envelopes(20, 40))
            assert group.current_primary() == group.replica
            _deliver_until_done(sink, _envelopes(0, 20))  # a replay: pushed once already
        finally:
            sink.close()
        queued = _queued_ids(group.replica)
    assert len(queued) == 40 and max(queued.values()) == 1
