"""A publish whose worker is killed with SIGKILL mid-request is redelivered and published once.

A forwarding proxy sits between the first worker and the emulator: it passes
the publish on (so Ably *has* the message) and then holds the response while
the test kills the whole worker process group. A second worker, started
afterwards, receives the redelivered task and publishes the same id again;
the emulator keeps one copy. Workers are real ``celery -A workers worker``
subprocesses configured only through the environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from ably_bridge.emulator.server import Emulator
from tests.workers.conftest import AMQP_URL, REDIS_DB14, cleanup_broker, rest_client, unique
from tests.workers.owned import celery_worker
from workers import WorkerSettings, create_app, producers

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


class HoldingProxy(ThreadingHTTPServer):
    """Forwards to the emulator; holds the answer to the first publish until released."""

    daemon_threads = True

    def __init__(self, target: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.target = target
        self.forwarded = threading.Event()
        self.release = threading.Event()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: HoldingProxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        answer = requests.request(
            self.command, self.server.target + self.path, headers=headers, data=body, timeout=10
        )
        if self.command == "POST" and "/messages" in self.path:
            self.server.forwarded.set()
            self.server.release.wait(15)  # the worker dies while we hold this
        with contextlib.suppress(OSError):
            self.send_response(answer.status_code)
            for name in ("Content-Type", "Link"):
                if name in answer.headers:
                    self.send_header(name, answer.headers[name])
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

    do_GET = _forward
    do_POST = _forward


def worker_env(key: str, port: int, broker: str, queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ABLY_KEY": key,
        "ABLY_ENDPOINT": "127.0.0.1",
        "ABLY_PORT": str(port),
        "ABLY_TLS": "false",
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": REDIS_DB14,
        "ABLY_WORKER_QUEUE": queue,
        "ABLY_WORKER_REDIS_KEY_PREFIX": f"{queue}:",
        "ABLY_WORKER_VISIBILITY_TIMEOUT": "2",
        "ABLY_WORKER_RESTORE_INTERVAL": "0.5",
        "ABLY_WORKER_RETRY_BASE_DELAY": "0.05",
        "ABLY_WORKER_RETRY_MAX_DELAY": "0.2",
    }


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_sigkill_mid_publish_is_redelivered_and_published_once(
    broker: str, emulator: Emulator, ably_app: dict[str, Any]
) -> None:
    queue = unique("abw-kill")
    broker_url = REDIS_DB14 if broker == "redis" else AMQP_URL
    key = ably_app["root_key"]
    settings = WorkerSettings(
        broker_url=broker_url,
        result_backend=REDIS_DB14,
        queue=queue,
        redis_key_prefix=f"{queue}:",
        broker_timeout=5.0,
    )
    producer_app = create_app(unique("producer"), settings, register=False)
    proxy = HoldingProxy(emulator.url)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    channel = unique("kill")
    try:
        with celery_worker(worker_env(key, proxy.server_port, broker_url, queue), "a") as first:
            receipt = producers.publish(channel, "n", "survives", app=producer_app)
            assert proxy.forwarded.wait(15), "the first worker never published"
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        with rest_client(emulator, key) as rest:
            assert [m.id for m in rest.channels.get(channel).history()] == receipt.message_ids
        proxy.release.set()
        with celery_worker(worker_env(key, emulator.port, broker_url, queue), "b"):
            result = receipt.get(timeout=15)
        assert result["messageIds"] == receipt.message_ids
        with rest_client(emulator, key) as rest:
            items = list(rest.channels.get(channel).history())
        assert [m.id for m in items] == receipt.message_ids
        assert items[0].data == "survives"
    finally:
        proxy.release.set()
        proxy.shutdown()
        producer_app.close()
        cleanup_broker(settings)
