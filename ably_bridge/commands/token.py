"""``ably-bridge token``: mint a token, or sign a TokenRequest, with the API key.

Without ``--request`` it asks Ably for a token (REST ``requestToken``) and
prints its details: the token itself (a bearer credential, which is what was
asked for), expiry, clientId and capability; ``--json`` prints Ably's
TokenDetails JSON. With ``--request`` it signs a TokenRequest locally (no
network) and prints it as JSON, ready for a browser client's ``authCallback``.
The API key itself is never printed.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ably_bridge.commands import common
from ably_bridge.protocol.tokens import TokenParams
from ably_bridge.rest.client import AblyRest

if TYPE_CHECKING:
    from ably_bridge.commands.common import Subparsers

__all__ = ["register", "run"]


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "token",
        help="mint a token, or sign a TokenRequest for a browser client",
        description=(
            "Request a token from Ably with the API key and print it (--json: TokenDetails), "
            "or with --request sign a TokenRequest locally and print it as JSON. Exit 0 on "
            "success, 1 on an Ably or network error, 2 on bad usage."
        ),
    )
    parser.add_argument(
        "--client-id", metavar="ID", help="clientId bound to the token ('*' for any)"
    )
    parser.add_argument(
        "--capability",
        type=_capability,
        metavar="JSON",
        help='capability as JSON, e.g. \'{"chat:*":["subscribe","presence"]}\' '
        "(default: the key's)",
    )
    parser.add_argument(
        "--ttl",
        type=common.duration,
        metavar="S",
        help="lifetime: seconds or 30m, 2h, 1d (default: Ably's, 1 hour)",
    )
    parser.add_argument(
        "--request",
        action="store_true",
        help="print a signed TokenRequest (JSON) instead of requesting a token",
    )
    common.add_json_argument(parser, "the token details")
    common.add_connection_arguments(parser)
    parser.set_defaults(handler=common.tool(run), tool_parser=parser)
    return parser


def _capability(text: str) -> dict[str, list[str]]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a JSON object") from None
    ok = isinstance(value, dict) and all(
        isinstance(ops, list) and all(isinstance(op, str) for op in ops) for ops in value.values()
    )
    if not ok:
        raise argparse.ArgumentTypeError(
            'must map resources to lists of operations, e.g. {"chat:*":["subscribe"]}'
        )
    return dict(value)


def run(args: argparse.Namespace) -> int:
    """Print a token's details, or a signed TokenRequest."""
    connection = common.client_kwargs(args)
    params = TokenParams(ttl=args.ttl, capability=args.capability, client_id=args.client_id)
    with AblyRest(key=connection.key, **connection.options) as rest:
        if args.request:
            request = rest.auth.create_token_request(params)
            common.print_json(request.to_dict())
            return common.EXIT_OK
        details = rest.auth.request_token(params)
    if args.json:
        common.print_json(details.to_dict())
        return common.EXIT_OK
    rows: list[tuple[str, Any]] = [
        ("token", details.token),
        ("issued", common.iso_ms(details.issued)),
        ("expires", common.iso_ms(details.expires)),
        ("client id", details.client_id or "-"),
        ("capability", details.capability or "-"),
    ]
    for label, value in rows:
        print(f"{label + ':':12}{value}")
    return common.EXIT_OK
