"""Shared fixtures: where the ably-common test data lives (read in place, never copied)."""

from __future__ import annotations

from pathlib import Path

import pytest

ABLY_COMMON = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "ably-common"


@pytest.fixture(scope="session")
def ably_common() -> Path:
    """``../shared/testdata/ably-common`` relative to the project root."""
    assert ABLY_COMMON.is_dir(), f"ably-common fixtures missing at {ABLY_COMMON}"
    return ABLY_COMMON
