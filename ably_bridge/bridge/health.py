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
* ``GET /metrics`` - the Prometheus text exposition;
* ``GET /status`` - the bridge's state as JSON (:mod:`.status`, filtered and
  paginated by :mod:`.status_query`; a bad query is a 400 with an Ably code);
* ``GET /`` - the status page (:mod:`.status_page`): one self-contained HTML
  page that polls ``/status``; it holds no data itself.

The probes and metrics have no authentication: the server binds 127.0.0.1
unless configured otherwise, and :meth:`HealthServer.start` warns when it is
bound where other hosts can reach it. ``/status`` says more (channel names,
errors), so it has two guards:

* with ``health.token`` set, it answers 401 (Ably code 40100) unless the request
  carries ``Authorization: Bearer <token>`` (compared in constant time);
* without a token it answers only requests whose ``Host`` is an IP address or
  ``localhost`` (403, code 40300 otherwise): a web page the operator visits
  cannot read it through a DNS name rebound to 127.0.0.1.

Nothing on this port changes the bridge's state (GET and HEAD only). Handlers
read snapshots only; they never call into the delivery thread's objects beyond
reading plain attributes.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ably_bridge.bridge.http_endpoint import EndpointServer, EndpointStats, Request, Response
from ably_bridge.bridge.metrics import CONTENT_TYPE
from ably_bridge.bridge.status_page import PAGE, PAGE_HEADERS
from ably_bridge.bridge.status_query import QueryError, parse_query

if TYPE_CHECKING:
    from ably_bridge.bridge.secret import Secret
    from ably_bridge.bridge.status import BridgeStatus

__all__ = ["HealthServer", "is_loopback"]

logger = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, list[str]]]
_JSON = "application/json"


def _error(
    status: int, code: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    body = {"error": {"code": code, "statusCode": status, "message": message}}
    return Response(status, json.dumps(body).encode("utf-8"), _JSON, headers)


def _literal_host(host: str) -> bool:
    """Whether a Host header names an IP address or localhost (any port)."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name in ("localhost", "localhost."):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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
        status: BridgeStatus | None = None,
        token: Secret | None = None,
        header_timeout: float = 5.0,
        write_timeout: float = 10.0,
        max_connections: int = 128,
        workers: int = 4,
    ) -> None:
        self._alive = alive
        self._ready = ready
        self._metrics = metrics
        self._status = status
        self._token = token.reveal().encode("utf-8") if token is not None else None
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

    def _handle(self, request: Request) -> Response | tuple[int, bytes, str]:
        path = request.path
        if path == "/healthz":
            return self._probe(self._alive)
        if path == "/readyz":
            return self._probe(self._ready)
        if path == "/metrics":
            return 200, self._metrics().encode("utf-8"), CONTENT_TYPE
        if self._status is not None and path in ("/", "/status"):
            refused = self._guard(request, page=path == "/")
            if refused is not None:
                return refused
            if path == "/":
                return Response(200, PAGE, "text/html; charset=utf-8", PAGE_HEADERS)
            return self._status_json(request)
        return 404, b'{"error":"not found"}', _JSON

    def _guard(self, request: Request, *, page: bool) -> Response | None:
        """401/403 when ``request`` may not read the status (module docstring)."""
        if self._token is not None:
            if page:
                return None  # the page holds no data; it asks for the token itself
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                value.strip().encode("utf-8"), self._token
            ):
                return None
            return _error(401, 40100, "a bearer token is required (health.token)",
                          (("WWW-Authenticate", 'Bearer realm="ably-bridge"'),))  # fmt: skip
        host = request.headers.get("host")
        if host is None or _literal_host(host):
            return None
        return _error(
            403, 40300,
            "the Host header must be an IP address or localhost (set health.token to "
            "reach /status through a name)",
        )  # fmt: skip

    def _status_json(self, request: Request) -> Response:
        assert self._status is not None
        try:
            query = parse_query(request.query, self._status.route_ids())
        except QueryError as exc:
            return _error(exc.status, exc.code, exc.message)
        body = json.dumps(self._status.build(query), separators=(",", ":")).encode("utf-8")
        return Response(200, body, _JSON)

    @staticmethod
    def _probe(probe: Probe) -> tuple[int, bytes, str]:
        ok, problems = probe()
        body = json.dumps({"ok": ok, "problems": problems}).encode()
        return (200 if ok else 503), body, _JSON
