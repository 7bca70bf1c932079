"""Shared fixtures: where the project's copies of Ably's ably-common test data live."""

from __future__ import annotations

from pathlib import Path

import pytest

# The project's own copies (tests/fixtures/ably-common/README.md says where they come from).
ABLY_COMMON = Path(__file__).resolve().parent / "fixtures" / "ably-common"
# Where this project's own machines keep the upstream files; absent on a plain clone.
SHARED_ABLY_COMMON = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "ably-common"


@pytest.fixture(scope="session")
def ably_common() -> Path:
    """``tests/fixtures/ably-common``: the copies the tests read."""
    assert ABLY_COMMON.is_dir(), f"ably-common fixtures missing at {ABLY_COMMON}"
    return ABLY_COMMON
