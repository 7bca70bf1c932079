"""``ably-bridge workers``: the Celery workers and the retry state of the bridge's tasks.

One snapshot (:mod:`.workers_state`): the workers that answer on the broker
(their queues, how many tasks each runs, holds and schedules), the ``ably.*``
tasks among them - running, queued, scheduled, or **retrying** (failed, waiting
for the next attempt at its ETA, with the error) - and, with ``-c bridge.yaml``,
whether each Celery target of the bridge has a worker that consumes its queue
and registers its task name.

The broker and result backend come from ``--broker``/``--backend``, else the
workers' own environment (``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``,
``ABLY_WORKER_REDIS_KEY_PREFIX``, ...: :class:`workers.WorkerSettings`), else the
configuration's ``celery.broker_url``. Exit 0 when workers answered and every
configured target has one, 1 otherwise (or on a broker error), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from ably_bridge.bridge.secret import redact_url
from ably_bridge.commands import common
from ably_bridge.commands.workers_state import WorkersSnapshot, take_snapshot, task_patterns

if TYPE_CHECKING:
    from ably_bridge.bridge.config import BridgeConfig
    from ably_bridge.commands.common import Subparsers

__all__ = ["register", "run"]


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "workers",
        help="show the Celery workers and the retry state of the ably.* tasks",
        description=(
            "Ask the Celery workers over the broker (celery inspect: ping, active, reserved, "
            "scheduled, registered, active_queues) and the result backend: which workers run, "
            "which ably.* tasks are running, queued, scheduled or retrying (with the error "
            "of the last attempt and the time of the next), and with -c whether every "
            "Celery target of the bridge has a worker registering its task. Exit 0 when "
            "workers answered and every target has one, 1 otherwise, 2 on bad usage."
        ),
    )
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="the bridge configuration: check its Celery targets"
    )
    parser.add_argument(
        "--broker",
        metavar="URL",
        help="Celery broker (default: $CELERY_BROKER_URL, else celery.broker_url of -c, "
        "else redis://127.0.0.1:6379/0; its password is never printed)",
    )
    parser.add_argument(
        "--backend",
        metavar="URL",
        help="result backend for task states (default: $CELERY_RESULT_BACKEND, else a "
        "Redis broker)",
    )
    parser.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="PATTERN",
        help="task names to list, globs (default: ably.* and the config's Celery tasks)",
    )
    parser.add_argument(
        "--timeout",
        type=common.duration,
        default=2.0,
        metavar="SECONDS",
        help="how long to wait for workers to answer (default: 2)",
    )
    common.add_json_argument(parser, "the snapshot")
    parser.set_defaults(handler=common.tool(run), tool_parser=parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Take one snapshot and print it; the exit code says whether all is well."""
    from workers import WorkerSettings, create_app

    config = _config(args.config) if args.config else None
    if config is None and args.config:
        return common.EXIT_ERROR
    env = dict(os.environ)
    if args.broker:
        env["CELERY_BROKER_URL"] = args.broker
    elif not env.get("CELERY_BROKER_URL") and config and config.celery_broker_url:
        env["CELERY_BROKER_URL"] = config.celery_broker_url.reveal()
    if args.backend:
        env["CELERY_RESULT_BACKEND"] = args.backend
    try:
        settings = WorkerSettings.from_env(env)
    except ValueError as exc:
        raise common.UsageError(str(exc)) from None
    secrets = _passwords(settings.broker_url, settings.result_backend or "")
    app = create_app("ably-bridge-inspect", settings, register=False)
    try:
        snap = take_snapshot(
            app,
            patterns=task_patterns(args.task, config),
            timeout=args.timeout,
            config=config,
            redact=lambda text: common.redact(text, secrets),
        )
    except Exception as exc:  # the broker is down or refuses us: say so, exit 1
        text = common.redact(f"{type(exc).__name__}: {exc}", secrets)
        print(f"{args.tool_parser.prog}: error: {text}", file=sys.stderr)
        return common.EXIT_ERROR
    finally:
        app.close()
    where = redact_url(settings.broker_url)
    if args.json:
        common.print_json({"broker": where, **snap.to_json()})
    else:
        _print(snap, where, sys.stdout)
    return common.EXIT_ERROR if snap.problems else common.EXIT_OK


def _config(path: str) -> BridgeConfig | None:
    from ably_bridge.bridge.config import ConfigError
    from ably_bridge.commands.deadletter_context import load_bridge_config

    try:
        return load_bridge_config(path)
    except ConfigError as err:
        print(f"{path}: {len(err.problems)} problem(s)", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _passwords(*urls: str) -> list[str]:
    from urllib.parse import urlsplit

    out = []
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password and len(password) >= 4:
            out.append(password)
    return out


def _table(rows: list[list[str]], out: TextIO, indent: str = "  ") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)] + [row[-1]]
        out.write(indent + "  ".join(cells).rstrip() + "\n")


def _when(eta: str | None, now: datetime) -> str:
    if not eta:
        return "-"
    try:
        moment = datetime.fromisoformat(eta)
    except ValueError:
        return eta
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - now).total_seconds()
    return f"in {seconds:.0f}s" if seconds >= 0 else f"{-seconds:.0f}s overdue"


def _print(snap: WorkersSnapshot, where: str, out: TextIO) -> None:
    out.write(f"workers on {where}: {len(snap.workers)}\n")
    if snap.workers:
        rows = [["WORKER", "QUEUES", "ACTIVE", "RESERVED", "SCHEDULED", "TASKS"]]
        for w in snap.workers:
            rows.append([w.name, ",".join(w.queues) or "-", str(w.active), str(w.reserved),
                         str(w.scheduled), str(len(w.registered))])  # fmt: skip
        _table(rows, out)
    out.write(f"tasks: {len(snap.tasks)}\n")
    if snap.tasks:
        now = datetime.now(tz=UTC)
        # Retry counts only come from a backend with result_extended; no column without.
        counted = any(t.retries is not None for t in snap.tasks)
        rows = [["STATE", "TASK", "ID", "WORKER", "NEXT", *(["RETRIES"] if counted else []),
                 "ERROR"]]  # fmt: skip
        for t in sorted(snap.tasks, key=lambda t: (t.state != "retrying", t.name, t.id)):
            nxt = _when(t.eta, now)
            if t.state == "running" and t.started:
                nxt = f"running {time.time() - t.started:.0f}s"
            retries = ["-" if t.retries is None else str(t.retries)] if counted else []
            rows.append([t.state, t.name, t.id, t.worker, nxt, *retries, t.error or ""])
        _table(rows, out)
    if snap.targets:
        out.write("bridge targets:\n")
        for check in snap.targets:
            verdict = f"ok ({len(check.workers)} worker(s))" if check.ok else "NO WORKER"
            out.write(
                f"  route {check.route}: task {check.task} on queue {check.queue}: {verdict}\n"
            )
    for problem in snap.problems:
        out.write(f"problem: {problem}\n")
