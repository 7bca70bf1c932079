"""``AblyRest``: the synchronous, thread-safe REST client (RSC).

It wires the pieces together - options, the HTTP transport, the
:class:`~ably_bridge.rest.http.RestHttp` funnel, :class:`Auth` and
:class:`Channels` - and owns the client-level calls: ``time`` (RSC16),
``stats`` (RSC6), ``request`` (RSC19), ``batch_publish`` (RSC22), and
``close``/context-manager use. Each client logs through a logger of its own
(:mod:`.logs`), to which ``log_level`` and ``log_handler`` apply (TO3b, TO3c).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.options import ClientOptions
from ably_bridge.protocol.models import Message
from ably_bridge.protocol.stats import Stats
from ably_bridge.rest.auth import Auth
from ably_bridge.rest.channels import (
    Channels,
    encode_messages,
    history_params,
    with_idempotent_ids,
)
from ably_bridge.rest.http import RestHttp
from ably_bridge.rest.logs import client_logger
from ably_bridge.rest.pagination import HttpPaginatedResponse, PageResponse, PaginatedResult
from ably_bridge.transports.http import HttpTransport, RequestsTransport

__all__ = ["AblyRest", "BatchPublishSpec", "BatchResult"]

STATS_UNITS = ("minute", "hour", "day", "month")

T = TypeVar("T")


@dataclass(frozen=True)
class BatchPublishSpec:
    """Messages for several channels in one request (BSP2a, BSP2b)."""

    channels: Sequence[str]
    messages: Sequence[Message]


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one BatchPublishSpec (BAR): per-channel successes and failures.

    Each result is a dict: ``{"channel", "messageId", "serials"}`` on success
    (BPR2) or ``{"channel", "error": AblyException}`` on failure (BPF2).
    """

    success_count: int
    failure_count: int
    results: list[dict[str, Any]] = field(default_factory=list)


