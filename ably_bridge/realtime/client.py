"""``AblyRealtime``: the synchronous, thread-safe realtime client, and its ``auth``.

Construction wires one REST client (auth, history, stats, time), a callback
pool (:class:`~.dispatcher.CallbackPool`: the one all clients in the
process share, or a private one with ``shared_callback_pool=False``), and the
loop thread (:class:`~.loop.SessionLoop`) that owns the connection; then
connects unless ``auto_connect=False`` (RTN3). ``close()`` closes the
connection, stops the client's threads and lets go of the callback pool; use
it (or ``with AblyRealtime(...) as client:``) to finish.

:class:`RealtimeAuth` is the REST :class:`~ably_bridge.rest.auth.Auth` plus
``authorize()`` on a live connection (RTC8): the new token is sent in an AUTH
message and the call returns once the server confirmed it (an ``update``
event), or raises if the connection failed.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from typing import Any

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.options import ClientOptions
from ably_bridge.protocol.events import ConnectionEvent, ConnectionState, ConnectionStateChange
from ably_bridge.protocol.stats import Stats
from ably_bridge.protocol.tokens import TokenDetails, TokenParams, TokenRequest
from ably_bridge.realtime.callback_pool import CallbackPool, acquire_shared, release_shared
from ably_bridge.realtime.channels import Channels
from ably_bridge.realtime.connection import Connection
from ably_bridge.realtime.loop import SessionLoop
from ably_bridge.rest.client import AblyRest
from ably_bridge.rest.logs import client_logger
from ably_bridge.rest.pagination import PaginatedResult

__all__ = ["AblyRealtime", "RealtimeAuth"]

_S = ConnectionState


class RealtimeAuth:
    """``client.auth``: the REST Auth, with ``authorize`` reaching the live connection (RTC8)."""

    def __init__(self, client: AblyRealtime) -> None:
        self._client = client
        self._rest_auth = client.rest.auth

    @property
    def client_id(self) -> str | None:
        return self._client.client_id

    @property
    def token_details(self) -> TokenDetails | None:
        return self._rest_auth.token_details

    @property
    def auth_mechanism(self) -> str:
        return self._rest_auth.auth_mechanism

    @property
    def default_token_params(self) -> TokenParams:
        """The TokenParams used when a call gives none (see ``Auth.default_token_params``)."""
        return self._rest_auth.default_token_params

    def create_token_request(self, *args: Any, **kwargs: Any) -> TokenRequest:
        return self._rest_auth.create_token_request(*args, **kwargs)

    def request_token(self, *args: Any, **kwargs: Any) -> TokenDetails:
        return self._rest_auth.request_token(*args, **kwargs)

    def authorize(
        self,
        token_params: TokenParams | Mapping[str, Any] | None = None,
        auth_options: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        **auth_kwargs: Any,
    ) -> TokenDetails:
        """Get a new token (RSA10) and, if connected, re-authenticate the connection (RTC8a)."""
        details = self._rest_auth.authorize(token_params, auth_options, **auth_kwargs)
        loop = self._client._loop
        state = loop.core.state
        if state == _S.INITIALIZED:
            loop.run_sync(lambda now: loop.links.token_obtained(details, now))
            return details
        wanted = {ConnectionEvent.UPDATE} if state == _S.CONNECTED else {ConnectionEvent.CONNECTED}
        done = threading.Event()
        outcome: list[ConnectionStateChange] = []

        def listener(change: ConnectionStateChange) -> None:
            settled = change.event in wanted or change.current in (
                _S.FAILED,
                _S.SUSPENDED,
                _S.CLOSED,
            )
            if settled and not done.is_set():
                outcome.append(change)
                done.set()

        off = loop.delivery.watch_connection(listener)
        try:
            loop.post(lambda now: loop.links.token_obtained(details, now))
            limit = timeout or self._client.options.realtime_request_timeout
            if not done.wait(limit):
                raise AblyException(
                    f"authorize timed out after {limit:g}s", ErrorCode.TIMEOUT_ERROR, 500
                )
        finally:
            off()
        change = outcome[0]
        if change.current != _S.CONNECTED:
            raise change.reason or AblyException(
                f"authorize failed: connection is {change.current.value}",
                ErrorCode.CONNECTION_FAILED,
                400,
            )
        return details

    def __repr__(self) -> str:
        return f"RealtimeAuth(mechanism={self.auth_mechanism})"


class AblyRealtime:
    """A realtime client; safe to share between threads.

    ``AblyRealtime("appId.keyId:secret")``, ``AblyRealtime(token)``,
    ``AblyRealtime(ClientOptions(...))`` or ``AblyRealtime(key=..., endpoint=...)``.
    ``callback_workers`` (default 8) is how many listeners of this client may
    block at once: the threads it adds to the shared callback pool's limit, or
    the size of its private pool (``shared_callback_pool=False``). Threads are
    started only when listeners are slow; fast ones share one or two.
    """

    def __init__(
        self,
        key_or_options: str | ClientOptions | None = None,
        /,
        *,
        callback_workers: int = 8,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
        **options: Any,
    ) -> None:
        if callback_workers < 1:
            raise ValueError("callback_workers must be at least 1")
        self.options = ClientOptions.build(key_or_options, **options)
        # TO3b, TO3c: this client's own logger, shared with its REST half (rest/logs.py)
        self.log: logging.Logger = logger or client_logger("realtime", self.options)
        self.rest = AblyRest(self.options, logger=self.log)
        self._callback_workers = callback_workers
        self._shared_pool = self.options.shared_callback_pool
        self._dispatcher = (
            acquire_shared(callback_workers)
            if self._shared_pool
            else CallbackPool(max_workers=callback_workers)
        )
        self._loop = SessionLoop(
            self.options, self.rest, self._dispatcher, rng=rng or random.Random()
        )
        self.auth = RealtimeAuth(self)
        self.connection = Connection(self._loop)
        self.channels = Channels(self)
        self._closed = False
        if self.options.auto_connect:  # RTN3
            self.connection.connect(wait=False)
            # The inbox is FIFO: once this no-op has run, the connect has too, so the
            # caller sees CONNECTING (as with other SDKs), not INITIALIZED.
            self._loop.run_sync(lambda now: None)

    @property
    def client_id(self) -> str | None:
        """The identity: the option, the token's, or the one CONNECTED confirmed (RSA7, RSA12)."""
        client_id = self.rest.auth.client_id
        if client_id is None:
            details = self._loop.core.details
            client_id = details.client_id if details is not None else None
        return client_id

    def connect(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """``connection.connect()`` (RTN11)."""
        self.connection.connect(wait=wait, timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        """Close the connection (RTN12) and stop the client's threads; idempotent."""
        if self._closed:
            return
        self._closed = True
        live = self.connection.state not in (_S.INITIALIZED, _S.CLOSED, _S.FAILED)
        if live and self._loop.running:
            try:
                self.connection.close(wait=True, timeout=timeout)
            except AblyException as exc:
                self.log.info("close did not complete cleanly: %s", exc.message)
        self._loop.stop()
        # Queued callbacks still run; nothing waits for them (close may run in one).
        if self._shared_pool:
            release_shared(self._dispatcher, self._callback_workers)
        else:
            self._dispatcher.close(wait=False, cancel=False)
        self.rest.close()

    # -- REST passthrough (RTC5, RTC6) ----------------------------------------------------
    def time(self) -> int:
        """Server time in ms since the epoch."""
        return self.rest.time()

    def stats(self, *args: Any, **kwargs: Any) -> PaginatedResult[Stats]:
        """Application statistics (RSC6)."""
        return self.rest.stats(*args, **kwargs)

    def __enter__(self) -> AblyRealtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AblyRealtime(state={self.connection.state.value}, options={self.options!r})"
