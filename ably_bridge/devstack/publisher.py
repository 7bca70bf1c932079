"""The dev stack's demo publisher: a chat message a second, and one presence member.

This module owns :class:`DemoPublisher`, a background thread with one
:class:`~ably_bridge.AblyRealtime` client on the emulator. It enters the
presence set of ``chat:lobby`` once (as ``dev-publisher``), then publishes a
``text`` message there every ``interval`` seconds, each with an id of its own
(``dev-<run>:<n>``) so the summary can follow each message into the stream
and the Celery task. On :meth:`DemoPublisher.stop` it leaves presence and
closes the client. Failures are counted and logged, never raised.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ably_bridge.devstack.layout import CHAT_CHANNEL, PUBLISHER_CLIENT_ID

__all__ = ["DemoPublisher"]

log = logging.getLogger(__name__)


class DemoPublisher:
    """Publishes demo chat messages from a daemon thread (see the module docstring)."""

    def __init__(
        self,
        *,
        key: str,
        host: str,
        port: int,
        run_id: str,
        channel: str = CHAT_CHANNEL,
        interval: float = 1.0,
        client_id: str = PUBLISHER_CLIENT_ID,
    ) -> None:
        self.key = key
        self.host = host
        self.port = port
        self.run_id = run_id
        self.channel = channel
        self.interval = interval
        self.client_id = client_id
        self.published = 0
        self.errors = 0
        self.last_error: str | None = None
        self.presence_entered = False
        self._ids: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ids(self) -> list[str]:
        """The ids of the messages Ably acknowledged, in order."""
        with self._lock:
            return list(self._ids)

    def start(self) -> DemoPublisher:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="ably-dev-publisher", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop publishing, leave presence, close the client (waits for the thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _client(self) -> Any:
        from ably_bridge.realtime.client import AblyRealtime

        return AblyRealtime(
            key=self.key,
            client_id=self.client_id,
            endpoint=self.host,
            port=self.port,
            tls=False,
            use_binary_protocol=False,
            realtime_request_timeout=5.0,
            http_request_timeout=5.0,
            fallback_hosts=[],
        )

    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        self.last_error = f"{what}: {exc}"
        log.warning("demo publisher: %s failed: %s", what, exc)

    def _run(self) -> None:
        try:
            client = self._client()
        except Exception as exc:
            self._failed("connect", exc)
            return
        try:
            channel = client.channels.get(self.channel)
            try:
                channel.presence.enter({"role": "demo publisher"})
                self.presence_entered = True
            except Exception as exc:
                self._failed("presence enter", exc)
            n = 0
            while not self._stop.is_set():
                n += 1
                message_id = f"dev-{self.run_id}:{n}"
                data = {"text": f"hello #{n} from the ably-bridge dev publisher", "n": n}
                try:
                    channel.publish("text", data, id=message_id)
                except Exception as exc:
                    self._failed(f"publish #{n}", exc)
                else:
                    with self._lock:
                        self._ids.append(message_id)
                        self.published += 1
                self._stop.wait(self.interval)
            if self.presence_entered:
                try:
                    channel.presence.leave()
                except Exception as exc:
                    self._failed("presence leave", exc)
        finally:
            client.close(timeout=5.0)
