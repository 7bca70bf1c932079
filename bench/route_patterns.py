"""Benchmark: route pattern matching, ordinary and adversarial names.

Times :meth:`ably_bridge.bridge.pattern_engine.Program.search` (no result
cache: every name is matched) in CPU microseconds per name, and counts its
steps, for

* ordinary channel names against a typical route (``re:^room-[0-9]+$`` and
  ``chat:*``), beside Python's ``re`` for the same alternation;
* the adversarial cases of issue 17 - ``re:^room-(a+)+$`` against
  ``room-aaa...a!`` and the glob ``*a*a*a*a*b`` against ``aaa...a`` - at
  ``--lengths`` characters. Python's ``re`` is timed only up to 24 characters
  for the regex (it doubles with every character), to show the contrast.

    .venv/bin/python bench/route_patterns.py
    .venv/bin/python bench/route_patterns.py --lengths 200 2000 --format json
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from functools import partial

from ably_bridge.bridge.pattern_engine import Program
from ably_bridge.bridge.pattern_regex import parse_regex
from ably_bridge.bridge.pattern_syntax import Node, parse_glob


def cpu_us(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(repeat):
            fn()
        best = min(best, (time.process_time() - start) / repeat)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[30, 200, 2000])
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []

    typical = Program([parse_regex("^room-[0-9]+$"), parse_glob("chat:*")])
    python = re.compile(r"(?:^room-[0-9]+$)|(?:^chat:.*\Z)", re.DOTALL)
    names = [f"room-{i}" for i in range(50)] + [f"chat:lobby-{i}" for i in range(50)]
    names += [f"other:{i}" for i in range(50)]
    for name in names:
        typical.search(name)  # warm the DFA
    ours = cpu_us(lambda: [typical.search(n) for n in names], 200) / len(names)
    theirs = cpu_us(lambda: [python.search(n) for n in names], 200) / len(names)
    rows.append({"case": "typical names", "ours_us": ours, "re_us": theirs})

    cases: list[tuple[str, Node, Callable[[int], str], re.Pattern[str], int]] = [
        ("re:^room-(a+)+$", parse_regex("^room-(a+)+$"), lambda n: "room-" + "a" * n + "!",
         re.compile("^room-(a+)+$"), 24),
        ("glob *a*a*a*a*b", parse_glob("*a*a*a*a*b"), lambda n: "a" * n,
         re.compile("^.*a.*a.*a.*a.*b\\Z"), 200),
    ]  # fmt: skip
    for label, tree, make, python_rx, python_max in cases:
        for n in args.lengths:
            name = make(n)
            program = Program([tree])
            before = program.steps
            program.search(name)
            cold_steps = program.steps - before
            before = program.steps
            program.search(name)
            warm_steps = program.steps - before
            ours_us = cpu_us(partial(program.search, name), 20)
            row: dict[str, object] = {
                "case": label, "length": len(name), "cold_steps": cold_steps,
                "warm_steps": warm_steps, "ours_us": ours_us,
            }  # fmt: skip
            if n <= python_max:
                row["re_us"] = cpu_us(partial(python_rx.search, name), 1)
            rows.append(row)

    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        extra = f", re {row['re_us']:.1f} us" if "re_us" in row else ""
        steps = (
            f" ({row['length']} chars, steps {row['cold_steps']} cold / {row['warm_steps']} warm)"
            if "length" in row
            else ""
        )
        print(f"{row['case']}{steps}: {row['ours_us']:.1f} us{extra}")


if __name__ == "__main__":
    main()
