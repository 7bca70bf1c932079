"""``ably-bridge stats``: the application's usage statistics (REST).

Prints one block per interval (its id and every non-zero metric, as dotted
names such as ``messages.all.all.count``), or with ``--json`` one document
``{"unit", "count", "intervals": [...]}`` in Ably's stats wire form.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ably_bridge.commands import common
from ably_bridge.rest.client import STATS_UNITS, AblyRest

if TYPE_CHECKING:
    from ably_bridge.commands.common import Subparsers

__all__ = ["register", "run"]


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "stats",
        help="show the application's usage statistics (REST)",
        description=(
            "Print the app's statistics per interval, newest first by default. Exit 0 on "
            "success, 1 on an Ably or network error, 2 on bad usage."
        ),
    )
    parser.add_argument(
        "--unit", choices=STATS_UNITS, default="minute", help="interval length (default minute)"
    )
    parser.add_argument(
        "--limit",
        type=_limit,
        default=10,
        metavar="N",
        help="number of intervals, 1-1000 (default 10)",
    )
    parser.add_argument(
        "--direction",
        choices=("backwards", "forwards"),
        default="backwards",
        help="newest first (backwards, the default) or oldest first",
    )
    parser.add_argument(
        "--start", type=common.time_bound, metavar="TIME", help="earliest interval (ms, ISO, 2h)"
    )
    parser.add_argument(
        "--end", type=common.time_bound, metavar="TIME", help="latest interval (ms, ISO, 2h)"
    )
    common.add_json_argument(parser, "the intervals")
    common.add_connection_arguments(parser)
    parser.set_defaults(handler=common.tool(run), tool_parser=parser)
    return parser


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an integer 1-1000") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be an integer 1-1000")
    return value


def run(args: argparse.Namespace) -> int:
    """Fetch one page of intervals and print it."""
    connection = common.client_kwargs(args)
    if args.start is not None and args.end is not None and args.start > args.end:
        raise common.UsageError("--start is after --end")
    with AblyRest(key=connection.key, **connection.options) as rest:
        page = rest.stats(
            start=args.start,
            end=args.end,
            direction=args.direction,
            limit=args.limit,
            unit=args.unit,
        )
        intervals = page.items
    if args.json:
        common.print_json(
            {
                "unit": args.unit,
                "count": len(intervals),
                "intervals": [s.to_dict() for s in intervals],
            }
        )
        return common.EXIT_OK
    for stats in intervals:
        print(f"{stats.interval_id} ({stats.unit or args.unit})")
        metrics = {k: v for k, v in sorted(stats.entries.items()) if v}
        for name, value in metrics.items():
            print(f"  {name} {value:g}")
        if not metrics:
            print("  (no activity)")
    print(f"{len(intervals)} interval(s)")
    return common.EXIT_OK
