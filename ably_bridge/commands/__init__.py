"""Operator tools of ``ably-bridge``: publish, subscribe, history, presence, stats, token.

One module per tool, each with ``register(subparsers)`` (adds its subcommand,
with ``handler`` set to a function ``args -> exit code``) and ``run(args)``;
:mod:`ably_bridge.commands.common` holds the shared connection options and
error handling. :func:`register` adds them all to a parser's subcommands
(``ably_bridge.cli`` calls it); :func:`main` runs them on their own, which is
what ``python -m ably_bridge.commands`` does.

Exit codes, for every tool: 0 success, 1 an Ably, network or file error
(``error <code>: <message>`` on stderr, with ``(HTTP <status>)`` after the code
for a 4xx answer, secrets redacted),
2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ably_bridge.commands import history, presence, publish, stats, subscribe, token

if TYPE_CHECKING:
    from ably_bridge.commands.common import Subparsers

__all__ = ["TOOLS", "build_parser", "main", "register"]

# Subcommand name -> module; the order is the order of ``--help``.
TOOLS = {
    "publish": publish,
    "subscribe": subscribe,
    "history": history,
    "presence": presence,
    "stats": stats,
    "token": token,
}


def register(subparsers: Subparsers) -> None:
    """Add every tool's subcommand to ``subparsers`` (from ``add_subparsers``)."""
    for module in TOOLS.values():
        module.register(subparsers)


def build_parser(prog: str = "ably-bridge") -> argparse.ArgumentParser:
    """A parser with only the tools (the package CLI adds them beside its own commands)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Ably operator tools: publish, tail, export, inspect, mint tokens."
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="library logging level (default: WARNING)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one tool with ``argv``; returns the exit code (argparse exits 2 on bad usage)."""
    from ably_bridge.cli import run_command

    return run_command(build_parser(), argv)
