"""``ably-bridge deadletter list|show|replay|purge``: the dead-letter stream, for operators.

* ``list`` - the dead letters matching the filters (``--route``, ``--channel``,
  ``--reason``, ``--origin``, ``--since``, ``--until``), newest first, as a table
  or JSON lines (``--json``).
* ``show ID`` - one dead letter: why it died and the event itself.
* ``replay [ID...]`` - sends the selected entries back to their targets after
  the cause was fixed (:mod:`.deadletter_plan` says where each goes), through
  the sinks' de-duplication, so replaying is safe to repeat; an entry is removed
  only once its targets confirmed it. ``--dry-run`` shows the plan and sends
  nothing; a progress bar is drawn on stderr when it is a terminal.
* ``purge [ID...]`` - deletes the selected entries, after asking (``--yes``:
  without asking).

Where the stream is: ``-c bridge.yaml`` (its ``redis.url`` and
``dead_letter.stream``), overridden by ``--redis-url`` and ``--stream``;
without a configuration ``$REDIS_URL`` (else ``redis://127.0.0.1:6379/0``)
and ``ably-bridge:deadletter``. ``replay`` needs the configuration for bridge
and worker dead letters (routes, targets, cipher keys).

Exit codes: 0 success, 1 a Redis or configuration error or an entry that could
not be replayed (it stays), 2 bad usage, 130 interrupted. Secrets (URL
passwords, the Ably key, cipher keys) never appear in the output.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ably_bridge.bridge.deadletter import Reason
from ably_bridge.commands import common
from ably_bridge.commands.deadletter_context import (
    DEFAULT_REDIS_URL,
    DEFAULT_STREAM,
    Context,
    handler,
)
from ably_bridge.commands.deadletter_output import print_entry, print_table, run_replay
from ably_bridge.commands.deadletter_store import ORIGINS, Selection, valid_id

if TYPE_CHECKING:
    from ably_bridge.commands.common import Subparsers

__all__ = ["register"]

REASONS = tuple(str(r) for r in Reason)


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "deadletter",
        help="list, show, replay and purge dead-lettered events",
        description=(
            "Work with the dead-letter stream: the events the bridge, a Celery worker or a "
            "stream consumer could not deliver. The stream comes from -c CONFIG (redis.url, "
            "dead_letter.stream) or --redis-url/--stream. Exit 0 on success, 1 on a Redis "
            "or configuration error or an entry that could not be replayed, 2 on bad usage."
        ),
    )
    parser.set_defaults(handler=lambda _args: _no_action(parser), tool_parser=parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    _add_list(actions)
    _add_show(actions)
    _add_replay(actions)
    _add_purge(actions)
    return parser


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return common.EXIT_USAGE


# -- arguments --------------------------------------------------------------------------
def _where(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the dead letters are")
    group.add_argument(
        "-c", "--config", metavar="FILE", help="the bridge configuration (.yaml, .yml, .toml)"
    )
    group.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis holding the stream (default: the config's redis.url, else $REDIS_URL, "
        f"else {DEFAULT_REDIS_URL}; its password is never printed)",
    )
    group.add_argument(
        "--stream",
        metavar="KEY",
        help=f"the dead-letter stream (default: dead_letter.stream, else {DEFAULT_STREAM}; "
        "a stream consumer's is <stream>:dead)",
    )


def _filters(parser: argparse.ArgumentParser, *, ids: bool) -> None:
    group = parser.add_argument_group("which dead letters (filters combine with AND)")
    if ids:
        group.add_argument("ids", nargs="*", metavar="ID", help="dead-letter ids (stream ids)")
    group.add_argument("--route", action="append", default=[], metavar="ID", help="route id")
    group.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="PATTERN",
        help="channel name, glob (chat:*) or re:regex",
    )
    group.add_argument(
        "--reason",
        action="append",
        default=[],
        choices=REASONS,
        metavar="REASON",
        help=f"why it died: {', '.join(REASONS)}",
    )
    group.add_argument(
        "--origin",
        action="append",
        default=[],
        choices=ORIGINS,
        metavar="ORIGIN",
        help="who wrote it: bridge, worker (a Celery worker, unknown task) or consumer "
        "(a stream consumer)",
    )
    group.add_argument(
        "--since",
        type=common.time_bound,
        metavar="TIME",
        help="written at or after TIME: ms, ISO 8601, or a duration ago (90s, 15m, 2h, 7d)",
    )
    group.add_argument("--until", type=common.time_bound, metavar="TIME", help="written by TIME")


def _add_list(actions: Subparsers) -> None:
    parser = actions.add_parser(
        "list",
        help="list dead letters, newest first",
        description="List the dead letters matching the filters, newest first. Exit 0, "
        "1 on a Redis or configuration error.",
    )
    _filters(parser, ids=False)
    parser.add_argument(
        "--limit",
        type=_limit,
        default=50,
        metavar="N",
        help="show at most N (default 50; 0: all)",
    )
    common.add_json_argument(parser, "each dead letter (one object per line)")
    _where(parser)
    parser.set_defaults(handler=handler(_list), tool_parser=parser)


def _add_show(actions: Subparsers) -> None:
    parser = actions.add_parser(
        "show",
        help="show one dead letter: why it died and the event",
        description="Print one dead letter: its reason, error code and message, route, "
        "channel, and the event as stored. Exit 0, 1 when there is no such entry.",
    )
    parser.add_argument("id", metavar="ID", help="the dead letter's id (its stream id)")
    common.add_json_argument(parser, "the dead letter")
    _where(parser)
    parser.set_defaults(handler=handler(_show), tool_parser=parser)


def _add_replay(actions: Subparsers) -> None:
    parser = actions.add_parser(
        "replay",
        help="send dead letters back to their targets (after fixing the cause)",
        description=(
            "Send the selected dead letters back to their targets, as the route is configured "
            "now: through the same de-duplication as the bridge (a target that has the event "
            "already answers 'duplicate'), so a replay is safe to repeat. Undecodable events "
            "are decoded again with the route's cipher key. An entry is removed once its "
            "targets confirmed it; an entry that fails stays, with the reason printed. "
            "Select entries by ID or filters, or pass --all. Exit 0 when every selected "
            "entry was replayed (or would be, with --dry-run), 1 otherwise."
        ),
    )
    _filters(parser, ids=True)
    parser.add_argument("--all", action="store_true", help="select every dead letter")
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be sent where; send nothing"
    )
    parser.add_argument(
        "--limit", type=_limit, default=0, metavar="N", help="replay at most N (default: all)"
    )
    parser.add_argument(
        "--batch", type=common.positive_int, default=100, metavar="N", help="entries per round"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar on stderr (default: when stderr is a terminal)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print a line per entry, not only failures"
    )
    common.add_json_argument(parser, "the result")
    _where(parser)
    parser.set_defaults(handler=handler(_replay), tool_parser=parser)


def _add_purge(actions: Subparsers) -> None:
    parser = actions.add_parser(
        "purge",
        help="delete dead letters (asks first unless --yes)",
        description="Delete the selected dead letters (by ID or filters, or --all), after "
        "asking on the terminal unless --yes is given. Exit 0 when they were deleted (or "
        "none matched), 1 when the answer was no or on a Redis error.",
    )
    _filters(parser, ids=True)
    parser.add_argument("--all", action="store_true", help="select every dead letter")
    parser.add_argument("-y", "--yes", action="store_true", help="delete without asking")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    common.add_json_argument(parser, "the result")
    _where(parser)
    parser.set_defaults(handler=handler(_purge), tool_parser=parser)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number (0: no limit)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


# -- running ----------------------------------------------------------------------------
def _selection(args: argparse.Namespace) -> Selection:
    ids = tuple(_normal_id(i) for i in getattr(args, "ids", []) or [])
    if args.since is not None and args.until is not None and args.since > args.until:
        raise common.UsageError("--since is after --until")
    return Selection(
        ids=ids,
        routes=tuple(args.route),
        channels=tuple(args.channel),
        reasons=tuple(args.reason),
        origins=tuple(args.origin),
        since_ms=args.since,
        until_ms=args.until,
    )


def _normal_id(text: str) -> str:
    if not valid_id(text):
        raise common.UsageError(f"{text!r} is not a dead-letter id (like 1700000000000-0)")
    return text if "-" in text else f"{text}-0"


def _narrowed(args: argparse.Namespace, selection: Selection) -> None:
    if not selection.narrowed and not args.all:
        raise common.UsageError("select entries by ID or a filter, or pass --all")
    if selection.narrowed and args.all:
        raise common.UsageError("--all selects everything: leave out the IDs and filters")


def _list(args: argparse.Namespace, ctx: Context) -> int:
    selection = _selection(args)
    entries = list(ctx.store.select(selection, limit=args.limit or None, newest_first=True))
    if args.json:
        for entry in entries:
            common.print_json(entry.summary())
        return common.EXIT_OK
    total = ctx.store.length()
    if entries:
        print_table(entries, sys.stdout)
    print(f"{len(entries)} shown of {total} in {ctx.where}", file=sys.stderr)
    return common.EXIT_OK


def _show(args: argparse.Namespace, ctx: Context) -> int:
    entry = ctx.store.get(_normal_id(args.id))
    if entry is None:
        print(f"{args.tool_parser.prog}: no dead letter {args.id} in {ctx.where}", file=sys.stderr)
        return common.EXIT_ERROR
    if args.json:
        out: dict[str, Any] = entry.summary()
        out["event"] = entry.event if entry.event is not None else entry.get("event")
        common.print_json(out)
    else:
        print_entry(entry, sys.stdout)
    return common.EXIT_OK


def _replay(args: argparse.Namespace, ctx: Context) -> int:
    selection = _selection(args)
    _narrowed(args, selection)
    entries = list(ctx.store.select(selection, limit=args.limit or None))
    if not entries:
        if args.json:
            common.print_json({"stream": ctx.stream, "dry_run": bool(args.dry_run), "selected": 0})
        print(f"no dead letters match in {ctx.where}", file=sys.stderr)
        return common.EXIT_OK
    show = sys.stderr.isatty() if args.progress is None else args.progress
    return run_replay(args, ctx.store, ctx.config, entries, show=show, redact=ctx.redact)


def _purge(args: argparse.Namespace, ctx: Context) -> int:
    selection = _selection(args)
    _narrowed(args, selection)
    ids = [entry.id for entry in ctx.store.select(selection)]
    result: dict[str, Any] = {"stream": ctx.stream, "selected": len(ids), "deleted": 0}
    if not ids or args.dry_run:
        if args.json:
            common.print_json({**result, "dry_run": bool(args.dry_run), "ids": ids})
        else:
            for entry_id in ids:
                print(entry_id)
            print(f"{len(ids)} dead letter(s) would be deleted from {ctx.where}", file=sys.stderr)
        return common.EXIT_OK
    if not args.yes and not _confirm(f"Delete {len(ids)} dead letter(s) from {ctx.where}?"):
        print("nothing deleted", file=sys.stderr)
        return common.EXIT_ERROR
    result["deleted"] = ctx.store.delete(ids)
    if args.json:
        common.print_json(result)
    else:
        print(f"deleted {result['deleted']} dead letter(s) from {ctx.where}", file=sys.stderr)
    return common.EXIT_OK


def _confirm(question: str) -> bool:
    """Ask on stderr, read the answer from stdin; anything but y/yes (or no input) is no."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")
