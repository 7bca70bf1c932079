"""What ``ably-bridge deadletter`` prints: the table, one entry, and the replay run.

This module owns the human and JSON output of the dead-letter tool
(:func:`print_table`, :func:`print_entry`) and :func:`run_replay`, which plans
the selected entries, shows the plan (``--dry-run``) or performs it chunk by
chunk with a progress bar, and reports what was replayed and what stays.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ably_bridge.commands import common
from ably_bridge.commands.deadletter_plan import Plan, entry_json, plan_replay
from ably_bridge.commands.deadletter_replay import Done, Replayer
from ably_bridge.commands.deadletter_store import DeadLetterEntry, DeadLetterStore
from ably_bridge.commands.progress import Progress

if TYPE_CHECKING:
    from ably_bridge.bridge.config import BridgeConfig

__all__ = ["print_entry", "print_table", "run_replay"]

_COLUMNS = ("ID", "TIME", "ORIGIN", "REASON", "ROUTE", "CHANNEL", "SOURCE", "EVENT ID", "ERROR")
_MAX_CELL = 40
_MAX_ERROR = 72


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line per entry whatever the error says
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(entry: DeadLetterEntry) -> list[str]:
    event_id = entry.get("event_id")
    if entry.origin == "worker" and isinstance(entry.event, dict):
        event_id = f"task {entry.event.get('task')}"
    return [
        entry.id,
        common.iso_ms(entry.time_ms),
        entry.origin,
        entry.reason,
        _cut(entry.route, _MAX_CELL) or "-",
        _cut(entry.channel, _MAX_CELL) or "-",
        entry.get("source") or "-",
        _cut(event_id, _MAX_CELL) or "-",
        _cut(entry.get("error"), _MAX_ERROR),
    ]


def print_table(entries: Sequence[DeadLetterEntry], out: TextIO) -> None:
    rows = [list(_COLUMNS), *(_row(e) for e in entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def print_entry(entry: DeadLetterEntry, out: TextIO) -> None:
    """One dead letter for people: why it died, then the event, indented JSON."""
    lines = [
        ("id", entry.id),
        ("dead-lettered", common.iso_ms(entry.time_ms)),
        ("origin", entry.origin),
        ("reason", entry.reason),
        ("code", entry.get("code")),
        ("error", entry.get("error")),
        ("route", entry.route),
        ("channel", entry.channel),
        ("source", entry.get("source")),
        ("event id", entry.get("event_id")),
    ]
    event = entry.event
    if entry.origin == "worker" and isinstance(event, dict):
        lines += [("task", str(event.get("task"))), ("task id", str(event.get("task_id")))]
    for name in ("stream", "group", "consumer", "entry_id", "deliveries"):
        if name in entry.fields:
            lines.append((name.replace("_", " "), entry.get(name)))
    if entry.truncated:
        lines.append(("truncated", "yes: the event was cut at 1 MiB"))
    for name, value in lines:
        out.write(f"{name + ':':<15}{value}\n")
    out.write("event:\n")
    if event is None:
        out.write(entry.get("event") + "\n")
    else:
        out.write(json.dumps(event, indent=2, ensure_ascii=False) + "\n")


def _line(plan: Plan, status: str, detail: str = "") -> str:
    where = ", ".join(plan.targets()) or "-"
    text = f"{status} {plan.entry.id} ({plan.entry.reason}, {plan.entry.channel or '-'})"
    if status in ("replayed", "would replay"):
        text += f" -> {where}"
    if plan.notes:
        text += f" [{'; '.join(plan.notes)}]"
    if detail:
        text += f": {detail}"
    return text


def run_replay(
    args: argparse.Namespace,
    store: DeadLetterStore,
    config: BridgeConfig | None,
    entries: Sequence[DeadLetterEntry],
    *,
    show: bool,
    redact: Callable[[str], str],
) -> int:
    """Plan ``entries``, then show (``--dry-run``) or perform the plans; the exit code."""
    plans = [plan_replay(entry, config) for entry in entries]
    if args.dry_run:
        return _report_dry_run(args, store, plans)
    progress = Progress(sys.stderr, label="replay", enabled=show, unit="dead letters")
    replayer = Replayer(store, config, redact=redact)
    results: list[Done] = []
    complete = False
    try:
        for start in range(0, len(plans), args.batch):
            chunk = plans[start : start + args.batch]
            ready = [p for p in chunk if p.ok]
            results += [Done(p, "failed", p.error or "") for p in chunk if not p.ok]
            results += replayer.perform(ready)
            progress.update(len(results), len(results) / len(plans) if plans else 1.0)
        complete = True
    finally:
        progress.close(done=complete)
        replayer.close()
    return _report(args, store, results)


def _report_dry_run(args: argparse.Namespace, store: DeadLetterStore, plans: list[Plan]) -> int:
    blocked = [p for p in plans if not p.ok]
    if args.json:
        common.print_json(
            {
                "stream": store.stream,
                "dry_run": True,
                "selected": len(plans),
                "replayable": len(plans) - len(blocked),
                "entries": [entry_json(p) for p in plans],
            }
        )
    else:
        for plan in plans:
            if plan.ok:
                print(_line(plan, "would replay"))
            else:
                print(_line(plan, "cannot replay", plan.error or ""))
        print(
            f"dry run: {len(plans) - len(blocked)} of {len(plans)} dead letter(s) would be "
            "replayed; nothing was sent",
            file=sys.stderr,
        )
    return common.EXIT_ERROR if blocked else common.EXIT_OK


def _report(args: argparse.Namespace, store: DeadLetterStore, results: list[Done]) -> int:
    counts: dict[str, int] = {"replayed": 0, "gone": 0, "failed": 0}
    for done in results:
        counts[done.status] = counts.get(done.status, 0) + 1
    if args.json:
        entries: list[dict[str, Any]] = []
        for done in results:
            item = entry_json(done.plan)
            item["status"] = done.status
            if done.detail:
                item["detail"] = done.detail
            entries.append(item)
        common.print_json(
            {"stream": store.stream, "dry_run": False, "selected": len(results), **counts,
             "entries": entries}
        )  # fmt: skip
    else:
        for done in results:
            if done.status == "failed" or args.verbose:
                print(_line(done.plan, done.status, done.detail))
        print(
            f"replayed {counts['replayed']} of {len(results)} dead letter(s)"
            + (f", {counts['gone']} already gone" if counts["gone"] else "")
            + (f"; {counts['failed']} failed and stay in the stream" if counts["failed"] else ""),
            file=sys.stderr,
        )
    return common.EXIT_ERROR if counts["failed"] else common.EXIT_OK
