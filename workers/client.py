"""The worker's REST client: one per process, created lazily after fork.

This module owns :class:`ClientProvider` and :class:`RetryAfterTransport`.

A prefork worker forks its children from a parent that never runs a task; a
REST client (its connection pool) must not be shared across that fork. The
provider creates the :class:`~ably_bridge.rest.AblyRest` on the first task a
process runs and remembers the pid it was made in: a client inherited through
``fork`` is discarded (not closed - its sockets belong to the parent) and a new
one is made. ``AblyRest`` is thread-safe, so a threads pool shares one client.

:class:`RetryAfterTransport` wraps the HTTP transport to remember, per thread,
the ``Retry-After`` of the last 429 answer, so the retry policy can honour it
(the REST funnel reports the Ably error but not the response headers).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from ably_bridge.rest import AblyRest
from ably_bridge.transports.http import HttpResponse, HttpTransport, RequestsTransport
from workers.settings import WorkerSettings

__all__ = ["ClientProvider", "RetryAfterTransport"]

log = logging.getLogger(__name__)

Timeout = float | tuple[float, float] | None
_MAX_RETRY_AFTER = 60.0


class RetryAfterTransport:
    """An :class:`HttpTransport` that notes the ``Retry-After`` of 429 answers per thread."""

    def __init__(self, inner: HttpTransport) -> None:
        self._inner = inner
        self._local = threading.local()

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: Timeout,
    ) -> HttpResponse:
        self._local.retry_after = None
        response = self._inner.request(method, url, headers, body, timeout)  # type: ignore[arg-type]
        if response.status == 429:
            self._local.retry_after = _seconds(response.headers.get("Retry-After"))
        return response

    def take_retry_after(self) -> float | None:
        """The Retry-After (seconds) of this thread's last request, if it was a 429 with one."""
        value: float | None = getattr(self._local, "retry_after", None)
        self._local.retry_after = None
        return value

    def close(self) -> None:
        self._inner.close()


def _seconds(value: str | None) -> float | None:
    """Delta-seconds form of Retry-After, capped; HTTP dates are ignored."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


class ClientProvider:
    """Hands out this process's REST client for one :class:`WorkerSettings`."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._client: AblyRest | None = None
        self._transport: RetryAfterTransport | None = None

    def get(self) -> AblyRest:
        """The client of the current process, created on first use after a fork."""
        pid = os.getpid()
        client = self._client
        if client is not None and self._pid == pid:
            return client
        with self._lock:
            if self._client is None or self._pid != pid:
                if self._client is not None:
                    log.debug("discarding a REST client inherited through fork")
                self._transport = RetryAfterTransport(RequestsTransport(pool_maxsize=32))
                self._client = AblyRest(
                    self.settings.client_options_value(), transport=self._transport
                )
                self._pid = pid
                log.info("created the worker REST client in process %d", pid)
            return self._client

    def take_retry_after(self) -> float | None:
        transport = self._transport
        return None if transport is None else transport.take_retry_after()

    def reset(self) -> None:
        """Forget the client without closing it (after fork: it belongs to the parent)."""
        with self._lock:
            self._client = None
            self._transport = None
            self._pid = None

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None
            self._transport = None
            self._pid = None
