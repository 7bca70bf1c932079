"""The "hand-written" alternative to the bridge, for the same end-to-end workload.

What a competent user would write today without ably-bridge, in one process:
the official ``ably`` SDK's asyncio realtime client (3.1.4) subscribed to the
channels (one client per ``--connections``), a listener that queues each
message, and a writer task that drains the queue

* ``--sink streams``: ``XADD`` through ``redis.asyncio`` (redis-py) - in
  ``--mode batched`` (default) everything queued so far goes in one
  non-transactional pipeline, in ``--mode naive`` one ``await xadd`` per message;
* ``--sink celery-redis`` / ``celery-amqp``: Celery ``send_task`` by name in a
  worker thread (``run_in_executor``; ``send_task`` blocks), one call per message,
  with kombu's default producer pool (publisher confirms on AMQP, as the bridge).

The stream entry / task argument is the same Integrations-style envelope the
bridge writes, built with ``json.dumps``. No checkpoints, no de-duplication,
no backfill, no retries: it does strictly less work than the bridge.

The SDK is pointed at the emulator as in ``tests/interop/sdk.py``: token auth
through a separate REST client (it refuses Basic auth over plain HTTP) and
``realtime_host="host:port"`` (its WebSocket URL drops the port).

Run it through the harness, which starts the emulator and measures it::

    /work/.venv/bin/python bench/handwritten_alternative.py --sink streams --messages 50000
    /work/.venv/bin/python bench/handwritten_alternative.py --sink celery-redis --messages 10000
    /work/.venv/bin/python bench/handwritten_alternative.py --sink streams --rate 2000

(any ``bench/bridge_e2e.py`` flag works; this is ``bridge_e2e.py --consumer
handwritten``). ``consume`` is the consumer process the harness starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_MAX_BATCH = 500


def envelope(channel: str, m: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"id": m.id, "name": m.name}
    if m.client_id is not None:
        item["clientId"] = m.client_id
    if m.connection_id is not None:
        item["connectionId"] = m.connection_id
    item["timestamp"] = m.timestamp
    item["data"] = m.data
    if m.encoding:
        item["encoding"] = m.encoding
    return {
        "source": "channel.message",
        "appId": "bench",
        "channel": channel,
        "site": "handwritten",
        "ruleId": "bench",
        "timestamp": m.timestamp,
        "messages": [item],
    }


async def consume(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis
    from ably import AblyRealtime, AblyRest

    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    binary = args.format == "msgpack"
    rest = AblyRest(
        key=args.key, rest_host=host, port=port, tls=False,
        use_token_auth=True, use_binary_protocol=binary,
    )  # fmt: skip

    async def auth_callback(_: Any) -> Any:
        return await rest.auth.request_token()

    # One realtime client per connection (--connections), the channels dealt out in
    # contiguous slices, as the bridge shards them (channels_per_connection).
    names = args.channels.split(",")
    count = max(1, min(int(args.connections), len(names)))
    per = -(-len(names) // count)
    clients = []
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    for index in range(count):
        client = AblyRealtime(
            auth_callback=auth_callback,
            realtime_host=f"{host}:{port}",
            tls=False,
            use_binary_protocol=binary,
        )
        await asyncio.wait_for(client.connection.once_async("connected"), 30)
        clients.append(client)
        for name in names[index * per : (index + 1) * per]:
            channel = client.channels.get(name)
            await channel.subscribe(lambda m, name=name: queue.put_nowait((name, m)))

    r = aioredis.Redis.from_url(args.redis_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await r.set(os.environ["BENCH_COUNTER_KEY"] + ":ready", 1)

    async def take() -> list[tuple[str, Any]]:
        items = [await queue.get()]
        while not queue.empty() and len(items) < _MAX_BATCH:
            items.append(queue.get_nowait())
        return items

    if args.sink == "streams":

        async def write() -> None:
            while True:
                if args.mode == "naive":
                    name, m = await queue.get()
                    await r.xadd(
                        f"{args.prefix}:s:{name}", {"envelope": json.dumps(envelope(name, m))}
                    )
                    continue
                items = await take()
                pipe = r.pipeline(transaction=False)
                for name, m in items:
                    pipe.xadd(
                        f"{args.prefix}:s:{name}", {"envelope": json.dumps(envelope(name, m))}
                    )
                await pipe.execute()

    else:
        from celery import Celery

        broker = args.redis_url if args.sink == "celery-redis" else args.amqp_url
        app = Celery("handwritten", broker=broker, set_as_current=False)
        options = {"confirm_publish": True} if args.sink == "celery-amqp" else {}
        app.conf.update(
            task_serializer="json",
            result_backend=None,
            task_ignore_result=True,
            broker_transport_options=options,
        )
        from kombu import Exchange, Queue

        queue_name = f"{args.prefix}-q"
        queue_to: Any = queue_name
        if args.queue_type == "quorum":  # as the bridge declares it
            queue_to = Queue(
                queue_name,
                Exchange(queue_name, "topic"),
                queue_name,
                queue_arguments={"x-queue-type": "quorum"},
            )
        pool = ThreadPoolExecutor(1)

        def send(items: list[tuple[str, Any]]) -> None:
            for name, m in items:
                app.send_task("bench.count", args=(envelope(name, m),), queue=queue_to)

        async def write() -> None:
            while True:
                items = [await queue.get()] if args.mode == "naive" else await take()
                await loop.run_in_executor(pool, send, items)

    writer = asyncio.create_task(write())
    await stop.wait()
    writer.cancel()
    for client in clients:
        await client.close()
    await rest.close()
    await r.aclose()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "consume":
        parser = argparse.ArgumentParser()
        parser.add_argument("consume")
        for flag in ("--url", "--key", "--sink", "--prefix", "--format", "--channels",
                     "--mode", "--queue-type", "--redis-url", "--amqp-url",
                     "--connections"):  # fmt: skip
            parser.add_argument(flag, required=True)
        asyncio.run(consume(parser.parse_args()))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bridge_e2e import main as harness

    harness(sys.argv[1:], consumer="handwritten")


if __name__ == "__main__":
    main()
