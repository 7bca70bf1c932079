"""Shared fixtures: where the project's copies of Ably's ably-common test data live."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_support import LocalCluster

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
