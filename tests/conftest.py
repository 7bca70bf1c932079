"""Fixtures every test package shares (their helpers are in :mod:`tests.support`).

``ably_common`` (the project's copies of Ably's test data), ``emulator`` (one
for the session, :data:`tests.support.emulator.FAST`), ``app`` and ``key`` (an
app of the test's own on it), ``prefix`` and
``rclient`` (a key prefix of the test's own on the shared Redis, deleted
after), ``private_redis`` / ``durable_redis`` (a redis-server of the test's
own) and ``redis_cluster``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from tests.cluster_support import LocalCluster
from tests.support.redis_server import PrivateRedis
from tests.support.services import REDIS_URL, redis_available

if TYPE_CHECKING:
    from ably_bridge.emulator.server import Emulator

# The project's own copies (tests/fixtures/ably-common/README.md says where they come from).
ABLY_COMMON = Path(__file__).resolve().parent / "fixtures" / "ably-common"
# Where this project's own machines keep the upstream files; absent on a plain clone.
SHARED_ABLY_COMMON = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "ably-common"


@pytest.fixture(scope="session")
def ably_common() -> Path:
    """``tests/fixtures/ably-common``: the copies the tests read."""
    assert ABLY_COMMON.is_dir(), f"ably-common fixtures missing at {ABLY_COMMON}"
    return ABLY_COMMON


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One 3-primary, 3-replica Redis Cluster on loopback for the session (issue 21).

    Tests share it: they use keys of their own prefix and never stop its nodes
    (a test that kills a primary starts its own :class:`LocalCluster`).
    """
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """One emulator for the session (packages needing other timings override this)."""
    from tests.support.emulator import running

    yield from running()


@pytest.fixture
def app(emulator: Emulator) -> Iterator[dict[str, Any]]:
    """A fresh app with one full-rights key for this test, deleted after it."""
    created = emulator.create_app({"keys": [{}]})
    yield created
    emulator.delete_app(created["appId"])


@pytest.fixture
def key(app: dict[str, Any]) -> str:
    """The key of this test's own app."""
    return str(app["keys"][0]["keyStr"])


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix unique to this test; its keys on the shared Redis are deleted after."""
    name = f"abtest:{uuid.uuid4().hex[:12]}"
    yield name
    if redis_available():
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{name}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def rclient(prefix: str) -> Iterator[redis.Redis]:
    """A client of the shared Redis (what it writes under ``prefix`` goes with the prefix)."""
    if not redis_available():
        pytest.skip("Redis at 127.0.0.1:6379 is not running")
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own; it comes back empty after a stop."""
    server = PrivateRedis(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own that keeps its data across a kill and start."""
    server = PrivateRedis(tmp_path, durable=True).start()
    try:
        yield server
    finally:
        server.kill()
