"""Handlers the stream-runner tests load through the CLI (``module:function``)."""

from __future__ import annotations

import os
import threading

import redis

from workers.streams import StreamEntry


def record_or_block(entry: StreamEntry) -> None:
    """Record the entry's data in a Redis list; block forever on data == "block"."""
    client = redis.Redis.from_url(os.environ["ABW_TEST_REDIS"])
    data = entry.events[0].data
    if data == "block":
        client.rpush(os.environ["ABW_TEST_STARTED"], entry.entry_id)
        threading.Event().wait(60)  # killed here
    client.rpush(os.environ["ABW_TEST_RECORD"], entry.entry_id)
    client.close()
