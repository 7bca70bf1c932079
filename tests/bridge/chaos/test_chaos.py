"""The bridge under overlapping real faults loses, duplicates and reorders nothing.

One bounded (about two minutes) randomized run of :mod:`.harness`: its own
redis-servers (stream Redis with AOF, broker Redis, results Redis), the
emulator, ``ably-bridge run`` as a subprocess and a Celery worker; SIGKILLs of
the bridge with restarts, a SIGSTOP and a shutdown/restart of the stream
Redis, a broker outage, dropped and forgotten connections; a discovery route
with messages and presence. The seed is printed first; ``ABLY_BRIDGE_CHAOS_SEED``
replays one, and ``scripts/chaos.py --seeds N`` runs many.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

from tests.bridge.chaos.harness import Plan, run


@pytest.mark.timeout(420)
def test_overlapping_faults_lose_duplicate_and_reorder_nothing() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not on the PATH")
    seed = int(os.environ.get("ABLY_BRIDGE_CHAOS_SEED") or random.randrange(1, 1_000_000))
    print(f"chaos seed {seed} (replay: scripts/chaos.py --seed {seed})", flush=True)
    report = run(Plan.draw(seed), settle=120.0)
    assert report.published > 1000 and report.presence_events > 30
    assert (report.stream_lost, report.celery_lost) == (0, 0), report.line()
    assert (report.presence_lost_stream, report.presence_lost_celery) == (0, 0), report.line()
    assert (report.stream_duplicated, report.celery_duplicated) == (0, 0), report.line()
    assert (report.stream_inversions, report.celery_inversions) == (0, 0), report.line()
