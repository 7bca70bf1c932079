"""The operations endpoint: ``/healthz``, ``/readyz`` and ``/metrics`` over plain HTTP.

This module owns :class:`HealthServer`, served by the bounded
:class:`~ably_bridge.bridge.http_endpoint.EndpointServer` (header and write
timeouts, a connection cap, a small thread pool, quiet about clients that hang
up) on ``health.host``/``health.port`` (port 0 picks a free one; ``host`` may
list several addresses separated by commas, such as ``127.0.0.1,<pod IP>``):

* ``GET /healthz`` - 200 while the process can do its work; 503 when it cannot
  recover by itself: its delivery loop has not stepped within ``stall_after``
  seconds, or a realtime connection is FAILED (a wrong or revoked key: the body
  names the Ably error code). See ``docs/security.md`` for why a liveness probe
  should restart the process then;
* ``GET /readyz`` - 200 when the Ably connection is up, every channel is
  live (attached and caught up) and no sink is failing; otherwise 503 with
  the reasons as JSON;
* ``GET /metrics`` - the Prometheus text exposition.

The endpoint has no authentication: it binds 127.0.0.1 unless configured
otherwise, and :meth:`HealthServer.start` warns when it is bound where other
hosts can reach it. Handlers read snapshots only; they never call into the
delivery thread's objects beyond reading plain attributes.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable

from ably_bridge.bridge.http_endpoint import EndpointServer, EndpointStats
from ably_bridge.bridge.metrics import CONTENT_TYPE

__all__ = ["HealthServer", "is_loopback"]

logger = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, list[str]]]
_JSON = "application/json"


def is_loopback(address: str) -> bool:
    """Whether a bound address is reachable from this host only."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class HealthServer:
    """Serves health, readiness and metrics on ``host:port`` from its own threads."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        alive: Probe,
        ready: Probe,
        metrics: Callable[[], str],
        header_timeout: float = 5.0,
        write_timeout: float = 10.0,
        max_connections: int = 128,
        workers: int = 4,
    ) -> None:
        self._alive = alive
        self._ready = ready
        self._metrics = metrics
        try:
            self._server = EndpointServer(
                [h.strip() for h in host.split(",")],
                port,
                self._handle,
                name="ably-bridge-health",
                workers=workers,
                max_connections=max_connections,
                header_timeout=header_timeout,
                write_timeout=write_timeout,
            )
        except OSError as exc:  # a name that does not resolve, a port in use...
            reason = exc.strerror or str(exc)
            raise OSError(
                exc.errno, f"health.host/health.port: cannot listen on {host} port {port}: {reason}"
            ) from None
        self._started = False

    @property
    def port(self) -> int:
        return self._server.address[1]

    @property
    def host(self) -> str:
        return self._server.address[0]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return self._server.addresses

    @property
    def url(self) -> str:
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def stats(self) -> EndpointStats:
        return self._server.stats

    def start(self) -> HealthServer:
        if not self._started:
            self._started = True
            self._server.start()
            logger.info("health endpoint on %s", self.url)
            exposed = [h for h, _ in self._server.addresses if not is_loopback(h)]
            if exposed:
                logger.warning(
                    "the health endpoint listens on %s, which other hosts can reach: "
                    "/metrics and /readyz answer anyone without authentication. Bind "
                    "127.0.0.1 (health.host) unless a prober on another address needs it "
                    "(Kubernetes: the pod IP; see docs/security.md)",
                    ", ".join(exposed),
                )
        return self

    def stop(self) -> None:
        self._server.stop()

    def _handle(self, method: str, path: str) -> tuple[int, bytes, str]:
        if path == "/healthz":
            return self._probe(self._alive)
        if path == "/readyz":
            return self._probe(self._ready)
        if path == "/metrics":
            return 200, self._metrics().encode("utf-8"), CONTENT_TYPE
        return 404, b'{"error":"not found"}', _JSON

    @staticmethod
    def _probe(probe: Probe) -> tuple[int, bytes, str]:
        ok, problems = probe()
        body = json.dumps({"ok": ok, "problems": problems}).encode()
        return (200 if ok else 503), body, _JSON
