"""``ably-bridge publish``: publish one message over REST.

``publish CHANNEL NAME DATA`` sends DATA as text; ``--json-data`` sends it as
a JSON object or array; ``--encoding ENC`` says DATA is already encoded that
way (e.g. ``--encoding base64`` to publish binary data given as base64);
``DATA`` of ``-`` reads standard input. The message id is fixed before the
request (``--id`` or a random idempotent id), so the REST client's retries
publish it once, and it is printed so that a script can find the message again.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ably_bridge.commands import common
from ably_bridge.protocol.models import Message
from ably_bridge.rest.channels import idempotent_base
from ably_bridge.rest.client import AblyRest

if TYPE_CHECKING:
    from ably_bridge.commands.common import Subparsers

__all__ = ["register", "run"]


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "publish",
        help="publish one message to a channel (REST)",
        description=(
            "Publish one message to CHANNEL over REST and print its id. The id is chosen "
            "before sending, so retries publish it exactly once. Exit 0 when Ably accepted "
            "the message, 1 on an Ably or network error, 2 on bad usage."
        ),
    )
    parser.add_argument("channel", metavar="CHANNEL", help="channel name")
    parser.add_argument("name", metavar="NAME", help="message name (event); '' for none")
    parser.add_argument(
        "data", metavar="DATA", help="message data: text, or '-' to read it from stdin"
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--json-data",
        action="store_true",
        help="DATA is a JSON object or array, sent as JSON (subscribers get it decoded)",
    )
    kind.add_argument(
        "--encoding",
        metavar="ENC",
        help="DATA is already encoded with ENC (e.g. base64, json, utf-8/base64) and is "
        "sent unchanged with this encoding, which subscribers undo",
    )
    parser.add_argument(
        "--client-id", metavar="ID", help="clientId of the message (needs a key allowing it)"
    )
    parser.add_argument(
        "--id", dest="message_id", metavar="ID", help="message id (default: a random one)"
    )
    common.add_cipher_argument(parser, "encrypt the message with")
    common.add_json_argument(parser, "the result")
    common.add_connection_arguments(parser)
    parser.set_defaults(handler=common.tool(run), tool_parser=parser)
    return parser


def _data(args: argparse.Namespace) -> Any:
    text: str = sys.stdin.read() if args.data == "-" else args.data
    if args.data == "-" and not args.json_data and not args.encoding:
        text = text.removesuffix("\n")
    if not args.json_data:
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise common.UsageError(f"--json-data: DATA is not JSON ({exc.msg})") from None
    if not isinstance(value, (dict, list)):
        raise common.UsageError("--json-data: DATA must be a JSON object or array")
    return value


def run(args: argparse.Namespace) -> int:
    """Publish one message; print its id (and serial, when Ably returns one)."""
    connection = common.client_kwargs(args)
    data = _data(args)
    message_id = args.message_id or f"{idempotent_base()}:0"
    message = Message(
        args.name or None,
        data,
        id=message_id,
        client_id=args.client_id,
        encoding=args.encoding,
    )
    with AblyRest(key=connection.key, **connection.options) as rest:
        channel = rest.channels.get(args.channel, cipher=common.cipher_key(args))
        result = channel.publish(message)
    serial = result.serials[0] if result.serials else None
    if args.json:
        common.print_json(
            {"channel": args.channel, "name": message.name, "id": message_id, "serial": serial}
        )
    else:
        print(f"published {message.name or '(no name)'} to {args.channel}: id {message_id}")
    return common.EXIT_OK
