"""The bridge's Redis behind Sentinel (issue 21): URL parsing, config checks, a real failover.

The failover test starts its own group on loopback - a primary, a replica and
three Sentinels, all ``redis-server`` processes on free ports - delivers through
the streams sink with a ``redis+sentinel://`` URL, SIGKILLs the primary and
keeps delivering until the Sentinels have promoted the replica. Everything the
primary had replicated before it died is still there, nothing is written
twice (the dedup marks were replicated with the entries), and the sink reaches
the new primary by itself.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ably_bridge.bridge.config import ConfigError, StreamTarget, parse_config
from ably_bridge.bridge.redis_connect import SentinelSpec, open_redis, parse_sentinel_url
from ably_bridge.bridge.secret import redact_url
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions
from ably_bridge.bridge.sinks.redis_streams import RedisStreamSink
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.support.sentinel import WAIT, Group, sentinel_group
from tests.support.wait import eventually

# -- the URL ------------------------------------------------------------------------------------


def test_a_sentinel_url_names_sentinels_service_db_and_credentials() -> None:
    spec = parse_sentinel_url(
        "redis+sentinel://app:s3cret@10.0.0.1:26380,[::1],sentinel-c/orders/3?sentinel_password=spw"
    )
    assert spec == SentinelSpec(
        sentinels=(("10.0.0.1", 26380), ("::1", 26379), ("sentinel-c", 26379)),
        service="orders",
        db=3,
        username="app",
        password="s3cret",
        sentinel_password="spw",
    )
    assert "s3cret" not in repr(spec) and "spw" not in repr(spec)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h1:26379", "service name"),
        ("redis+sentinel://h1:26379/svc/x", "must be a number"),
        ("redis+sentinel://h1:0/svc", "1-65535"),
        ("redis+sentinel://h1:26379,/svc", "empty Sentinel address"),
        ("redis+sentinel://h1/svc/0/extra", "/service or /service/db"),
        ("redis+sentinel://h1/svc?master=x", "unknown URL parameter"),
    ],
)
def test_a_bad_sentinel_url_is_refused_by_name(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_sentinel_url(url)


def test_check_config_takes_a_sentinel_url_and_redacts_its_password() -> None:
    url = "redis+sentinel://:pw-in-env@127.0.0.1:26379,127.0.0.1:26380/svc/0"
    config = parse_config(
        {
            "routes": [
                {"id": "r", "channels": ["a"], "targets": [{"type": "redis_stream", "key": "s"}]}
            ]
        },
        {"ABLY_KEY": "app.key:secret", "REDIS_URL": url},
    )
    assert config.redis_url.reveal() == url
    assert "pw-in-env" not in redact_url(url) and "26380" in redact_url(url)
    with pytest.raises(ConfigError, match="REDIS_URL: needs the monitored service name"):
        parse_config(
            {
                "routes": [
                    {
                        "id": "r",
                        "channels": ["a"],
                        "targets": [{"type": "redis_stream", "key": "s"}],
                    }
                ]
            },
            {"ABLY_KEY": "app.key:secret", "REDIS_URL": "redis+sentinel://h1:26379"},
        )


# -- a real group ----------------------------------------------------------------------------


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    with sentinel_group(tmp_path) as found:
        yield found


def _deliveries(first: int, last: int) -> list[Delivery]:
    target = StreamTarget(key="orders")
    build = EnvelopeBuilder("app", "local")
    out = []
    for i in range(first, last + 1):
        message = Message("order", {"n": i}, id=f"conn:{i}:0", timestamp=1_000 + i)
        out.append(Delivery(build.message("orders:1", message, "r"), target))
    return out


def _deliver_until_done(sink: RedisStreamSink, batch: list[Delivery]) -> list[Outcome]:
    """Deliver, then retry what the sink asks to retry, until every delivery settles."""
    outcomes: dict[int, Outcome] = {}
    deadline = time.monotonic() + WAIT
    while len(outcomes) < len(batch):
        todo = [i for i in range(len(batch)) if i not in outcomes]
        for i, result in zip(todo, sink.deliver([batch[i] for i in todo]), strict=True):
            if result.outcome is not Outcome.RETRY:
                outcomes[i] = result.outcome
        if len(outcomes) < len(batch):
            if time.monotonic() > deadline:
                raise AssertionError(f"still retrying {len(batch) - len(outcomes)} deliveries")
            time.sleep(0.1)  # the sinks' backoff, in short: the bridge's buffer does it with jitter
    return [outcomes[i] for i in range(len(batch))]


def _stream_ids(url: str) -> list[str]:
    client = open_redis(url)
    try:
        entries = client.xrange("orders")
    finally:
        client.close()
    return [json.loads(f[b"envelope"])["messages"][0]["id"] for _, f in entries]


def test_delivery_follows_a_failover_and_loses_nothing_delivered(group: Group) -> None:
    """With ``wait_replicas: 1`` every delivery the sink confirmed survives the failover.

    Deliveries run on a thread while the primary is SIGKILLed in the middle of
    them: whatever the sink had called DELIVERED or DUPLICATE by then was on the
    replica (WAIT), which the Sentinels promote. The promoted replica has no
    replica of its own, so deliveries wait (retried, not confirmed) until the
    old primary is back as its replica.
    """
    options = SinkOptions(socket_timeout=2.0, wait_replicas=1, wait_timeout=2.0)
    sink = RedisStreamSink(group.url, options)
    confirmed: list[int] = []
    killed = threading.Event()
    failures: list[BaseException] = []

    def deliver_all() -> None:
        try:
            for first in range(1, 201, 10):
                batch = _deliveries(first, first + 9)
                outcomes = _deliver_until_done(sink, batch)
                assert set(outcomes) <= {Outcome.DELIVERED, Outcome.DUPLICATE}, outcomes
                confirmed.extend(range(first, first + 10))
                if first == 51:
                    killed.wait(WAIT)  # the rest go to the promoted replica
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    worker = threading.Thread(target=deliver_all)
    worker.start()
    try:
        eventually(lambda: len(confirmed) >= 50 or bool(failures), WAIT, "the first deliveries")
        group.procs[group.primary].send_signal(signal.SIGKILL)
        group.procs[group.primary].wait(WAIT)
        killed.set()
        eventually(lambda: group.current_primary() == group.replica, WAIT, "the failover")
        group.restart_as_replica(group.primary, of=group.replica)
        eventually(
            lambda: group.replica_online(group.replica), WAIT, "the old primary as a replica"
        )
        worker.join(WAIT * 3)
        assert not worker.is_alive() and not failures, failures
        assert group.current_primary() == group.replica
        # Delivered again (a bridge restart re-reads from its checkpoint): the marks survived.
        assert _deliver_until_done(sink, _deliveries(1, 200)) == [Outcome.DUPLICATE] * 200
        assert _stream_ids(group.url) == [f"conn:{i}:0" for i in range(1, 201)]
    finally:
        killed.set()
        sink.close()


def test_unconfirmed_replication_is_retried_not_delivered(group: Group) -> None:
    """Asking for more replicas than answer: the batch is written but not confirmed."""
    options = SinkOptions(socket_timeout=2.0, wait_replicas=2, wait_timeout=0.2)
    sink = RedisStreamSink(group.url, options)
    try:
        (result,) = sink.deliver(_deliveries(1, 1))
        assert result.outcome is Outcome.RETRY
        assert "1 of 2 replica(s) confirmed the batch within 200 ms" in str(result.error)
        # Once fewer replicas are asked for, the retry confirms it and writes it once.
        relaxed = RedisStreamSink(group.url, SinkOptions(wait_replicas=1))
        try:
            (again,) = relaxed.deliver(_deliveries(1, 1))
        finally:
            relaxed.close()
        assert again.outcome is Outcome.DUPLICATE
        assert _stream_ids(group.url) == ["conn:1:0"]
    finally:
        sink.close()


def test_wait_replicas_is_read_bounded_and_named() -> None:
    route = {"id": "r", "channels": ["a"], "targets": [{"type": "redis_stream", "key": "s"}]}
    env = {"ABLY_KEY": "app.key:secret", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    config = parse_config(
        {"redis": {"wait_replicas": 1, "wait_timeout": 0.5}, "routes": [route]}, env
    )
    assert (config.redis_wait_replicas, config.redis_wait_timeout) == (1, 0.5)
    assert parse_config({"routes": [route]}, env).redis_wait_replicas == 0
    with pytest.raises(ConfigError, match=r"redis.wait_replicas: must be <= 16"):
        parse_config({"redis": {"wait_replicas": 17}, "routes": [route]}, env)
    with pytest.raises(ConfigError, match=r"redis.wait_timeout: must be > 0"):
        parse_config({"redis": {"wait_timeout": 0}, "routes": [route]}, env)
