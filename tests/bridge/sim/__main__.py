"""Run the simulation from the command line.

python -m tests.bridge.sim --seeds 10000          # seeds 0..9999
python -m tests.bridge.sim --seed 1234 --verbose  # one seed, its violations and stats
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.bridge.sim.scenario import run_seed


def repro(seed: int) -> str:
    return f"python -m tests.bridge.sim --seed {seed} --verbose"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="deterministic simulation of the bridge")
    parser.add_argument("--seeds", type=int, default=2000, help="run seeds 0..N-1")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="run only this seed")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    started = time.monotonic()
    failed = 0
    totals: dict[str, int] = {}
    for seed in seeds:
        outcome = run_seed(seed, args.steps)
        for k, v in outcome.stats.items():
            totals[k] = totals.get(k, 0) + v
        if args.verbose:
            print(f"seed {seed}: {outcome.stats}")
            for line in outcome.violations:
                print("  " + line)
        if not outcome.ok:
            failed += 1
            print(f"FAILED seed {seed}: {outcome.violations[0]} | repro: {repro(seed)}")
    took = time.monotonic() - started
    print(f"{len(seeds)} seed(s), {failed} failed, {took:.1f}s; totals {totals}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
