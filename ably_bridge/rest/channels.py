"""REST channels (RSN, RSL, RSP): the collection, one channel, and its presence.

* :class:`Channels` - ``get`` (or ``rest.channels[name]``), ``exists``/``in``,
  iteration, ``release`` (RSN1-RSN4); thread-safe.
* :class:`Channel` - ``publish`` with idempotent ids (RSL1k), encryption with
  the channel cipher (RSL5), the size limit (RSL1i); ``history`` (RSL2) and
  ``status`` (RSL8).
* :class:`Presence` - ``get`` (RSP3) and ``history`` (RSP4).

Payloads are encoded with :meth:`Message.encoded` and decoded with
``from_encoded_array`` using the channel's cipher; items that cannot be fully
decoded keep their ``encoding`` and a ``decode_error`` (RSL6b) and are logged.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ably_bridge.encoding.crypto import ChannelCipher, CipherParams, get_cipher
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.models import Message, PresenceMessage
from ably_bridge.protocol.publish_rules import check_client_ids, check_total_size
from ably_bridge.protocol.stats import ChannelDetails
from ably_bridge.rest.channel_registry import ChannelRegistry
from ably_bridge.rest.pagination import PaginatedResult

if TYPE_CHECKING:
    from ably_bridge.rest.client import AblyRest

__all__ = ["Channel", "Channels", "Presence", "PublishResult", "history_params"]


MAX_LIMIT = 1000
CipherArg = ChannelCipher | CipherParams | Mapping[str, Any] | bytes | str | None
TimeArg = int | float | datetime | None


@dataclass(frozen=True)
class PublishResult:
    """What a publish returned (RSL1n): one serial per message (None if conflated)."""

    serials: list[str | None]
    message_id: str | None = None


def _ms(value: TimeArg) -> int | None:
    """A time bound in ms since the epoch; datetimes are converted (RSP4b1d)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def _check_limit(limit: int | None) -> None:
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise AblyException(
            f"limit must be between 1 and {MAX_LIMIT}", ErrorCode.INVALID_PARAMETER_VALUE, 400
        )


def _check_direction(direction: str | None) -> None:
    if direction is not None and direction not in ("forwards", "backwards"):
        raise AblyException(
            'direction must be "forwards" or "backwards"', ErrorCode.INVALID_PARAMETER_VALUE, 400
        )


def history_params(
    start: TimeArg = None,
    end: TimeArg = None,
    direction: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Validated query parameters of a history-style call (RSL2b, RSP4b, RSC6b)."""
    _check_limit(limit)
    _check_direction(direction)
    start_ms, end_ms = _ms(start), _ms(end)
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise AblyException("start must not be after end", ErrorCode.INVALID_PARAMETER_VALUE, 400)
    params = {"start": start_ms, "end": end_ms, "direction": direction, "limit": limit}
    return {k: v for k, v in params.items() if v is not None}


def _as_cipher(value: CipherArg) -> ChannelCipher | None:
    if value is None or isinstance(value, ChannelCipher):
        return value
    return get_cipher(value)


def idempotent_base() -> str:
    """RSL1k1: url-safe base64 of 9 random bytes (12 characters, no padding)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(9)).decode("ascii")


