"""A Redis Streams consumer-group runner for the streams the bridge writes, with a CLI.

This module owns :class:`StreamConsumer`, its :class:`StreamConfig`, the
:class:`StreamEntry` handed to handlers, and :func:`main`
(``python -m workers.streams``). Delivery is at-least-once:

* new entries are read with ``XREADGROUP`` (``>``) and acknowledged with
  ``XACK`` only after the handler returned;
* entries left pending longer than ``min_idle`` - by a consumer that crashed
  or whose handler failed - are taken over with ``XAUTOCLAIM`` and handled again
  (``XAUTOCLAIM`` counts each take-over as a delivery);
* an entry whose handler has failed on its ``max_deliveries``-th delivery (or
  that comes back after that many deliveries, e.g. because it crashes its
  consumer) is written to the dead-letter stream and acknowledged, in one
  ``MULTI``; the dead letter has the bridge's dead-letter fields (``reason``,
  ``code``, ``error``, ``route``, ``channel``, ``source``, ``event_id``,
  ``time``, ``event``) plus ``stream``, ``group``, ``consumer``, ``entry_id``
  and ``deliveries``.

On a Redis Cluster (``redis+cluster://``) the streams may live on different
nodes: each read names the streams of one hash slot, and a dead letter in
another slot than its stream is written, then acknowledged (no ``MULTI`` spans
two slots; a crash between the two dead-letters the entry twice).

Entries may use either bridge layout (an ``envelope`` JSON field, or flat
fields); :attr:`StreamEntry.envelope` and :attr:`StreamEntry.events` decode both.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import redis
from redis.crc import key_slot

from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.bridge.redis_keys import is_cluster_client
from workers.consumers import BridgedEvent, decode_envelope, envelope_from_fields

__all__ = ["StreamConfig", "StreamConsumer", "StreamEntry", "main"]

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_DEAD_LETTER_MAXLEN = 100_000
_MAX_ERROR_TEXT = 1000


def _default_consumer() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    """What to consume and how. Durations are seconds."""

    streams: Sequence[str]
    group: str = "ably-workers"
    consumer: str = field(default_factory=_default_consumer)
    batch_size: int = 10
    block: float = 2.0
    min_idle: float = 60.0
    max_deliveries: int = 5
    dead_letter: str | None = None  # default: "<stream>:dead"
    create_group: bool = True
    start_id: str = "0"  # where a new group starts: "0" everything, "$" new entries only

    def __post_init__(self) -> None:
        if not self.streams:
            raise ValueError("at least one stream is needed")
        if self.batch_size < 1 or self.max_deliveries < 1:
            raise ValueError("batch_size and max_deliveries must be positive")
        if self.block < 0 or self.min_idle < 0:
            raise ValueError("block and min_idle must not be negative")

    def dead_letter_stream(self, stream: str) -> str:
        return self.dead_letter or f"{stream}:dead"


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class StreamEntry:
    """One stream entry as a handler sees it; ``deliveries`` counts this one."""

    stream: str
    entry_id: str
    fields: dict[str, str]
    deliveries: int = 1

    @cached_property
    def envelope(self) -> dict[str, Any]:
        """The bridged envelope (either stream layout)."""
        return envelope_from_fields(self.fields)

    @property
    def events(self) -> list[BridgedEvent]:
        return decode_envelope(self.envelope)


Handler = Callable[[StreamEntry], Any]


class StreamConsumer:
    """Consumes streams in a consumer group; see the module docstring for the guarantees."""

    def __init__(self, client: redis.Redis, handler: Handler, config: StreamConfig) -> None:
        self.client = client
        self.handler = handler
        self.config = config
        self._stop = threading.Event()
        self._claim_from = dict.fromkeys(config.streams, "0-0")
        self._cluster = is_cluster_client(client)
        self._reads = _slot_groups(config.streams) if self._cluster else [tuple(config.streams)]
        self._groups_ready = False
        self.handled = 0
        self.dead_lettered = 0

    # -- lifecycle -------------------------------------------------------------------
    def ensure_groups(self) -> None:
        """Create the consumer group on each stream (and the stream) if missing."""
        for stream in self.config.streams:
            try:
                self.client.xgroup_create(
                    stream, self.config.group, id=self.config.start_id, mkstream=True
                )
                log.info("created consumer group %s on %s", self.config.group, stream)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._groups_ready = True

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current cycle."""
        self._stop.set()

    def run(self) -> None:
        """Consume until :meth:`stop`; Redis outages are logged and retried."""
        log.info(
            "consumer %s of group %s on %s",
            self.config.consumer,
            self.config.group,
            ", ".join(self.config.streams),
        )
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.run_once()
                delay = 0.5
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", type(exc).__name__, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def run_once(self, block: float | None = None) -> int:
        """One cycle: take over stale entries, then read new ones; the entries handled."""
        if not self._groups_ready and self.config.create_group:
            self.ensure_groups()
        done = 0
        for stream in self.config.streams:
            for entry in self._claim(stream):
                done += self._process(entry)
        wait = self.config.block if block is None else block
        for entry in self._read(0.0 if done else wait):
            done += self._process(entry)
        return done

    # -- reading -----------------------------------------------------------------------
    def _read(self, block: float) -> list[StreamEntry]:
        """New entries; on a cluster one ``XREADGROUP`` per slot, sharing the block time
        (a read names keys of one slot), and no more waiting once one returned entries."""
        if self._stop.is_set():
            return []
        share = block / len(self._reads)
        entries: list[StreamEntry] = []
        for streams in self._reads:
            entries += self._read_streams(streams, 0.0 if entries else share)
        return entries

    def _read_streams(self, streams: Sequence[str], block: float) -> list[StreamEntry]:
        reply: Any = self.client.xreadgroup(
            self.config.group,
            self.config.consumer,
            dict.fromkeys(streams, ">"),
            count=self.config.batch_size,
            block=max(1, int(block * 1000)) if block > 0 else None,
        )
        entries = []
        for stream, items in reply or []:
            for entry_id, fields in items:
                if fields is None:
                    continue
                entries.append(StreamEntry(_text(stream), _text(entry_id), _decode(fields), 1))
        return entries

    def _claim(self, stream: str) -> list[StreamEntry]:
        reply: Any = self.client.xautoclaim(
            stream,
            self.config.group,
            self.config.consumer,
            int(self.config.min_idle * 1000),
            start_id=self._claim_from[stream],
            count=self.config.batch_size,
        )
        next_id, claimed = _text(reply[0]), reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        self._claim_from[stream] = next_id
        if deleted:
            # Trimmed from the stream while pending: nothing left to handle.
            self.client.xack(stream, self.config.group, *deleted)
        live = [(_text(i), f) for i, f in claimed if f is not None]
        if not live:
            return []
        counts = self._deliveries(stream, live[0][0], live[-1][0], len(live))
        entries = [
            StreamEntry(stream, entry_id, _decode(fields), counts.get(entry_id, 1))
            for entry_id, fields in live
        ]
        log.info("took over %d stale entr(y/ies) of %s", len(entries), stream)
        return entries

    def _deliveries(self, stream: str, first: str, last: str, count: int) -> dict[str, int]:
        rows = self.client.xpending_range(
            stream,
            self.config.group,
            min=first,
            max=last,
            count=max(count, self.config.batch_size) * 4,
            consumername=self.config.consumer,
        )
        return {_text(row["message_id"]): int(row["times_delivered"]) for row in rows}

    # -- handling ----------------------------------------------------------------------
    def _process(self, entry: StreamEntry) -> int:
        limit = self.config.max_deliveries
        if entry.deliveries > limit:
            self._dead_letter(entry, None, f"delivered {entry.deliveries} times, limit {limit}")
            return 0
        try:
            self.handler(entry)
        except Exception as exc:
            log.warning(
                "handler failed on %s %s (delivery %d of %d): %s",
                entry.stream,
                entry.entry_id,
                entry.deliveries,
                limit,
                type(exc).__name__,
            )
            if entry.deliveries >= limit:
                self._dead_letter(entry, exc, "")
            return 0
        self.client.xack(entry.stream, self.config.group, entry.entry_id)
        self.handled += 1
        return 1

    def _dead_letter(self, entry: StreamEntry, exc: BaseException | None, note: str) -> None:
        target = self.config.dead_letter_stream(entry.stream)
        fields = self._dead_letter_fields(entry, exc, note)
        if self._cluster and key_slot(target.encode()) != key_slot(entry.stream.encode()):
            # Two slots, no MULTI: written first, acknowledged after. A crash between
            # the two leaves the entry pending; it comes back and is dead-lettered again.
            self.client.xadd(target, fields, maxlen=_DEAD_LETTER_MAXLEN, approximate=True)  # type: ignore[arg-type]
            self.client.xack(entry.stream, self.config.group, entry.entry_id)
        else:
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(target, fields, maxlen=_DEAD_LETTER_MAXLEN, approximate=True)  # type: ignore[arg-type]
            pipe.xack(entry.stream, self.config.group, entry.entry_id)
            pipe.execute()
        self.dead_lettered += 1
        log.error(
            "dead-lettered %s %s to %s after %d deliveries",
            entry.stream,
            entry.entry_id,
            target,
            entry.deliveries,
        )

    def _dead_letter_fields(
        self, entry: StreamEntry, exc: BaseException | None, note: str
    ) -> dict[str, str]:
        try:
            envelope: dict[str, Any] | None = entry.envelope
        except Exception:  # an undecodable entry is dead-lettered as it is
            envelope = None
        source = channel = route = event_id = ""
        if envelope is not None:
            source = str(envelope.get("source") or "")
            channel = str(envelope.get("channel") or "")
            route = str(envelope.get("ruleId") or "")
            items = envelope.get("messages") or envelope.get("presence") or []
            if items and isinstance(items[0], Mapping):
                event_id = str(items[0].get("id") or "")
        error = note if exc is None else f"{type(exc).__name__}: {exc}"
        return {
            "reason": "retries_exhausted",
            "code": str(getattr(exc, "code", 0) or 0),
            "error": error[:_MAX_ERROR_TEXT],
            "route": route,
            "channel": channel,
            "source": source,
            "event_id": event_id,
            "time": str(int(time.time() * 1000)),
            "event": json.dumps(envelope if envelope is not None else entry.fields),
            "stream": entry.stream,
            "group": self.config.group,
            "consumer": self.config.consumer,
            "entry_id": entry.entry_id,
            "deliveries": str(entry.deliveries),
        }


