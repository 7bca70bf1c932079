"""The ``ably-bridge`` command line: the one home that collects every subcommand.

Each package registers its own subcommands with a ``register(subparsers)``
function, next to the code they run; this module only lists them, in the
order of ``--help``, and runs the one asked for:

* ``emulator`` - :mod:`ably_bridge.emulator.cli`: the local Ably emulator;
* ``dev`` - :mod:`ably_bridge.devstack.cli`: the local stack in one command;
* ``check-config``, ``run`` - :mod:`ably_bridge.bridge.cli`: validate a
  configuration; run the bridge daemon (SIGTERM/SIGINT: drain and stop;
  SIGHUP: reload routes);
* ``publish``, ``subscribe``, ``history``, ``presence``, ``stats``, ``token`` -
  :mod:`ably_bridge.commands`: operator tools over REST and realtime;
* ``deadletter`` - :mod:`ably_bridge.commands.deadletter`: list, show, replay
  and purge dead letters;
* ``workers`` - :mod:`ably_bridge.commands.workers`: the Celery workers and the
  retry state of the ``ably.*`` tasks;
* ``version`` - print the version (here).

Exit codes: 0 success, 1 runtime failure, 2 bad usage (argparse's own).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ably_bridge import __version__

__all__ = ["build_parser", "main", "run_command"]


def _registrars() -> list[Callable[[Any], Any]]:
    """Every package's ``register``, in the order of ``--help``."""
    from ably_bridge import commands
    from ably_bridge.bridge import cli as bridge_cli
    from ably_bridge.commands import deadletter, workers
    from ably_bridge.devstack import cli as dev_cli
    from ably_bridge.emulator import cli as emulator_cli

    return [
        emulator_cli.register,
        dev_cli.register,
        bridge_cli.register,
        commands.register,
        deadletter.register,
        workers.register,
        _register_version,
    ]


def _register_version(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    version = subparsers.add_parser("version", help="print the version and exit")
    version.set_defaults(handler=lambda _args: _print_version())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ably-bridge",
        description="Ably client tools, bridge daemon and local emulator.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars():
        register(subparsers)
    return parser


def _print_version() -> int:
    print(f"ably-bridge {__version__}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv``, set up logging at ``--log-level`` and run the subcommand's handler.

    Log records go through the redacting formatter, whatever logs them. No
    subcommand: the help on stderr and exit 2.
    """
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
