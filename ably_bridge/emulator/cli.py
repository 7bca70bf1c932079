"""Command line of ``ably-bridge emulator``: arguments and the foreground run loop.

``register`` adds the subcommand to the package CLI (:mod:`ably_bridge.cli`);
``add_arguments`` fills a parser (``python -m ably_bridge.emulator`` uses it
too); ``run`` starts the server, prints the endpoint and the dev root
key (the one place a secret is printed, on purpose), optionally writes the
keys as JSON (mode 0600), warns when bound beyond loopback, and serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ably_bridge.emulator.config import EmulatorConfig
from ably_bridge.emulator.server import Emulator

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``emulator`` to the package CLI's subcommands."""
    parser = subparsers.add_parser(
        "emulator",
        help="run the local Ably emulator (REST + realtime on one port)",
        description="Run a local, protocol-compatible Ably server for development and tests.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 = any)")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS/WSS, self-signed")
    parser.add_argument("--cert-dir", type=Path, help="where --tls writes its certificate")
    parser.add_argument("--app-config", type=Path, help="JSON app in the POST /apps shape")
    parser.add_argument("--keys-file", type=Path, help="write the app's keys here as JSON")
    parser.add_argument(
        "--require-tls-for-basic",
        action="store_true",
        help="refuse Basic auth over plain HTTP with 40103, as Ably does",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed besides loopback pages (repeatable; 'null' for file: pages)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (0600), also over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app_body: dict[str, Any] | None = None
    if args.app_config is not None:
        try:
            app_body = json.loads(Path(args.app_config).read_text())
        except (OSError, ValueError) as exc:
            print(f"cannot read --app-config: {exc}", file=sys.stderr)
            return 2
        if isinstance(app_body, dict) and isinstance(app_body.get("post_apps"), dict):
            app_body = app_body["post_apps"]
    config = EmulatorConfig(
        default_app=app_body,
        require_tls_for_basic=bool(args.require_tls_for_basic),
        allowed_origins=tuple(args.allow_origin),
    )
    emulator = Emulator(args.host, args.port, config=config, tls=args.tls, cert_dir=args.cert_dir)
    try:
        emulator.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"Ably emulator listening on {emulator.url} (realtime {emulator.ws_url}/)")
    print(f"app id:   {emulator.app_id}")
    print(f"root key: {emulator.root_key}")
    if emulator.ca_file is not None:
        print(f"CA file:  {emulator.ca_file}")
    if args.keys_file is not None:
        payload = {"appId": emulator.app_id, "endpoint": emulator.url, "keys": emulator.keys}
        write_private(args.keys_file, json.dumps(payload, indent=2))
        print(f"keys written to {args.keys_file}")
    sys.stdout.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0
