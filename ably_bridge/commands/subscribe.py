"""``ably-bridge subscribe``: tail a channel over realtime.

Connects, attaches ``CHANNEL`` and prints every message (``--name`` filters by
name, repeatable) and, with ``--presence``, every presence event, one line
each; ``--json`` makes each line a JSON object with a ``type`` of ``message``
or ``presence``. Diagnostics (attached, connection trouble) go to stderr.

Stops with exit 0 after ``--count`` events, when ``--timeout`` passes without
``--count``, or on SIGINT/SIGTERM; exit 1 when ``--timeout`` passes before
``--count`` events came, or when the connection or channel fails.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ably_bridge.commands import common
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.models import Message, PresenceMessage
from ably_bridge.realtime import AblyRealtime, ChannelState, ConnectionState

if TYPE_CHECKING:
    from ably_bridge.commands.common import Subparsers
    from ably_bridge.realtime import ChannelStateChange, ConnectionStateChange

__all__ = ["register", "run"]


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "subscribe",
        help="tail a channel: print its messages (and presence) as they arrive (realtime)",
        description=(
            "Attach to CHANNEL over a realtime connection and print each message as it "
            "arrives, one per line, until interrupted. Exit 0 after --count events, after "
            "--timeout without --count, or on Ctrl-C/SIGTERM; exit 1 when --timeout passes "
            "before --count events or the connection or channel fails; 2 on bad usage."
        ),
    )
    parser.add_argument("channel", metavar="CHANNEL", help="channel name")
    parser.add_argument(
        "--name",
        dest="names",
        action="append",
        metavar="N",
        help="only messages with this name (repeat for several)",
    )
    parser.add_argument(
        "--presence", action="store_true", help="also print presence events (enter/update/leave)"
    )
    parser.add_argument(
        "--count", type=common.positive_int, metavar="N", help="exit 0 after N events"
    )
    parser.add_argument(
        "--timeout",
        type=common.duration,
        metavar="S",
        help="stop after S seconds (30, 30s, 5m); exit 1 if --count events did not come",
    )
    parser.add_argument(
        "--connect-timeout",
        type=common.duration,
        default=15.0,
        metavar="S",
        help="seconds to wait for the connection and the attach (default 15)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no diagnostics on stderr (errors still)"
    )
    common.add_cipher_argument(parser, "decrypt the messages with")
    common.add_json_argument(parser, "one JSON object per event")
    common.add_connection_arguments(parser)
    parser.set_defaults(handler=common.tool(run), tool_parser=parser)
    return parser


_END = object()  # wakes pump() when the tail stops


class _Tail:
    """Prints events until ``count`` of them, an error, or ``stop()``; thread-safe.

    Messages and presence events are queued by inline listeners, on the thread
    that read them, into one queue: so they print in the order the channel
    delivered them, which two pool listeners would not keep. The main thread
    prints them (:meth:`pump`), so a slow stdout never holds up the reading.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.count = 0
        self.error: AblyException | None = None
        self.done = threading.Event()
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()

    def stop(self, error: AblyException | None = None) -> None:
        with self._lock:
            if error is not None and self.error is None and not self.done.is_set():
                self.error = error
            self.done.set()
        self.events.put(_END)

    def interrupt(self) -> None:
        """Stop from a signal handler: no lock (the main thread may hold it while printing)."""
        self.done.set()
        self.events.put(_END)

    def on_message(self, message: Message) -> None:
        self.events.put((self.message, message))  # inline: only queue

    def on_presence(self, member: PresenceMessage) -> None:
        self.events.put((self.presence, member))  # inline: only queue

    def pump(self, timeout: float | None) -> bool:
        """Print queued events until done (True) or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                item = self.events.get(timeout=remaining)
            except queue.Empty:
                return False
            if item is _END:
                break
            show, event = item
            show(event)
        return True

    def message(self, message: Message) -> None:
        if self.args.json:
            line = {"type": "message", "channel": self.args.channel, **common.item_json(message)}
            self._emit(line, None)
        else:
            who = f" [{message.client_id}]" if message.client_id else ""
            text = f"{common.iso_ms(message.timestamp)} {message.name or '-'}{who} "
            self._emit(None, text + common.data_text(message.data))

    def presence(self, member: PresenceMessage) -> None:
        if self.args.json:
            line = {"type": "presence", "channel": self.args.channel, **common.item_json(member)}
            self._emit(line, None)
        else:
            action = member.action.name.lower() if hasattr(member.action, "name") else "?"
            text = f"{common.iso_ms(member.timestamp)} presence {action} {member.client_id} "
            self._emit(None, text + common.data_text(member.data))

    def _emit(self, document: dict[str, Any] | None, text: str | None) -> None:
        with self._lock:
            if self.done.is_set():
                return
            if document is not None:
                common.print_json(document)
            else:
                print(text, flush=True)
            self.count += 1
            if self.args.count is not None and self.count >= self.args.count:
                self.done.set()

    def note(self, text: str) -> None:
        if not self.args.quiet:
            print(f"{self.args.tool_parser.prog}: {text}", file=sys.stderr, flush=True)


@contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM (and SIGINT) stop the tail cleanly; only the main thread can install them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """Tail the channel until --count, --timeout, a signal or a failure."""
    connection = common.client_kwargs(args)
    tail = _Tail(args)
    wait = args.connect_timeout

    interrupted = threading.Event()

    def on_connection(change: ConnectionStateChange) -> None:
        if change.current == ConnectionState.FAILED:
            tail.stop(change.reason or _failure("the connection failed"))
        elif change.current in (ConnectionState.DISCONNECTED, ConnectionState.SUSPENDED):
            interrupted.set()
            reason = f": {change.reason.message}" if change.reason else ""
            tail.note(f"connection {change.current.value}{reason}; retrying")
        elif change.current == ConnectionState.CONNECTED and interrupted.is_set():
            interrupted.clear()
            tail.note("connection restored")

    def on_channel(change: ChannelStateChange) -> None:
        if change.current == ChannelState.FAILED:
            tail.stop(change.reason or _failure(f"channel {args.channel} failed"))
        elif change.current == ChannelState.ATTACHED and not change.resumed:
            tail.note("channel re-attached without continuity: events may have been missed")

    client = AblyRealtime(key=connection.key, auto_connect=False, **connection.options)
    with _stop_on_signals(tail.interrupt):
        try:
            client.connection.on(on_connection)
            client.connect(timeout=wait)
            channel = client.channels.get(args.channel, cipher=common.cipher_key(args))
            if args.names:
                channel.subscribe(list(args.names), tail.on_message, attach=False, inline=True)
            else:
                channel.subscribe(tail.on_message, attach=False, inline=True)
            if args.presence:
                channel.presence.subscribe(tail.on_presence, attach=False, inline=True)
            channel.attach(timeout=wait)
            channel.on(on_channel)
            tail.note(f"attached to {args.channel}")
            finished = tail.pump(args.timeout)
        except KeyboardInterrupt:
            finished = True
        finally:
            tail.stop()
            client.close(timeout=5.0)
    if tail.error is not None:
        raise tail.error
    if not finished and args.count is not None:
        raise AblyException(
            f"timed out after {args.timeout:g}s with {tail.count} of {args.count} events",
            ErrorCode.TIMEOUT_ERROR,
            500,
        )
    return common.EXIT_OK


def _failure(text: str) -> AblyException:
    return AblyException(text, ErrorCode.CONNECTION_FAILED, 400)
