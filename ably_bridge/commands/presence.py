"""``ably-bridge presence``: list the members present on a channel now (REST).

Prints one member per line (``clientId``, ``connectionId``, action, data), or
with ``--json`` one JSON document ``{"channel", "count", "members": [...]}``.
``--client-id`` and ``--connection-id`` filter on the server.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ably_bridge.commands import common
from ably_bridge.rest.client import AblyRest

if TYPE_CHECKING:
    from ably_bridge.commands.common import Subparsers

__all__ = ["register", "run"]


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "presence",
        help="list the members present on a channel now (REST)",
        description=(
            "Print the current presence members of CHANNEL (every page). Exit 0 on success "
            "(also when nobody is present), 1 on an Ably or network error, 2 on bad usage."
        ),
    )
    parser.add_argument("channel", metavar="CHANNEL", help="channel name")
    parser.add_argument("--client-id", metavar="ID", help="only members with this clientId")
    parser.add_argument("--connection-id", metavar="ID", help="only members on this connection")
    common.add_cipher_argument(parser, "decrypt member data with")
    common.add_json_argument(parser, "the members")
    common.add_connection_arguments(parser)
    parser.set_defaults(handler=common.tool(run), tool_parser=parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """List the members; an empty channel is not an error."""
    connection = common.client_kwargs(args)
    with AblyRest(key=connection.key, **connection.options) as rest:
        channel = rest.channels.get(args.channel, cipher=common.cipher_key(args))
        members = list(
            channel.presence.get(
                limit=1000, client_id=args.client_id, connection_id=args.connection_id
            )
        )
    if args.json:
        common.print_json(
            {
                "channel": args.channel,
                "count": len(members),
                "members": [common.item_json(m) for m in members],
            }
        )
        return common.EXIT_OK
    for member in members:
        action = member.action.name.lower() if hasattr(member.action, "name") else "?"
        print(
            f"{member.client_id or '-'}\t{member.connection_id or '-'}\t{action}\t"
            f"{common.data_text(member.data)}"
        )
    print(f"{len(members)} member(s) present on {args.channel}")
    return common.EXIT_OK