def _slot_groups(streams: Sequence[str]) -> list[tuple[str, ...]]:
    """``streams`` grouped by hash slot, in their order (one read per group on a cluster)."""
    groups: dict[int, list[str]] = {}
    for stream in streams:
        groups.setdefault(int(key_slot(stream.encode())), []).append(stream)
    return [tuple(g) for g in groups.values()]


def _decode(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


# -- CLI ----------------------------------------------------------------------------------
def load_handler(spec: str) -> Handler:
    """``package.module:function`` -> the function."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError("a handler is given as package.module:function")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec} is not callable")
    handler: Handler = target
    return handler


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.streams",
        description="Consume bridged Redis Streams in a consumer group.",
    )
    streams = [s for s in env.get("ABLY_WORKER_STREAMS", "").split(",") if s]
    parser.add_argument(
        "--redis-url", default=env.get("ABLY_WORKER_STREAM_REDIS_URL", DEFAULT_REDIS_URL)
    )
    parser.add_argument("--stream", action="append", dest="streams", help="stream key (repeatable)")
    parser.add_argument("--group", default=env.get("ABLY_WORKER_STREAM_GROUP", "ably-workers"))
    parser.add_argument("--consumer", default=env.get("ABLY_WORKER_STREAM_CONSUMER"))
    parser.add_argument("--handler", default=env.get("ABLY_WORKER_STREAM_HANDLER"))
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--block", type=float, default=2.0, help="seconds to wait for entries")
    parser.add_argument(
        "--min-idle", type=float, default=float(env.get("ABLY_WORKER_STREAM_MIN_IDLE", 60))
    )
    parser.add_argument(
        "--max-deliveries",
        type=int,
        default=int(env.get("ABLY_WORKER_STREAM_MAX_DELIVERIES", 5)),
    )
    parser.add_argument("--dead-letter", default=env.get("ABLY_WORKER_STREAM_DEAD_LETTER"))
    parser.add_argument("--start-id", default="0", help='"0" (all) or "$" for a new group')
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(env_streams=streams)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of ``python -m workers.streams``; returns the exit status."""
    env = os.environ if env is None else env
    args = _parser(env).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    streams = args.streams or args.env_streams
    if not streams or not args.handler:
        print("error: --stream and --handler (or their variables) are required", file=sys.stderr)
        return 2
    handler = load_handler(args.handler)
    config = StreamConfig(
        streams=tuple(streams),
        group=args.group,
        consumer=args.consumer or _default_consumer(),
        batch_size=args.batch_size,
        block=args.block,
        min_idle=args.min_idle,
        max_deliveries=args.max_deliveries,
        dead_letter=args.dead_letter,
        start_id=args.start_id,
    )
    client = open_redis(args.redis_url, socket_connect_timeout=10)
    consumer = StreamConsumer(client, handler, config)

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping after the current entry", signum)
        consumer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    consumer.run()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
