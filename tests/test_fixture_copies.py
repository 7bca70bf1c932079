"""The project's copies of Ably's ably-common fixtures are whole and unmodified.

The sums in ``tests/fixtures/ably-common/SHA256SUMS`` are checked on every run;
where this project's machines keep the upstream files beside the clone
(``../shared/testdata/ably-common``), each copy must also equal its upstream
file byte for byte.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import ABLY_COMMON, SHARED_ABLY_COMMON


def _pinned() -> dict[str, str]:
    pinned = {}
    for line in (ABLY_COMMON / "SHA256SUMS").read_text(encoding="ascii").splitlines():
        digest, name = line.split(maxsplit=1)
        pinned[name.lstrip("*")] = digest
    return pinned


PINNED = _pinned()


def test_every_json_copy_is_pinned() -> None:
    on_disk = {path.name for path in ABLY_COMMON.glob("*.json")}
    assert on_disk == set(PINNED)
    assert "Apache License" in (ABLY_COMMON / "LICENSE").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(PINNED))
def test_copy_matches_its_pinned_sum(name: str) -> None:
    assert hashlib.sha256((ABLY_COMMON / name).read_bytes()).hexdigest() == PINNED[name]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_copy_equals_upstream_where_upstream_is_beside_the_clone(name: str) -> None:
    upstream = SHARED_ABLY_COMMON / name
    if not SHARED_ABLY_COMMON.is_dir():
        # A plain clone: the pinned sums above are the whole check.
        assert not upstream.exists()
        return
    assert (ABLY_COMMON / name).read_bytes() == upstream.read_bytes(), (
        f"{name} differs from {upstream}; refresh the copy and SHA256SUMS"
    )
