"""bench/bridge_e2e.py's view of the sinks: how many deliveries arrived (stream
lengths, queue depths) and their latency from publish to sink."""

from __future__ import annotations

import json
from typing import Any

from measure import AMQP_URL, REDIS_URL

from ably_bridge.bridge.redis_connect import open_redis


# -- sinks: counting and latency ---------------------------------------------------------
class SinkProbe:
    """Counts deliveries at the sink, and reads latencies after a stream run."""

    def __init__(self, sink: str, prefix: str, channels: list[str], queue_type: str) -> None:
        self.sink = sink
        self.queue_arguments = {"x-queue-type": queue_type}
        self.prefix = prefix
        self.channels = channels
        self.redis = open_redis(REDIS_URL)
        self.queue = f"{prefix}-q"
        self.streams = [f"{prefix}:s:{c}" for c in channels]
        self.counter = f"{prefix}:ceiling"
        self._amqp: Any = None

    def clear(self) -> None:
        keys = list(self.redis.scan_iter(f"{self.prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            self.redis.delete(*keys[i : i + 500])
        if self.sink == "celery-amqp":
            ch = self._amqp_channel()
            ch.queue_declare(
                self.queue, durable=True, auto_delete=False, arguments=self.queue_arguments
            )
            ch.queue_purge(self.queue)

    def _amqp_channel(self) -> Any:
        if self._amqp is None:
            from urllib.parse import urlsplit

            import amqp

            u = urlsplit(AMQP_URL)
            conn = amqp.Connection(
                f"{u.hostname}:{u.port or 5672}", userid=u.username or "guest",
                password=u.password or "guest", virtual_host="/",
            )  # fmt: skip
            conn.connect()
            self._amqp = (conn, conn.channel())
        return self._amqp[1]

    def count(self) -> int:
        if self.sink == "none":
            return int(self.redis.get(self.counter) or 0)
        if self.sink == "streams":
            pipe = self.redis.pipeline(transaction=False)
            for s in self.streams:
                pipe.xlen(s)
            return int(sum(pipe.execute()))
        if self.sink == "celery-redis":
            return int(self.redis.llen(self.queue))
        _, n, _ = self._amqp_channel().queue_declare(
            self.queue, passive=True, arguments=self.queue_arguments
        )
        return int(n)

    def stream_latencies(self, since_ms: int) -> tuple[list[float], list[float]]:
        """(Ably timestamp -> XADD ms, publisher send -> XADD ms) for entries after ``since_ms``."""
        ably: list[float] = []
        publish: list[float] = []
        for s in self.streams:
            for entry_id, fields in self.redis.xrange(s, min=f"{since_ms}-0"):
                added = int(entry_id.split(b"-")[0])
                env = json.loads(fields[b"envelope"])
                msg = env["messages"][0] if "messages" in env else env
                ably.append(added - int(msg["timestamp"]))
                data = msg.get("data")
                if isinstance(data, str) and ":" in data:
                    publish.append(added - int(data.split(":", 1)[0]) / 1e6)
        return ably, publish

    def close(self) -> None:
        if self._amqp is not None:
            conn, ch = self._amqp
            try:
                ch.queue_delete(self.queue)
            finally:
                conn.close()
