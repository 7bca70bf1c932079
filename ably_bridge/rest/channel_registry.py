"""The collection behind ``client.channels``, shared by the REST and realtime clients.

It lives with the REST client, the lower of its two users: the realtime client
builds on ``ably_bridge.rest`` already (its channels extend the REST ones).

:class:`ChannelRegistry` holds channels by name under a lock and answers the
read side of the channels API (RSN2, RTS2): ``exists`` / ``in``, ``iterate`` /
iteration, ``len`` and ``channels[name]``. Subclasses decide how ``get``
creates a channel and what ``release`` must do besides forgetting it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["ChannelRegistry"]

C = TypeVar("C")


class ChannelRegistry(Generic[C]):
    """Channels by name; thread-safe. Subclasses implement ``get``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, C] = {}

    def get(self, name: str) -> C:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def __getitem__(self, name: str) -> C:
        return self.get(name)

    def exists(self, name: str) -> bool:
        """True when ``get(name)`` was called and the channel not released (RSN2, RTS2)."""
        with self._lock:
            return name in self._channels

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.exists(name)

    def iterate(self) -> Iterator[C]:
        """The channels in use, as a snapshot safe against concurrent ``get``/``release``."""
        with self._lock:
            return iter(list(self._channels.values()))

    def __iter__(self) -> Iterator[C]:
        return self.iterate()

    def __len__(self) -> int:
        with self._lock:
            return len(self._channels)

    def _forget(self, name: str) -> C | None:
        with self._lock:
            return self._channels.pop(name, None)
