"""The ``ably-bridge`` command line: wiring only, the logic lives in the packages.

Subcommands:

* ``emulator`` - run the local Ably emulator (REST + realtime on one port).
* ``dev`` - the local stack in one command: Redis, the emulator, the bridge, a
  Celery worker and a demo publisher, with a live summary (:mod:`ably_bridge.devstack`).
* ``check-config`` - validate a bridge configuration file without connecting.
* ``run`` - run the bridge daemon (SIGTERM/SIGINT: drain and stop; SIGHUP: reload routes).
* ``publish``, ``subscribe``, ``history``, ``presence``, ``stats``, ``token`` -
  operator tools over REST and realtime (:mod:`ably_bridge.commands`).
* ``deadletter`` - list, show, replay and purge dead letters
  (:mod:`ably_bridge.commands.deadletter`).
* ``workers`` - the Celery workers and the retry state of the ``ably.*`` tasks
  (:mod:`ably_bridge.commands.workers`).
* ``version`` - print the version.

Exit codes: 0 success, 1 runtime failure, 2 bad usage (argparse's own).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from ably_bridge import __version__

__all__ = ["build_parser", "main"]


def _add_emulator(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ably_bridge.emulator import cli as emulator_cli

    parser = subparsers.add_parser(
        "emulator",
        help="run the local Ably emulator (REST + realtime on one port)",
        description="Run a local, protocol-compatible Ably server for development and tests.",
    )
    emulator_cli.add_arguments(parser)
    parser.set_defaults(handler=emulator_cli.run)


def _add_dev(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ably_bridge.devstack import cli as dev_cli

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
    dev_cli.add_arguments(parser)
    parser.set_defaults(handler=dev_cli.run)


def _add_check_config(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_run(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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

    log = logging.getLogger("ably_bridge.cli")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ably-bridge",
        description="Ably client tools, bridge daemon and local emulator.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_emulator(subparsers)
    _add_dev(subparsers)
    _add_check_config(subparsers)
    _add_run(subparsers)
    from ably_bridge.commands import register as register_tools

    register_tools(subparsers)
    from ably_bridge.commands import deadletter, workers

    deadletter.register(subparsers)
    workers.register(subparsers)
    version = subparsers.add_parser("version", help="print the version and exit")
    version.set_defaults(handler=lambda _args: _print_version())
    return parser


def _print_version() -> int:
    print(f"ably-bridge {__version__}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    from ably_bridge.bridge.jsonlog import TextFormatter

    stream = logging.StreamHandler()
    stream.setFormatter(TextFormatter())  # credentials redacted, whatever logs them
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO), handlers=[stream]
    )
    result = handler(args)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
