"""Per-client logging (TO3b, TO3c): each client logs through a logger of its own.

Every :class:`~ably_bridge.rest.client.AblyRest` and
:class:`~ably_bridge.realtime.client.AblyRealtime` gets a child of the package
logger, named ``ably_bridge.client.<kind>-<n>`` (``rest-1``, ``realtime-2``...;
a realtime client's REST half shares its logger). ``log_level`` sets the level
of that logger only, and ``log_handler`` is attached to it only, so two
clients in one process log at their own levels to their own handlers (the
Go SDK's WithLogLevel / WithLogHandler).

It fits Python's logging configuration as a child does: with no ``log_level``
the client logger inherits the level of ``ably_bridge`` (set it, or the
root's, as usual); its records propagate to the handlers of ``ably_bridge``
and of the root, so ``logging.basicConfig`` or ``dictConfig`` see them. Code
shared by every client (the callback pool, the websocket reactor) logs
through its module's logger (``ably_bridge.realtime.callback_pool``...).

Client loggers are not registered with :mod:`logging`'s manager, so a closed
client's logger is freed with it rather than kept for the life of the
process; for the same reason they re-check their level on each call (the
manager would not tell them when a parent's level changes).
"""

from __future__ import annotations

import itertools
import logging
import threading

from ably_bridge.options import ClientOptions

__all__ = ["LIBRARY_LOGGER", "ClientLogger", "client_logger"]

LIBRARY_LOGGER = "ably_bridge"
_numbers = itertools.count(1)
_numbers_lock = threading.Lock()


class ClientLogger(logging.Logger):
    """The logger of one client: a child of ``ably_bridge`` outside the manager's registry."""

    def isEnabledFor(self, level: int) -> bool:
        # No cache: the manager clears only registered loggers' caches.
        if self.disabled or self.manager.disable >= level:
            return False
        return level >= self.getEffectiveLevel()


def client_logger(kind: str, options: ClientOptions) -> ClientLogger:
    """A new logger for one client of ``kind``, with the options' level and handler."""
    with _numbers_lock:
        number = next(_numbers)
    logger = ClientLogger(f"{LIBRARY_LOGGER}.client.{kind}-{number}")
    logger.parent = logging.getLogger(LIBRARY_LOGGER)
    if options.log_level is not None:
        logger.setLevel(options.log_level)
    if options.log_handler is not None:
        logger.addHandler(options.log_handler)
    return logger
