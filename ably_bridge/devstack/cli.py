"""``ably-bridge dev``: its subcommand, options and handler (:func:`register` adds it to the
package CLI, :mod:`ably_bridge.cli`)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ably_bridge.bridge.secret import url_has_password

__all__ = ["add_arguments", "register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dev`` to the package CLI's subcommands."""
    parser = subparsers.add_parser(
        "dev",
        help="run the local stack: emulator, bridge, Celery worker, demo publisher",
        description=(
            "Start the local stack on 127.0.0.1: Redis ($REDIS_URL, or a redis-server from "
            "PATH on a free port), the Ably emulator with a development app (its key is "
            "printed), the bridge routing chat:* into a Redis Stream and a Celery task, a "
            "Celery worker running that task, and a demo publisher; print a summary of what "
            "flows where until Ctrl-C, SIGTERM or --duration, then stop everything. Exit 0 "
            "after a clean stop, 1 when something could not start or died."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("must be a finite number greater than 0")
    return value


def _url_without_credential(text: str) -> str:
    """A Redis URL for the command line: refused when it holds a password (``ps`` shows it)."""
    if url_has_password(text):
        raise argparse.ArgumentTypeError(
            "holds a password, and a command line is visible to every user in ps; "
            "set REDIS_URL in the environment or use --redis-url-file FILE instead"
        )
    return text


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 0..65535")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=_port,
        default=8080,
        help="port of the emulator on 127.0.0.1 (default 8080; 0 = any free port)",
    )
    redis = parser.add_mutually_exclusive_group()
    redis.add_argument(
        "--redis-url",
        metavar="URL",
        type=_url_without_credential,
        help="a Redis to use (default: $REDIS_URL; else a redis-server from PATH is started "
        "on a free port). Its data is not touched: the run's keys have their own prefix and "
        "are deleted on exit; the Celery broker uses the next database number. On a Redis "
        "Cluster (redis+cluster://host:port[,host:port...]) the streams, checkpoints, leases "
        "and the worker's de-duplication marks go to the cluster, and a redis-server from "
        "PATH is started for the Celery broker only (kombu has no cluster transport). A URL "
        "with a password is refused here (ps shows command lines): use REDIS_URL or "
        "--redis-url-file",
    )
    redis.add_argument(
        "--redis-url-file",
        metavar="FILE",
        type=Path,
        help="a file holding the Redis URL (for a URL with a password)",
    )
    parser.add_argument(
        "--no-publisher",
        dest="publisher",
        action="store_false",
        help="do not run the demo publisher (a chat:lobby message a second)",
    )
    parser.add_argument(
        "--duration",
        type=_positive,
        metavar="SECONDS",
        help="stop after this many seconds of running (default: until Ctrl-C or SIGTERM)",
    )
    parser.add_argument(
        "--summary-interval",
        type=_positive,
        default=2.0,
        metavar="S",
        help="seconds between summary lines (default 2)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object a line (started, summary, stopped) for scripts",
    )
    parser.add_argument(
        "--handler",
        dest="user_handler",  # ``handler`` is the subcommand's own function (register)
        metavar="MODULE:FUNCTION",
        help="your function, called by the dev worker with each bridged chat:* event "
        "(a workers.consumers.BridgedEvent); what it prints, returns or raises is shown here. "
        "MODULE is imported from the current directory (or give FILE.py:FUNCTION)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=Path(".ably-dev.env"),
        metavar="PATH",
        help="where to write the run's client variables (ABLY_KEY, ABLY_PORT, CELERY_BROKER_URL"
        "...) for `set -a; . PATH; set +a`; removed on exit (default ./.ably-dev.env)",
    )
    parser.add_argument(
        "--no-env-file",
        dest="env_file",
        action="store_const",
        const=None,
        help="do not write the env file",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        metavar="DIR",
        help="where the children's logs and the bridge config go (default: a new temp dir)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        from ably_bridge.devstack.stack import DevOptions, run_dev
    except ImportError as exc:  # installed without the extras the stack runs on
        print(
            f"ably-bridge dev: {exc}; install the bridge and emulator extras: "
            "pip install 'ably-bridge[bridge,emulator]'",
            file=sys.stderr,
        )
        return 1

    redis_url = args.redis_url
    if args.redis_url_file is not None:
        redis_url = _read_url_file(args.redis_url_file)
        if redis_url is None:
            return 1
    options = DevOptions(
        port=args.port,
        redis_url=redis_url,
        publisher=args.publisher,
        duration=args.duration,
        summary_interval=args.summary_interval,
        json=args.json,
        log_dir=args.log_dir,
        handler=args.user_handler,
        env_file=args.env_file,
    )
    return run_dev(options)


def _read_url_file(path: Path) -> str | None:
    """The URL in ``path`` (first line); None, with the reason on stderr, if unreadable."""
    try:
        with path.open("rb") as fh:
            data = fh.read(65_537)
        text = data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        print(f"ably-bridge dev: cannot read --redis-url-file {path}: {reason}", file=sys.stderr)
        return None
    if not text or len(data) > 65_536:
        print(f"ably-bridge dev: --redis-url-file {path} holds no URL", file=sys.stderr)
        return None
    return text.splitlines()[0].strip()
