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
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ably_bridge.bridge.config import ConfigError, StreamTarget, parse_config
from ably_bridge.bridge.envelope import EnvelopeBuilder
from ably_bridge.bridge.redis_connect import SentinelSpec, open_redis, parse_sentinel_url
from ably_bridge.bridge.secret import redact_url
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions
from ably_bridge.bridge.sinks.redis_streams import RedisStreamSink
from ably_bridge.protocol.models import Message

from .conftest import free_port, redis_available

SERVICE = "ablybridge"
WAIT = 30.0  # generous: the whole suite may be running beside this test


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


class Group:
    """A primary, a replica and three Sentinels on free loopback ports, owned by the test."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not on the PATH")
        self.exe = exe
        self.workdir = workdir
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.primary = self._server()
        self.replica = self._server("--replicaof", "127.0.0.1", str(self.primary))
        self.sentinels = [self._sentinel(i) for i in range(3)]

    def _spawn(self, port: int, *args: str) -> None:
        self.procs[port] = subprocess.Popen(
            [self.exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _until(lambda: redis_available(f"redis://127.0.0.1:{port}/0"), f"redis on {port}")

    def _server(self, *extra: str) -> int:
        port = free_port()
        data = self.workdir / str(port)
        data.mkdir()
        self._spawn(port, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(data), *extra)  # fmt: skip
        return port

    def _sentinel(self, index: int) -> int:
        port = free_port()
        conf = self.workdir / f"sentinel-{index}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        self._spawn(port, str(conf), "--sentinel")
        return port

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def current_primary(self) -> int | None:
        for port in self.sentinels:
            try:
                client = redis.Redis(port=port, socket_timeout=2)
                _, found = client.sentinel_get_master_addr_by_name(SERVICE)
                client.close()
                return int(found)
            except (redis.RedisError, TypeError):
                continue
        return None

    def sentinels_know_each_other(self) -> bool:
        """Every Sentinel sees the replica and the two others (a failover needs a majority)."""
        for port in self.sentinels:
            client = redis.Redis(port=port, socket_timeout=2)
            try:
                state = client.sentinel_master(SERVICE)
            except redis.RedisError:
                return False
            finally:
                client.close()
            replicas, others = state.get("num-slaves", 0), state.get("num-other-sentinels", 0)
            if int(replicas) != 1 or int(others) != 2:
                return False
        return True

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def _until(check: object, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    found = Group(tmp_path)
    try:
        _until(lambda: found.current_primary() == found.primary, "the Sentinels to agree")
        primary = redis.Redis(port=found.primary)
        _until(lambda: primary.info("replication")["connected_slaves"] == 1, "the replica")
        primary.close()
        _until(found.sentinels_know_each_other, "the Sentinels to find each other and the replica")
        yield found
    finally:
        found.close()


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


def test_delivery_follows_a_failover_and_loses_nothing_replicated(group: Group) -> None:
    sink = RedisStreamSink(group.url, SinkOptions(socket_timeout=2.0))
    try:
        assert _deliver_until_done(sink, _deliveries(1, 50)) == [Outcome.DELIVERED] * 50
        old = redis.Redis(port=group.primary)
        assert old.wait(1, 5000) == 1  # replicated: what a failover must keep
        old.close()
        group.procs[group.primary].send_signal(signal.SIGKILL)
        # The sink reaches the promoted replica by itself, asking the Sentinels.
        assert _deliver_until_done(sink, _deliveries(51, 100)) == [Outcome.DELIVERED] * 50
        assert group.current_primary() == group.replica
        # Delivered again (a bridge restart re-reads from its checkpoint): the marks survived.
        assert _deliver_until_done(sink, _deliveries(1, 100)) == [Outcome.DUPLICATE] * 100
        new = open_redis(group.url)
        entries = new.xrange("orders")
        ids = [json.loads(f[b"envelope"])["messages"][0]["id"] for _, f in entries]
        new.close()
        assert ids == [f"conn:{i}:0" for i in range(1, 101)]
    finally:
        sink.close()
