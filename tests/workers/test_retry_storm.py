"""A REST outage does not become a retry storm, and everything is published once it ends.

The emulator answers 503 to every publish on this test's channels for 8 s
(``fail_rest``, counted down by each request it refuses, so the count it has
left says how many requests reached it). 60 publishes are queued on a worker
with 4 threads and a fast retry policy (20-100 ms): without the retry budget
that is about 540 requests in the first seconds. With it, the process backs
off as a whole (0.2 s doubling to 1 s here) and sends one probe per backoff, so
the requests stay bounded, in total and in every second. Then the fault is
lifted and every message must be in history exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from ably_bridge.emulator.server import Emulator
from tests.support.wait import eventually
from tests.workers.conftest import rest_client, running_worker, unique
from workers import WorkerSettings, producers
from workers.budget import METRICS

OUTAGE = 8.0
CONCURRENCY = 4
PUBLISHES = 60
HUGE = 1_000_000


def _history_ids(emulator: Emulator, key: str, channel: str) -> list[str]:
    with rest_client(emulator, key) as rest:
        return [str(m.id) for m in rest.channels.get(channel).history(limit=1000)]


@pytest.mark.slow
def test_an_outage_gets_a_bounded_request_rate_and_a_full_recovery(
    make_settings: Callable[..., WorkerSettings],
    emulator: Emulator,
    ably_app: dict[str, Any],
) -> None:
    prefix = unique("storm")
    channels = [f"{prefix}-{i}" for i in range(3)]
    settings = make_settings("redis", budget_base_delay=0.2, budget_max_delay=1.0)
    deferred_before = METRICS.deferred.value()
    backoffs_before = METRICS.backoffs.total()
    with running_worker(settings, concurrency=CONCURRENCY) as app:
        emulator.faults.fail_rest(
            count=HUGE, status=503, code=50300, app_id=ably_app["app_id"],
            path_prefix=f"/channels/{prefix}",
        )  # fmt: skip
        faults = emulator.runtime.faults  # type: ignore[union-attr]
        fault = emulator.call(lambda: faults.rest_failures[-1])
        start = time.monotonic()
        expected: dict[str, list[str]] = {c: [] for c in channels}
        for i in range(PUBLISHES):
            channel = channels[i % 3]
            receipt = producers.publish(channel, "n", f"m{i}", app=app, ignore_result=True)
            expected[channel].extend(receipt.message_ids)
        samples: list[tuple[float, int]] = []
        while time.monotonic() - start < OUTAGE:
            samples.append((time.monotonic(), HUGE - emulator.call(lambda: fault.remaining)))
            time.sleep(0.05)
        emulator.call(faults.rest_failures.remove, fault)
        refused = HUGE - fault.remaining
        for channel in channels:
            eventually(
                lambda c=channel: (
                    sorted(_history_ids(emulator, ably_app["root_key"], c))  # type: ignore[misc]
                    == sorted(expected[c])
                ),
                60,
                f"every message of {channel} after the outage",
                interval=0.25,
            )
    burst = max((b - a for t0, a in samples for t1, b in samples if 0 <= t1 - t0 <= 1.0), default=0)
    assert refused <= CONCURRENCY + 20, f"{refused} requests during the outage"
    assert burst <= CONCURRENCY + 6, f"{burst} requests in one second"
    assert refused >= 2  # the outage was seen (and probed again)
    assert METRICS.deferred.value() - deferred_before >= PUBLISHES - CONCURRENCY
    assert METRICS.backoffs.total() - backoffs_before >= 2
    for channel in channels:
        seen = Counter(_history_ids(emulator, ably_app["root_key"], channel))
        assert all(n == 1 for n in seen.values()), f"duplicates on {channel}"
