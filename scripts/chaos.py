#!/usr/bin/env python3
"""Run the bridge chaos test (tests/bridge/chaos/harness.py) for one or more seeds.

Each run starts its own redis-servers, emulator, bridge and Celery worker,
fires overlapping faults drawn from the seed, and prints one ``chaos {...}``
JSON line: lost, duplicated and out-of-order events in both sinks, presence
events missing, and the worker's duplicate executions per 10,000 messages.

    .venv/bin/python scripts/chaos.py                  # one random seed, CI size (~2 min)
    .venv/bin/python scripts/chaos.py --seed 7         # reproduce seed 7
    .venv/bin/python scripts/chaos.py --seeds 4 --duration 90 --rate 200 --channels 20

Exit status 0 when every run found nothing lost, duplicated or reordered.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.bridge.chaos.harness import Plan, run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, help="the first seed (default: random)")
    parser.add_argument("--seeds", type=int, default=1, help="runs, seeds seed..seed+N-1")
    parser.add_argument("--duration", type=float, default=60.0, help="publishing seconds")
    parser.add_argument("--rate", type=float, default=50.0, help="messages a second")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the bridge")
    parser.add_argument("--sigstop", type=float, default=10.0, help="stream Redis SIGSTOP, ~s")
    parser.add_argument("--broker-down", type=float, default=10.0, help="broker outage, ~s")
    parser.add_argument("--settle", type=float, default=45.0, help="max seconds to converge")
    parser.add_argument("--keep", action="store_true", help="keep the run's logs")
    args = parser.parse_args()
    first = args.seed if args.seed is not None else random.randrange(1, 1_000_000)
    reports = []
    for seed in range(first, first + args.seeds):
        plan = Plan.draw(
            seed, duration=args.duration, rate=args.rate, channels=args.channels,
            kills=args.kills, sigstop=args.sigstop, broker_down=args.broker_down,
        )  # fmt: skip
        reports.append(run(plan, settle=args.settle, keep=args.keep))
    bad = [r.seed for r in reports if not r.ok]
    summary = {
        "runs": len(reports),
        "failed_seeds": bad,
        "published": sum(r.published for r in reports),
        "lost": sum(r.stream_lost + r.celery_lost for r in reports),
        "dup_exec_per_10k": round(
            sum(r.duplicate_executions for r in reports)
            * 10000
            / max(1, sum(r.published for r in reports)),
            1,
        ),
    }
    print("chaos summary " + json.dumps(summary), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
