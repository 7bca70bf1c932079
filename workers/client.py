"""The worker's REST client: one per process, created lazily after fork.

This module owns :class:`ClientProvider`.

A prefork worker forks its children from a parent that never runs a task; a
REST client (its connection pool) must not be shared across that fork. The
provider creates the :class:`~ably_bridge.rest.AblyRest` on the first task a
process runs and remembers the pid it was made in: a client inherited through
``fork`` is discarded (not closed - its sockets belong to the parent) and a new
one is made. ``AblyRest`` is thread-safe, so a threads pool shares one client.

A 429's ``Retry-After`` travels on the error itself (``AblyException.headers``;
:func:`workers.retry.retry_after_of`).
"""

from __future__ import annotations

import logging
import os
import threading

from ably_bridge.rest import AblyRest
from ably_bridge.transports.http import RequestsTransport
from workers.settings import WorkerSettings

__all__ = ["ClientProvider"]

log = logging.getLogger(__name__)


class ClientProvider:
    """Hands out this process's REST client for one :class:`WorkerSettings`."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._client: AblyRest | None = None

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
                self._client = AblyRest(
                    self.settings.client_options_value(),
                    transport=RequestsTransport(pool_maxsize=32),
                )
                self._pid = pid
                log.info("created the worker REST client in process %d", pid)
            return self._client

    def reset(self) -> None:
        """Forget the client without closing it (after fork: it belongs to the parent)."""
        with self._lock:
            self._client = None
            self._pid = None

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None
            self._pid = None