class Presence:
    """REST presence of one channel: current members and presence history."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def get(
        self,
        limit: int | None = None,
        client_id: str | None = None,
        connection_id: str | None = None,
    ) -> PaginatedResult[PresenceMessage]:
        """The members present now (RSP3), optionally filtered (RSP3a2, RSP3a3)."""
        _check_limit(limit)
        params = {"limit": limit, "clientId": client_id, "connectionId": connection_id}
        return self._channel._paginated(
            self._channel.path + "/presence", params, self._channel._decode_presence
        )

    def history(
        self,
        start: TimeArg = None,
        end: TimeArg = None,
        direction: str | None = None,
        limit: int | None = None,
    ) -> PaginatedResult[PresenceMessage]:
        """Past presence events (RSP4)."""
        params = history_params(start, end, direction, limit)
        return self._channel._paginated(
            self._channel.path + "/presence/history", params, self._channel._decode_presence
        )


class Channel:
    """One REST channel: publish, history, status and presence (RSL)."""

    def __init__(
        self,
        rest: AblyRest,
        name: str,
        cipher: CipherArg = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise AblyException(
                "a channel name must be a non-empty string", ErrorCode.INVALID_CHANNEL_NAME, 400
            )
        self._rest = rest
        self.name = name
        self.cipher: ChannelCipher | None = _as_cipher(cipher)
        self.params: dict[str, str] = dict(params or {})
        self.presence = Presence(self)

    @property
    def path(self) -> str:
        return "/channels/" + quote(self.name, safe="")

    def set_options(
        self, cipher: CipherArg = None, params: Mapping[str, str] | None = None
    ) -> None:
        """Replace the channel's cipher and params (RSL7)."""
        self.cipher = _as_cipher(cipher)
        self.params = dict(params or {})

    # -- publish (RSL1) ------------------------------------------------------------
    def publish(
        self,
        name: str | Message | Sequence[Message] | None = None,
        data: Any = None,
        *,
        messages: Sequence[Message] | None = None,
        extras: Mapping[str, Any] | None = None,
        client_id: str | None = None,
        id: str | None = None,
        connection_key: str | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> PublishResult:
        """Publish ``publish(name, data)``, ``publish(message)`` or ``publish(messages=[...])``.

        ``params`` go in the query string (RSL1l). Without ids of their own,
        messages get ``base:index`` ids so a retried request is published
        once (RSL1k1); the same bytes are sent on every retry. ``timeout`` is
        accepted for API symmetry with realtime and ignored: REST calls are
        bounded by the HTTP timeouts and retry duration.
        """
        batch = self._collect(name, data, messages, extras, client_id, id, connection_key)
        return self._send_messages(batch, params)

    def _collect(
        self,
        name: str | Message | Sequence[Message] | None,
        data: Any,
        messages: Sequence[Message] | None,
        extras: Mapping[str, Any] | None,
        client_id: str | None,
        msg_id: str | None,
        connection_key: str | None,
    ) -> list[Message]:
        if messages is not None:
            return list(messages)
        if isinstance(name, Message):
            return [name]
        if isinstance(name, Sequence) and not isinstance(name, str):
            return list(name)
        return [
            Message(
                name,
                data,
                id=msg_id,
                client_id=client_id,
                connection_key=connection_key,
                extras=dict(extras) if extras is not None else None,
            )
        ]

    def _send_messages(
        self, batch: list[Message], params: Mapping[str, Any] | None
    ) -> PublishResult:
        if not batch:
            raise AblyException("nothing to publish", ErrorCode.BAD_REQUEST, 400)
        if not all(isinstance(m, Message) for m in batch):
            raise AblyException("publish takes Message objects", ErrorCode.BAD_REQUEST, 400)
        check_client_ids(batch, self._rest.auth.client_id)  # RSL1g
        check_total_size(batch, self._rest.options.max_message_size)  # RSL1i
        body = encode_messages(batch, self.cipher, binary=self._rest.options.use_binary_protocol)
        add_idempotent_ids(batch, body, self._rest.options.idempotent_rest_publishing)
        response = self._rest.http.request(
            "POST", self.path + "/messages", params=params, body=body[0] if len(body) == 1 else body
        )
        result = response.body if isinstance(response.body, Mapping) else {}
        serials = result.get("serials")
        return PublishResult(
            serials=list(serials) if isinstance(serials, list) else [],
            message_id=result.get("messageId"),
        )

    # -- reading ------------------------------------------------------------------
    def history(
        self,
        start: TimeArg = None,
        end: TimeArg = None,
        direction: str | None = None,
        limit: int | None = None,
    ) -> PaginatedResult[Message]:
        """Stored messages (RSL2); ``direction`` defaults to backwards on the server."""
        params = history_params(start, end, direction, limit)
        return self._paginated(self.path + "/messages", params, self._decode_messages)

    def status(self) -> ChannelDetails:
        """Channel details and occupancy (RSL8)."""
        response = self._rest.http.request("GET", self.path)
        if not isinstance(response.body, Mapping):
            raise AblyException("channel details are not an object", ErrorCode.INTERNAL_ERROR, 500)
        return ChannelDetails.from_dict(response.body)

    def _paginated(self, path: str, params: Mapping[str, Any], decode: Any) -> PaginatedResult[Any]:
        return self._rest._paginated(path, {**self.params, **params}, decode)

    def _decode_messages(self, body: Any) -> list[Message]:
        items = Message.from_encoded_array(body if body is not None else [], self.cipher)
        _log_decode_errors(self._rest.log, self.name, items)
        return items

    def _decode_presence(self, body: Any) -> list[PresenceMessage]:
        items = PresenceMessage.from_encoded_array(body if body is not None else [], self.cipher)
        _log_decode_errors(self._rest.log, self.name, items)
        return items

    def __repr__(self) -> str:
        return f"Channel(name={self.name!r}, encrypted={self.cipher is not None})"


def _log_decode_errors(
    log: logging.Logger, channel: str, items: Sequence[Message | PresenceMessage]
) -> None:
    for item in items:
        if item.decode_error is not None:  # RSL6b: delivered with the encoding left
            log.warning("could not decode a payload on %r: %s", channel, item.decode_error.message)


def with_idempotent_ids(batch: list[Message], enabled: bool) -> list[Message]:
    """RSL1k1-3: ids ``base:0..n`` when every id is empty; client ids are kept as given."""
    if not enabled or any(m.id for m in batch):
        return batch
    base = idempotent_base()
    return [replace(m, id=f"{base}:{index}") for index, m in enumerate(batch)]


def add_idempotent_ids(batch: Sequence[Message], wire: list[dict[str, Any]], enabled: bool) -> None:
    """RSL1k1-3 on the wire dicts of ``batch``, leaving the caller's messages untouched."""
    if enabled and not any(m.id for m in batch):
        base = idempotent_base()
        for index, item in enumerate(wire):
            item["id"] = f"{base}:{index}"


def encode_messages(
    batch: Sequence[Message], cipher: ChannelCipher | None, *, binary: bool
) -> list[dict[str, Any]]:
    """Wire dicts of ``batch``, payloads encoded and encrypted (RSL4, RSL5)."""
    return [m.encoded(cipher).to_dict(binary=binary) for m in batch]


class Channels(ChannelRegistry[Channel]):
    """The channels of one REST client (RSN1-RSN4). Thread-safe."""

    def __init__(self, rest: AblyRest) -> None:
        super().__init__()
        self._rest = rest

    def get(
        self, name: str, cipher: CipherArg = None, params: Mapping[str, str] | None = None
    ) -> Channel:
        """The channel called ``name``, created on first use (RSN3a).

        Options given for an existing channel replace its options (RSN3c).
        """
        with self._lock:
            channel = self._channels.get(name)
            if channel is None:
                channel = Channel(self._rest, name, cipher, params)
                self._channels[name] = channel
            elif cipher is not None or params is not None:
                channel.set_options(cipher, params)
            return channel

    def release(self, name: str) -> None:
        """Forget a channel (RSN4a); unknown names are ignored (RSN4b)."""
        self._forget(name)
