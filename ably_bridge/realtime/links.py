"""The loop's links to the outside: websockets, tokens and the connectivity check.

:class:`Links` performs the network effects of the core (``OpenTransport``,
``CloseTransport``, ``SendFrame``, ``RequestToken``, ``CheckConnectivity``)
without ever blocking the loop thread on the network:

* dialing runs on a short-lived *dial thread* that posts ``transport_opened`` or
  ``transport_failed``; each websocket is then read by the process's reactor
  thread (:mod:`ably_bridge.transports.reactor`), or with
  ``shared_reader=False`` by a *reader thread* of its own
  (:class:`~ably_bridge.transports.websocket.WebSocketTransport`); either decodes
  frames (:func:`~ably_bridge.protocol.codec.decode_frame`) and steps the
  session with every frame of one socket read (:meth:`.SessionLoop.post_frames`:
  no wake-up of the loop thread); an undecodable frame is logged and dropped;
* closing a socket (which waits for the close handshake) runs on its own thread;
* tokens come from the REST client's :class:`~ably_bridge.rest.auth.Auth` on a
  *token thread* that posts ``token_obtained`` / ``token_failed``; a newer
  request supersedes an older one (its answer is dropped);
* with a token that expires, a renewal is planned shortly before expiry
  (:attr:`Links.renew_at`, a monotonic time the loop waits for): a new token is
  fetched and sent in an AUTH message, so the connection never sees the token
  expire (RTN22 done client-side; the server only tells us after expiry, 40142).

Every method except the thread bodies runs holding the session (on the loop
thread, or on a reader thread stepping the session with its frames).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ably_bridge.errors import AblyException, EncodingError, ErrorCode
from ably_bridge.protocol.codec import decode_frame, encode_frame
from ably_bridge.protocol.events import ConnectionState, Effect, OpenTransport
from ably_bridge.protocol.models import ProtocolMessage
from ably_bridge.realtime.callback_pool import deferred_wakes
from ably_bridge.rest.http import agent_header
from ably_bridge.transports.reactor import shared_reactor
from ably_bridge.transports.websocket import Frame, WebSocketTransport

if TYPE_CHECKING:
    from ably_bridge.options import ClientOptions
    from ably_bridge.protocol.connection import ConnectionCore
    from ably_bridge.protocol.tokens import TokenDetails
    from ably_bridge.rest.client import AblyRest

__all__ = ["Links", "websocket_url"]


CONNECTIVITY_URL = "https://internet-up.ably-realtime.com/is-the-internet-up.txt"  # RTN17j
RENEW_MARGIN_MAX = 30.0  # seconds before expiry at most (Ably's own AUTH lead time)
RENEW_MARGIN_FRACTION = 0.2  # ...but at most this share of the token's remaining life
RENEW_MIN_DELAY = 0.1

Post = Callable[[Callable[[float], Any]], None]
PostFrames = Callable[[int, list[ProtocolMessage]], None]
_S = ConnectionState


def websocket_url(options: ClientOptions, host: str, params: dict[str, str]) -> str:
    """``ws[s]://host:port/?query`` (RTN2)."""
    scheme = "wss" if options.tls else "ws"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{options.effective_port}/?{urlencode(params)}"


