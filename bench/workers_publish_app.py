"""The Celery app of ``bench/workers_publish.py``'s worker: the ``ably.*`` tasks plus a baseline.

``bench.official_publish`` is the plain way to publish from Celery: a task
calling the official ``ably`` package's sync REST client (one client per worker
process, made on first use) for each publish. Configured from the environment
like ``celery -A workers worker``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from workers import create_app

app = create_app("bench-workers")
_client: dict[int, Any] = {}
_lock = threading.Lock()


def official_client() -> Any:
    from ably.sync import AblyRestSync

    pid = os.getpid()
    with _lock:
        if pid not in _client:
            logging.getLogger("ably").setLevel(logging.ERROR)
            _client[pid] = AblyRestSync(
                key=os.environ["ABLY_KEY"],
                rest_host=os.environ.get("ABLY_ENDPOINT", "127.0.0.1"),
                port=int(os.environ["ABLY_PORT"]),
                tls=False,
                use_token_auth=True,  # the official client refuses Basic auth over HTTP
            )
        return _client[pid]


@app.task(name="bench.official_publish", acks_late=True)  # type: ignore[untyped-decorator]
def official_publish(channel: str, name: str, data: str) -> None:
    official_client().channels.get(channel).publish(name, data)
