"""Tokens on the connection: obtained, failed, refused, renewed (RTN14b, RTN15h, RTN22, RTC8).

:class:`Authenticating` takes the tokens the driver fetched (answering
:class:`~ably_bridge.protocol.events.RequestToken`) and decides what a token
error from the server means: renew once and retry (RTN14b, RTN15h2), wait an
RTB1 delay when it comes again soon after a renewal, or fail when the token
cannot be renewed (RTN15h1, RSA4a2) or auth answers 403 (RSA4d). A server's
AUTH frame asks for a new token (RTN22); a token obtained while CONNECTED goes
to the server in an AUTH frame (RTC8a).
"""

from __future__ import annotations

from collections.abc import Sequence

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.connection.base import NO_EFFECTS
from ably_bridge.protocol.connection.connecting import Connecting
from ably_bridge.protocol.connection.table import Trigger
from ably_bridge.protocol.events import ConnectionState, Effect, RequestToken, SendFrame
from ably_bridge.protocol.models import ProtocolMessage

__all__ = ["Authenticating"]

_S = ConnectionState


class Authenticating(Connecting):
    """Token inputs and token errors; see the module docstring."""

    def token_obtained(self, token: str, now: float) -> Sequence[Effect]:
        """A token from Auth: continue the attempt, or re-authenticate (RTN22, RTC8)."""
        self._token = token
        self._token_auth = True
        state = self.state
        effects: list[Effect] = []
        if state == _S.CONNECTING:
            self._open(effects, now)  # awaited token, or RTC8b: restart with the new token
        elif state == _S.CONNECTED:
            auth = {"accessToken": token}
            effects.append(SendFrame(ProtocolMessage(Action.AUTH, auth=auth)))  # RTC8a
        elif state in (_S.DISCONNECTED, _S.SUSPENDED, _S.CLOSED, _S.FAILED):
            return self.connect(now)  # RTC8c
        return effects

    def token_failed(self, error: AblyException, now: float) -> Sequence[Effect]:
        """Auth could not produce a token (RTN14b, RTN15h2, RSA4c, RSA4d)."""
        effects: list[Effect] = []
        if self.state == _S.CONNECTING and self._awaiting == "token":
            if error.status_code == 403:
                self._fail(effects, error)  # RSA4d
            else:
                self._disconnected(effects, error, now)  # RTN14b, RSA4c2
        elif self.state == _S.CONNECTED:
            if error.status_code == 403:
                self._fail(effects, error)  # RSA4d
            else:
                self.error_reason = error  # RSA4c3: stay CONNECTED
        return effects

    def _token_error(self, effects: list[Effect], error: AblyException, now: float) -> None:
        """A token was refused: renew once and retry (RTN14b, RTN15h2), or fail (RTN15h1, RSA4a)."""
        self._close_transport(effects)
        if not self._renewable:
            if self.state == _S.CONNECTED:
                self._fail(effects, error)  # RTN15h1
            else:
                self._fail(effects, self._no_renewal_error(error))  # RSA4a2
            return
        if self._token_renewed and self.state == _S.CONNECTING:
            self._token, self._token_refused = None, True  # a new one next time
            self._disconnected(effects, error, now)  # RTN14b: the renewed token failed too
            return
        self._token_renewed = True
        self._token = None
        if self.state == _S.CONNECTED:
            quick = self._backoff.lost(self._last_activity)
            self._left_connected(now)
            if not quick:  # refused again soon after a renewal: wait (RTB1), renew then
                self._token_refused = True
                self._disconnected(effects, error, now)
                return
        self._set_state(effects, Trigger.RENEW, error)
        self._awaiting = "token"
        self._attempt_deadline = now + self._timeout
        effects.append(RequestToken(force=True, reason=error))

    def _no_renewal_error(self, cause: AblyException) -> AblyException:
        return AblyException(
            "token expired or refused and there is no means to renew it",
            ErrorCode.TOKEN_RENEWAL_NOT_CONFIGURED,
            401,
            cause=cause,
        )

    def _on_auth(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        if self.state != _S.CONNECTED:
            return NO_EFFECTS
        return [RequestToken(force=True)]  # RTN22