class Links:
    """Transports, token requests and the connectivity check of one session."""

    def __init__(
        self,
        options: ClientOptions,
        rest: AblyRest,
        core: ConnectionCore,
        post: Post,
        post_frames: PostFrames,
        log: logging.Logger | None = None,
    ) -> None:
        self.options = options
        self.log = log or logging.getLogger(__name__)  # the client's logger
        self._rest = rest
        self._core = core
        self._post = post
        self._post_frames = post_frames
        self._binary = options.use_binary_protocol
        self._headers = {"Ably-Agent": agent_header(options)}
        self._transports: dict[int, WebSocketTransport] = {}
        self._current: WebSocketTransport | None = None
        self._token_generation = 0
        self._closed = False
        self.read_limit: int | None = None
        self.renew_at: float | None = None  # monotonic time of the planned token renewal
        self.undecodable_frames = 0

    # -- transports -----------------------------------------------------------------
    def open(self, effect: OpenTransport) -> None:
        if self._closed:
            return
        tid = effect.transport_id
        url = websocket_url(self.options, effect.host, effect.params)
        transport = WebSocketTransport(
            url,
            on_frame=partial(self._on_frame, tid),
            on_frames=partial(self._on_frames, tid),
            on_close=partial(self._on_close, tid),
            headers=self._headers,
            connect_timeout=self.options.realtime_request_timeout,
            dialer=self.options.websocket_dialer,
            name=f"ably-ws-{tid}",
            read_limit=self.read_limit,
            reactor=shared_reactor(deferred_wakes) if self.options.shared_reader else None,
            log=self.log,
        )
        self._transports[tid] = transport
        self._current = transport
        self.log.debug("opening transport %d to %s", tid, effect.host)
        threading.Thread(
            target=self._dial, args=(tid, transport), name=f"ably-dial-{tid}", daemon=True
        ).start()

    def _dial(self, tid: int, transport: WebSocketTransport) -> None:
        core = self._core
        try:
            transport.open()
        except AblyException as exc:
            error = exc
            self._post(lambda now: core.transport_failed(tid, error, now))
            return
        self._post(lambda now: core.transport_opened(tid, now))

    def _on_frame(self, tid: int, data: Frame) -> None:
        self._on_frames(tid, [data])

    def _on_frames(self, tid: int, frames: list[Frame]) -> None:
        # Reader thread: decode here, so the loop thread only runs the state machine.
        decoded: list[ProtocolMessage] = []
        for data in frames:
            try:
                decoded.append(decode_frame(data, binary=not isinstance(data, str)))
            except EncodingError as exc:
                self.undecodable_frames += 1
                self.log.warning(
                    "dropping an undecodable frame on transport %d: %s", tid, exc.message
                )
        if decoded:
            self._post_frames(tid, decoded)

    def _on_close(self, tid: int, error: AblyException | None) -> None:
        core = self._core

        def closed(now: float) -> Sequence[Effect]:
            transport = self._transports.pop(tid, None)
            if transport is not None and transport is self._current:
                self._current = None
            return core.transport_failed(tid, error, now)

        self._post(closed)

    def close(self, tid: int) -> None:
        transport = self._transports.pop(tid, None)
        if transport is None:
            return
        if transport is self._current:
            self._current = None
        # The close handshake can wait for the server; never on the loop thread.
        threading.Thread(target=transport.close, name=f"ably-close-{tid}", daemon=True).start()

    def send(self, frame: ProtocolMessage) -> None:
        transport = self._current
        if transport is None:
            self.log.debug("no transport for an outbound %s frame; dropped", frame.action)
            return
        try:
            transport.send(encode_frame(frame, binary=self._binary))
        except AblyException as exc:
            # The transport reports its end through on_close; the core then resumes.
            self.log.debug("send failed: %s", exc.message)

    def set_read_limit(self, limit: int | None) -> None:
        self.read_limit = limit
        for transport in self._transports.values():
            transport.read_limit = limit

    def shutdown(self) -> None:
        """Close every transport and forget pending token answers (client closed)."""
        self._closed = True
        self._token_generation += 1
        self.renew_at = None
        for tid in list(self._transports):
            self.close(tid)

    # -- connectivity (RTN17j) ----------------------------------------------------------
    def check_connectivity(self) -> None:
        url = self.options.connectivity_check_url or CONNECTIVITY_URL
        timeout = self.options.http_request_timeout
        core = self._core

        def check() -> None:
            import requests

            try:
                response = requests.get(url, timeout=timeout)
                ok = response.status_code == 200 and "yes" in response.text
            except Exception:
                ok = False
            self._post(lambda now: core.connectivity_checked(ok, now))

        threading.Thread(target=check, name="ably-connectivity", daemon=True).start()

    # -- tokens (RSA4, RTN14b, RTN15h2, RTN22, RTC8) ----------------------------------------
    def request_token(self, *, force: bool, proactive: bool) -> None:
        self._token_generation += 1
        generation = self._token_generation
        self.renew_at = None

        def fetch() -> None:
            try:
                details = self._obtain(force)
            except Exception as exc:
                error = _auth_error(exc)
                self._post(lambda now: self._token_failed(generation, error, now, proactive))
                return
            self._post(lambda now: self._token_obtained(generation, details, now, proactive))

        threading.Thread(target=fetch, name="ably-token", daemon=True).start()

    def _obtain(self, force: bool) -> TokenDetails:
        auth = self._rest.auth
        if not force:
            credential = auth.credential()  # the cached token while it is valid (RSA4b1)
            details = auth.token_details
            if credential.token is not None and details is not None:
                return details
        return auth.authorize()

    def _token_obtained(
        self, generation: int, details: TokenDetails, now: float, proactive: bool
    ) -> Sequence[Effect]:
        if generation != self._token_generation or self._closed:
            return []  # superseded by a newer request
        return self.token_obtained(details, now, only_if_connected=proactive)

    def token_obtained(
        self, details: TokenDetails, now: float, *, only_if_connected: bool = False
    ) -> Sequence[Effect]:
        """Hand a token to the core (also for ``auth.authorize()``) and plan its renewal."""
        core = self._core
        if only_if_connected and core.state != _S.CONNECTED:
            return []  # the reconnect in progress fetches its own token
        self._plan_renewal(details, now)
        return core.token_obtained(details.token, now)

    def _token_failed(
        self, generation: int, error: AblyException, now: float, proactive: bool
    ) -> Sequence[Effect]:
        if generation != self._token_generation or self._closed:
            return []
        if proactive:
            self.log.warning("token renewal failed: %s (%d)", error.message, error.code)
        return self._core.token_failed(error, now)

    def _plan_renewal(self, details: TokenDetails, now: float) -> None:
        if details.expires is None:
            self.renew_at = None
            return
        offset = self._rest.auth.server_time_offset_ms or 0
        remaining = (details.expires - self.options.clock.time_ms() - offset) / 1000.0
        margin = min(RENEW_MARGIN_MAX, max(remaining, 0.0) * RENEW_MARGIN_FRACTION)
        self.renew_at = now + max(remaining - margin, RENEW_MIN_DELAY)

    def renew_due(self, now: float, state: ConnectionState) -> bool:
        """True once when the planned renewal is due and the connection can use it."""
        if self.renew_at is None or now < self.renew_at:
            return False
        self.renew_at = None
        return state == _S.CONNECTED

    def connection_state_changed(self, state: ConnectionState, now: float) -> None:
        if state in (_S.CLOSED, _S.FAILED):
            self.renew_at = None


def _auth_error(exc: BaseException) -> AblyException:
    """RSA4c/RSA4d: an auth failure during realtime auth is 80019, 403 kept as 403."""
    status = 401
    probe: BaseException | None = exc
    for _ in range(8):  # a short walk down the cause chain
        if probe is None:
            break
        if isinstance(probe, AblyException) and probe.status_code == 403:
            status = 403
            break
        probe = probe.__cause__ or getattr(probe, "cause", None)
    message = exc.message if isinstance(exc, AblyException) else str(exc) or type(exc).__name__
    return AblyException(
        f"unable to obtain a token: {message}", ErrorCode.TOKEN_REQUEST_FAILED, status, cause=exc
    )
