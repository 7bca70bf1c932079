"""The operations endpoint: ``/healthz``, ``/readyz`` and ``/metrics`` over plain HTTP.

This module owns :class:`HealthServer`, a small ``http.server`` on its own
thread (configured by ``health.host``/``health.port``; port 0 picks a free one):

* ``GET /healthz`` - 200 while the process is alive and its delivery loop
  has stepped within ``stall_after`` seconds (a wedged loop answers 503);
* ``GET /readyz`` - 200 when the Ably connection is up, every channel is
  live (attached and caught up) and no sink is failing; otherwise 503 with
  the reasons as JSON;
* ``GET /metrics`` - the Prometheus text exposition.

Handlers read snapshots only; they never call into the delivery thread's
objects beyond reading plain attributes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ably_bridge.bridge.metrics import CONTENT_TYPE

__all__ = ["HealthServer"]

logger = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, list[str]]]


class HealthServer:
    """Serves health, readiness and metrics on ``host:port`` from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        alive: Probe,
        ready: Probe,
        metrics: Callable[[], str],
    ) -> None:
        self._probes: dict[str, Any] = {"alive": alive, "ready": ready, "metrics": metrics}
        self._server = ThreadingHTTPServer((host, port), _make_handler(self._probes))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="ably-bridge-health", daemon=True
            )
            self._thread.start()
            logger.info("health endpoint on %s", self.url)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()


def _make_handler(probes: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ably-bridge"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/healthz":
                    self._probe(probes["alive"])
                elif path == "/readyz":
                    self._probe(probes["ready"])
                elif path == "/metrics":
                    self._send(200, probes["metrics"]().encode("utf-8"), CONTENT_TYPE)
                else:
                    self._send(404, b'{"error":"not found"}', "application/json")
            except Exception as exc:  # a probe bug must not kill the server thread
                logger.exception("health endpoint %s failed", path)
                body = json.dumps({"ok": False, "problems": [type(exc).__name__]})
                self._send(500, body.encode(), "application/json")

        def _probe(self, probe: Probe) -> None:
            ok, problems = probe()
            body = json.dumps({"ok": ok, "problems": problems}).encode()
            self._send(200 if ok else 503, body, "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("health: " + format, *args)

    return Handler
