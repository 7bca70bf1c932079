"""``ably-bridge history``: export a channel's stored messages as JSON lines.

Reads ``CHANNEL``'s history over REST, page after page, and writes one JSON
object per message (decoded; binary data as base64 with ``"encoding":
"base64"``) to stdout or ``--output FILE``. ``--presence`` exports presence
history instead. ``--limit`` caps the number of messages exported (pages are
fetched ``--page-size`` at a time). While exporting, a progress bar is drawn
on stderr when stderr is a terminal (``--progress``/``--no-progress`` force
it): a percentage when ``--limit`` or ``--start`` bounds the work, a count
otherwise. A summary goes to stderr at the end (as JSON on stdout with
``--json --output FILE``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ably_bridge.commands import common
from ably_bridge.commands.progress import Progress
from ably_bridge.protocol.models import Message, PresenceMessage
from ably_bridge.rest.client import AblyRest

if TYPE_CHECKING:
    from ably_bridge.commands.common import Subparsers

__all__ = ["register", "run"]

MAX_PAGE = 1000


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "history",
        help="export a channel's message history as JSON lines (REST)",
        description=(
            "Write CHANNEL's stored messages, one JSON object per line, to stdout or --output. "
            "Times (--start/--end) are ms since the epoch, ISO 8601 (2024-05-01T12:00:00Z) or "
            "a duration ago (90s, 15m, 2h, 7d). A progress bar is drawn on stderr when it is "
            "a terminal. Exit 0 when the export is complete, 1 on an Ably, network or file "
            "error (the messages written so far stay written), 2 on bad usage."
        ),
    )
    parser.add_argument("channel", metavar="CHANNEL", help="channel name")
    parser.add_argument(
        "--limit",
        type=common.positive_int,
        metavar="N",
        help="export at most N messages (default: all)",
    )
    parser.add_argument(
        "--page-size",
        type=_page_size,
        default=None,
        metavar="N",
        help=f"messages per request, 1-{MAX_PAGE} (default: {MAX_PAGE}, or --limit if smaller)",
    )
    parser.add_argument(
        "--direction",
        choices=("backwards", "forwards"),
        default="backwards",
        help="newest first (backwards, Ably's default) or oldest first (forwards)",
    )
    parser.add_argument(
        "--start", type=common.time_bound, metavar="TIME", help="earliest message time"
    )
    parser.add_argument(
        "--end", type=common.time_bound, metavar="TIME", help="latest message time (default: now)"
    )
    parser.add_argument(
        "--presence", action="store_true", help="export presence history instead of messages"
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write the JSON lines to FILE instead of stdout"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw the progress bar on stderr (default: only when stderr is a terminal)",
    )
    common.add_cipher_argument(parser, "decrypt the messages with")
    common.add_json_argument(parser, "the summary (with --output) on stdout")
    common.add_connection_arguments(parser)
    parser.set_defaults(handler=common.tool(run), tool_parser=parser)
    return parser


def _page_size(text: str) -> int:
    value = common.positive_int(text)
    if value > MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_PAGE}")
    return value


@contextmanager
def _sink(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        return
    with Path(path).open("w", encoding="utf-8") as stream:
        yield stream


def _fraction(
    args: argparse.Namespace, count: int, timestamp: int | None, end_ms: int
) -> float | None:
    """How far the export is: by count under --limit, else by time within --start..end."""
    limit: int | None = args.limit
    start: int | None = args.start
    if limit is not None:
        by_count = count / limit
        if start is None or timestamp is None:
            return by_count
    else:
        by_count = 0.0
    if start is None or timestamp is None or end_ms <= start:
        return None
    span = end_ms - start
    done = (end_ms - timestamp) if args.direction == "backwards" else (timestamp - start)
    return max(by_count, done / span)


def run(args: argparse.Namespace) -> int:
    """Export the history; the summary says how many messages and where."""
    connection = common.client_kwargs(args)
    if args.start is not None and args.end is not None and args.start > args.end:
        raise common.UsageError("--start is after --end")
    page_size = args.page_size or min(args.limit or MAX_PAGE, MAX_PAGE)
    end_ms = args.end if args.end is not None else int(time.time() * 1000)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    what = "presence events" if args.presence else "messages"
    progress = Progress(sys.stderr, label=f"history {args.channel}", enabled=show, unit=what)
    count = 0
    started = time.monotonic()
    complete = False
    try:
        with (
            AblyRest(key=connection.key, **connection.options) as rest,
            _sink(args.output) as out,
        ):
            channel = rest.channels.get(args.channel, cipher=common.cipher_key(args))
            query = channel.presence.history if args.presence else channel.history
            first = query(args.start, args.end, args.direction, page_size)
            item: Message | PresenceMessage
            for item in first:
                common.print_json(common.item_json(item), out)
                count += 1
                progress.update(count, _fraction(args, count, item.timestamp, end_ms))
                if args.limit is not None and count >= args.limit:
                    break
            complete = True
    finally:
        progress.close(done=complete)
        if not complete and count:
            where = args.output or "stdout"
            print(f"{args.tool_parser.prog}: {count} {what} written to {where}", file=sys.stderr)
    elapsed = time.monotonic() - started
    summary = {
        "channel": args.channel,
        "count": count,
        "output": args.output,
        "presence": bool(args.presence),
        "seconds": round(elapsed, 3),
    }
    if args.json and args.output:
        common.print_json(summary)
    elif show or args.output:
        where = f" to {args.output}" if args.output else ""
        print(
            f"exported {count} {what} from {args.channel}{where} in {elapsed:.1f}s",
            file=sys.stderr,
        )
    return common.EXIT_OK
