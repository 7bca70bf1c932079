"""The bridge's subcommands of ``ably-bridge``: ``check-config`` and ``run``.

This module owns their options and handlers; :func:`register` adds them to the
package CLI (:mod:`ably_bridge.cli`). ``run`` loads the configuration, sets up
logging, builds :class:`~ably_bridge.bridge.app.BridgeApp` and runs it until
SIGTERM/SIGINT (drain and stop); SIGHUP reloads the routes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ably_bridge.commands.common import Subparsers

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    """Add ``check-config`` and ``run`` to the package CLI's subcommands."""
    _add_check_config(subparsers)
    _add_run(subparsers)


def _add_check_config(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="validate a bridge configuration file without connecting anywhere",
        description=(
            "Read a bridge configuration (YAML or TOML) with the environment's overrides, "
            "and list every problem with the path of the offending field. Exit 0 when the "
            "file is valid, 1 when it is not."
        ),
    )
    parser.add_argument("config", help="path of the configuration file (.yaml, .yml or .toml)")
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON (for scripts)"
    )
    parser.set_defaults(handler=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    from ably_bridge.bridge.config import check_config

    problems = check_config(args.config)
    if args.json:
        print(json.dumps({"config": args.config, "valid": not problems, "problems": problems}))
    elif problems:
        print(f"{args.config}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    else:
        print(f"{args.config}: valid")
    return 1 if problems else 0


def _add_run(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the bridge daemon: Ably channels into Celery tasks and Redis Streams",
        description=(
            "Run the bridge until SIGTERM or SIGINT (then drain the buffers, flush checkpoints "
            "and exit 0). SIGHUP re-reads the routes from the configuration file and attaches "
            "or detaches only the channels that changed. Exit 1 on an invalid configuration."
        ),
    )
    parser.add_argument(
        "-c", "--config", required=True, help="configuration file (.yaml, .yml or .toml)"
    )
    parser.add_argument(
        "--health-port", type=int, default=None, help="override health.port (0: any free port)"
    )
    parser.add_argument(
        "--log-format", choices=("json", "text"), default=None, help="override log_format"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses
    import signal

    from ably_bridge.bridge.config import ConfigError, load_config
    from ably_bridge.bridge.jsonlog import configure_logging

    path = args.config
    try:
        config = load_config(path)
    except ConfigError as err:
        print(f"{path}: {len(err.problems)} problem(s)", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except Exception as exc:  # a validator bug: one line, redacted, not a traceback
        from ably_bridge.bridge.secret import redact_text

        reason = redact_text(f"{type(exc).__name__}: {exc}")
        print(f"{path}: could not be validated ({reason})", file=sys.stderr)
        return 1
    if args.health_port is not None:
        config = dataclasses.replace(
            config, health=dataclasses.replace(config.health, port=args.health_port)
        )
    configure_logging(
        config.log_level,
        fmt=args.log_format or config.log_format,
        payloads=config.log_payloads,
    )
    from ably_bridge.bridge.app import BridgeApp, tune_gc

    log = logging.getLogger(__name__)
    try:
        app = BridgeApp(config, reload_config=lambda: load_config(path))
    except Exception as exc:
        log.error("the bridge could not start: %s", exc)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: app.daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: app.daemon.request_stop())
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: app.daemon.request_reload())
    tune_gc()  # this process is the daemon
    app.run()
    return 0
