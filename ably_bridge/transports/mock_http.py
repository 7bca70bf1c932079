"""A scripted, in-memory :class:`~ably_bridge.transports.http.HttpTransport` for tests.

:class:`MockHttpTransport` answers requests from rules matched by method,
host and path (first matching rule with uses left wins), or from a handler
function, and records every request it saw. Nothing touches the network, so
REST behaviour (fallbacks, retries, auth renewal, pagination) can be tested
with a :class:`~ably_bridge.clock.FakeClock` and no sleeps. Shipped for
users' tests as well as ours::

    mock = MockHttpTransport()
    mock.add(path="/time", json=[1700000000000])
    rest = AblyRest(key="app.key:secret", transport=mock)
    assert rest.time() == 1700000000000
    assert mock.requests[0].path == "/time"
"""

from __future__ import annotations

import json as _json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgpack

from ably_bridge.transports.http import Headers, HttpResponse, HttpTransportError, Timeout

__all__ = ["MockHttpTransport", "RecordedRequest", "error_body", "response"]

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/x-msgpack"

Handler = Callable[["RecordedRequest"], "HttpResponse | None"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the transport received it."""

    method: str
    url: str
    headers: Headers
    body: bytes | None
    timeout: Timeout

    @property
    def _split(self) -> Any:
        return urlsplit(self.url)

    @property
    def scheme(self) -> str:
        return str(self._split.scheme)

    @property
    def host(self) -> str:
        return str(self._split.hostname or "")

    @property
    def port(self) -> int | None:
        port: int | None = self._split.port
        return port

    @property
    def path(self) -> str:
        return str(self._split.path)

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (the last value wins for repeated names)."""
        return dict(parse_qsl(self._split.query, keep_blank_values=True))

    def decoded_body(self) -> Any:
        """The body decoded by its Content-Type (JSON, msgpack, or form as a dict)."""
        if self.body is None:
            return None
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type == MSGPACK_TYPE:
            return msgpack.unpackb(self.body, raw=False)
        if content_type == "application/x-www-form-urlencoded":
            return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
        return _json.loads(self.body)


def response(
    status: int = 200,
    *,
    json: Any = None,
    msgpack_body: Any = None,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    """Build an :class:`HttpResponse`: JSON (``json=``), msgpack, or raw bytes/text."""
    all_headers = dict(headers or {})
    raw = b""
    if json is not None:
        raw = _json.dumps(json).encode("utf-8")
        all_headers.setdefault("Content-Type", JSON_TYPE)
    elif msgpack_body is not None:
        raw = msgpack.packb(msgpack_body, use_bin_type=True)
        all_headers.setdefault("Content-Type", MSGPACK_TYPE)
    elif isinstance(body, str):
        raw = body.encode("utf-8")
        all_headers.setdefault("Content-Type", "text/plain")
    elif body is not None:
        raw = body
    return HttpResponse(status, Headers(all_headers), raw)


def error_body(code: int, status: int, message: str = "error") -> dict[str, Any]:
    """The JSON shape of an Ably error response."""
    return {"error": {"code": code, "statusCode": status, "message": message}}


@dataclass
class _Rule:
    method: str | None
    host: str | None
    path: str | None
    reply: HttpResponse | HttpTransportError | Handler
    times: int | None  # None: forever

    def matches(self, request: RecordedRequest) -> bool:
        return (
            (self.times is None or self.times > 0)
            and (self.method is None or self.method.upper() == request.method.upper())
            and (self.host is None or self.host == request.host)
            and (self.path is None or self.path == request.path)
        )


@dataclass
class MockHttpTransport:
    """Answers from scripted rules; records every request in :attr:`requests`."""

    requests: list[RecordedRequest] = field(default_factory=list)
    handler: Handler | None = None
    closed: bool = False
    _rules: list[_Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        *,
        method: str | None = None,
        host: str | None = None,
        path: str | None = None,
        status: int = 200,
        json: Any = None,
        msgpack_body: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        error: HttpTransportError | None = None,
        handler: Handler | None = None,
        times: int | None = 1,
    ) -> None:
        """Script a reply for matching requests, ``times`` times (None: for ever).

        The reply is ``error`` (raised), ``handler(request)`` (returned), or a
        response built from ``status`` and ``json``/``msgpack_body``/``body``.
        """
        reply: HttpResponse | HttpTransportError | Handler
        if error is not None:
            reply = error
        elif handler is not None:
            reply = handler
        else:
            reply = response(
                status, json=json, msgpack_body=msgpack_body, body=body, headers=headers
            )
        with self._lock:
            self._rules.append(_Rule(method, host, path, reply, times))

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: Timeout,
    ) -> HttpResponse:
        recorded = RecordedRequest(method.upper(), url, Headers(headers), body, timeout)
        with self._lock:
            self.requests.append(recorded)
            rule = next((r for r in self._rules if r.matches(recorded)), None)
            if rule is not None and rule.times is not None:
                rule.times -= 1
        reply: HttpResponse | HttpTransportError | Handler | None
        reply = rule.reply if rule is not None else self.handler
        if reply is None:
            raise LookupError(f"MockHttpTransport: nothing scripted for {method} {url}")
        if isinstance(reply, HttpTransportError):
            raise reply
        if isinstance(reply, HttpResponse):
            return reply
        answer = reply(recorded)
        if answer is None:
            raise LookupError(f"MockHttpTransport: handler declined {method} {url}")
        return answer

    def close(self) -> None:
        self.closed = True

    # -- conveniences for assertions ------------------------------------------
    @property
    def hosts(self) -> list[str]:
        """The host of every request, in order."""
        return [r.host for r in self.requests]

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    def reset(self) -> None:
        """Forget recorded requests and every rule."""
        with self._lock:
            self.requests.clear()
            self._rules.clear()