class AblyRest:
    """A REST client; safe to share between threads.

    ``AblyRest("appId.keyId:secret")``, ``AblyRest(token)``,
    ``AblyRest(ClientOptions(...))`` or ``AblyRest(key=..., endpoint=...)``.
    ``transport`` replaces the HTTP transport (for example a
    :class:`~ably_bridge.transports.mock_http.MockHttpTransport`).
    """

    def __init__(
        self,
        key_or_options: str | ClientOptions | None = None,
        /,
        *,
        transport: HttpTransport | None = None,
        logger: logging.Logger | None = None,
        **options: Any,
    ) -> None:
        self.options = ClientOptions.build(key_or_options, **options)
        # TO3b, TO3c: this client's own logger (``logger`` replaces it, unconfigured)
        self.log: logging.Logger = logger or client_logger("rest", self.options)
        self._transport = transport or RequestsTransport(self.options.http_session)
        self.http = RestHttp(self.options, self._transport, log=self.log)
        self.auth = Auth(self.options, self.http)
        self.http.auth = self.auth
        self.channels = Channels(self)
        self._closed = False
        self.log.debug("created REST client %r", self.options)

    # -- properties ----------------------------------------------------------------
    @property
    def client_id(self) -> str | None:
        """``auth.client_id`` (RSC17)."""
        return self.auth.client_id

    # -- calls -----------------------------------------------------------------------
    def time(self) -> int:
        """Ably's time in ms since the epoch (RSC16); needs no auth."""
        response = self.http.request("GET", "/time", authenticated=False)
        body = response.body
        if not isinstance(body, list) or not body:
            raise AblyException("unexpected /time response", ErrorCode.INTERNAL_ERROR, 500)
        return int(body[0])

    def stats(
        self,
        start: int | float | Any = None,
        end: int | float | Any = None,
        direction: str | None = None,
        limit: int | None = None,
        unit: str | None = None,
    ) -> PaginatedResult[Stats]:
        """Application statistics (RSC6); ``unit`` is minute, hour, day or month."""
        if unit is not None and unit not in STATS_UNITS:
            raise AblyException(
                f"unit must be one of {', '.join(STATS_UNITS)}",
                ErrorCode.INVALID_PARAMETER_VALUE,
                400,
            )
        params = history_params(start, end, direction, limit)
        if unit is not None:
            params["unit"] = unit
        return self._paginated("/stats", params, _decode_stats)

    def request(
        self,
        method: str,
        path: str,
        version: str | int | None = None,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpPaginatedResponse:
        """Any REST call, with this client's auth, formats and fallbacks (RSC19).

        Errors from Ably come back in the response (``success``,
        ``error_code``, ``error_message``); network failures raise.
        """
        if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise AblyException(f"unsupported method {method!r}", ErrorCode.BAD_REQUEST, 400)
        ver = None if version is None else str(version)

        def fetch(target: str) -> PageResponse:
            r = self.http.request("GET", target, headers=headers, version=ver, raise_on_error=False)
            return PageResponse(r.status, r.headers, r.body, r.path)

        response = self.http.request(
            method.upper(),
            path,
            params=params,
            body=body,
            headers=headers,
            version=ver,
            raise_on_error=False,
        )
        page = PageResponse(response.status, response.headers, response.body, response.path)
        return HttpPaginatedResponse(page, fetch)

    def batch_publish(
        self,
        specs: BatchPublishSpec
        | Mapping[str, Any]
        | Sequence[BatchPublishSpec | Mapping[str, Any]],
    ) -> BatchResult | list[BatchResult]:
        """Publish to several channels in one request (RSC22c); one result per spec."""
        single = isinstance(specs, BatchPublishSpec | Mapping)
        spec_list: list[BatchPublishSpec | Mapping[str, Any]] = (
            [specs] if isinstance(specs, BatchPublishSpec | Mapping) else list(specs)
        )
        if not spec_list:
            raise AblyException("no batch publish specs given", ErrorCode.BAD_REQUEST, 400)
        body = [self._encode_spec(_as_spec(s)) for s in spec_list]
        response = self.http.request("POST", "/messages", body=body)
        results = _batch_results(response.body, len(body))
        return results[0] if single else results

    def _encode_spec(self, spec: BatchPublishSpec) -> dict[str, Any]:
        if not spec.channels or not spec.messages:
            raise AblyException(
                "a batch spec needs channels and messages", ErrorCode.BAD_REQUEST, 400
            )
        batch = with_idempotent_ids(  # RSC22d: per spec
            list(spec.messages), self.options.idempotent_rest_publishing
        )
        messages = encode_messages(batch, None, binary=self.options.use_binary_protocol)
        return {"channels": list(spec.channels), "messages": messages}

    # -- pagination plumbing ---------------------------------------------------------
    def _fetch_page(self, target: str) -> PageResponse:
        response = self.http.request("GET", target)
        return PageResponse(response.status, response.headers, response.body, response.path)

    def _paginated(
        self, path: str, params: Mapping[str, Any], decode: Callable[[Any], list[T]]
    ) -> PaginatedResult[T]:
        response = self.http.request("GET", path, params=params)
        page = PageResponse(response.status, response.headers, response.body, response.path)
        return PaginatedResult.from_response(page, self._fetch_page, decode)

    # -- lifecycle -------------------------------------------------------------------
    def close(self) -> None:
        """Release pooled connections."""
        if self._closed:
            return
        self._closed = True
        self._transport.close()

    def __enter__(self) -> AblyRest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AblyRest(host={self.options.rest_host_name!r}, auth={self.auth.auth_mechanism})"


def _decode_stats(body: Any) -> list[Stats]:
    if body is None:
        return []
    if not isinstance(body, list):
        raise AblyException("stats response is not an array", ErrorCode.INTERNAL_ERROR, 500)
    return [Stats.from_dict(item) for item in body]


def _as_spec(value: BatchPublishSpec | Mapping[str, Any]) -> BatchPublishSpec:
    if isinstance(value, BatchPublishSpec):
        return value
    channels = value.get("channels")
    messages = value.get("messages")
    channel_list = [channels] if isinstance(channels, str) else list(channels or [])
    if isinstance(messages, Message | Mapping):
        messages = [messages]
    parsed = [m if isinstance(m, Message) else Message.from_dict(m) for m in messages or []]
    return BatchPublishSpec(channel_list, parsed)


def _batch_results(body: Any, count: int) -> list[BatchResult]:
    """BatchResult per spec from the v3+ envelope; a bare array is read as successes."""
    items = body if isinstance(body, list) else [body]
    results = []
    for item in items[:count]:
        if isinstance(item, Mapping) and "results" in item:
            entries = [_batch_entry(e) for e in item.get("results") or []]
            results.append(
                BatchResult(
                    int(item.get("successCount", 0)), int(item.get("failureCount", 0)), entries
                )
            )
        else:
            entries = [_batch_entry(e) for e in (item if isinstance(item, list) else [item])]
            failures = sum(1 for e in entries if "error" in e)
            results.append(BatchResult(len(entries) - failures, failures, entries))
    return results


def _batch_entry(raw: Any) -> dict[str, Any]:
    entry = dict(raw) if isinstance(raw, Mapping) else {"value": raw}
    if isinstance(entry.get("error"), Mapping):
        entry["error"] = AblyException.from_dict(entry["error"])
    return entry
