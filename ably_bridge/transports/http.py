"""The HTTP seam: the only module that touches ``requests``.

It owns three small things:

* :class:`HttpResponse` - status, case-insensitive headers and the raw body;
* :class:`HttpTransportError` - every failure below HTTP (DNS, refused
  connections, TLS, timeouts), translated once, here, and labelled
  ``retryable`` (worth trying on a fallback host, RSC15l1/RSC15l2) or not;
* :class:`HttpTransport` - the protocol the REST funnel talks to, and
  :class:`RequestsTransport`, its implementation over a pooled
  ``requests.Session`` and its transport adapter.

A transport knows nothing about Ably: no hosts, auth, formats or retries.
:mod:`ably_bridge.transports.mock_http` ships a scripted stand-in for tests.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, cast, runtime_checkable

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as u3
from urllib3.connectionpool import HTTPConnectionPool

from ably_bridge.shortcuts import enabled as shortcut_enabled
from ably_bridge.transports.failures import describe_failure, origin_of

__all__ = [
    "Headers",
    "HttpResponse",
    "HttpTransport",
    "HttpTransportError",
    "RequestsTransport",
    "Timeout",
]

log = logging.getLogger(__name__)

Timeout = tuple[float, float]
"""(connect timeout, read timeout) in seconds (TO3l3, TO3l4)."""


class Headers(Mapping[str, str]):
    """An immutable, case-insensitive view of HTTP headers that keeps the original names."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in (items or {}).items():
            self._items[name.lower()] = (name, str(value))

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __repr__(self) -> str:
        shown = {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in self.items()}
        return f"Headers({shown!r})"


@dataclass(frozen=True)
class HttpResponse:
    """What came back: a status, headers (case-insensitive) and the undecoded body."""

    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased ('' when absent)."""
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()


class HttpTransportError(Exception):
    """A request failed below HTTP. ``retryable`` says whether another host may succeed."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        timeout: bool = False,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.timeout = timeout
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


@runtime_checkable
class HttpTransport(Protocol):
    """Sends one HTTP request; raises :class:`HttpTransportError` for network failures."""

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: Timeout,
    ) -> HttpResponse: ...

    def close(self) -> None: ...


class RequestsTransport:
    """:class:`HttpTransport` over a ``requests.Session`` with connection pooling.

    Pass ``session`` to reuse one (proxies, certificates, mounted adapters); it
    is then used through ``Session.request`` as it is, and not closed by
    :meth:`close`. Urllib3's own retries are disabled: retrying is the REST
    funnel's job, on another host.

    An owned session reads the environment (``HTTPS_PROXY``, ``NO_PROXY``,
    ``REQUESTS_CA_BUNDLE``...) once per origin instead of on every request,
    and ``.netrc`` credentials are never used (the funnel sets Authorization).
    For an origin reached without a proxy it sends through the connection pool
    of its ``HTTPAdapter`` - the pool, TLS settings and verification that
    ``HTTPAdapter.send`` would pick - without building a ``PreparedRequest``, a
    ``Response`` and a cookie jar for every call: none of them carries anything
    an Ably request uses, and together they cost more CPU than the rest of a
    publish (bench/README.md). Proxied origins go through ``HTTPAdapter.send``,
    and so does every origin when the ``requests.urllib3_pool`` shortcut is off
    (:mod:`ably_bridge.shortcuts`): the same request on the wire either way.
    """

    def __init__(self, session: requests.Session | None = None, *, pool_maxsize: int = 16) -> None:
        self._owns_session = session is None
        self._adapter: HTTPAdapter | None = None
        self._direct = shortcut_enabled("requests.urllib3_pool")  # the pool's urlopen
        if session is None:
            session = requests.Session()
            session.trust_env = False  # environment read once per origin, below
            adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool_maxsize, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._adapter = adapter
        self._session = session
        self._routes: dict[str, _Route] = {}
        self._timeouts: dict[Timeout, urllib3.Timeout] = {}
        self._lock = threading.Lock()

    def _route(self, origin: str) -> _Route:
        """How to reach ``origin`` (proxies and CA bundle from the environment), cached."""
        route = self._routes.get(origin)
        if route is None:
            route = _Route(requests.utils.get_environ_proxies(origin))
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                route.verify = bundle
            with self._lock:
                route = self._routes.setdefault(origin, route)
        return route

    def _pool(self, adapter: HTTPAdapter, origin: str, route: _Route) -> HTTPConnectionPool:
        pool = route.pool
        if pool is None or pool.pool is None:  # new, or closed since (evicted, close())
            probe = requests.PreparedRequest()
            probe.prepare(method="GET", url=origin + "/")
            opened = adapter.get_connection_with_tls_context(probe, route.verify, proxies=None)
            pool = route.pool = cast(HTTPConnectionPool, opened)
        return pool

    def _timeout(self, timeout: Timeout) -> urllib3.Timeout:
        value = self._timeouts.get(timeout)
        if value is None:
            value = urllib3.Timeout(connect=timeout[0], read=timeout[1])
            self._timeouts[timeout] = value
        return value

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: Timeout,
    ) -> HttpResponse:
        adapter = self._adapter
        if adapter is None:
            return self._via_session(method, url, headers, body, timeout)
        cut = url.find("/", url.find("//") + 2)
        origin, target = (url, "/") if cut < 0 else (url[:cut], url[cut:])
        route = self._route(origin)
        if route.proxies or not self._direct:
            return self._via_adapter(adapter, route, method, url, headers, body, timeout)
        body, headers = _with_length(method, body, headers)
        for attempt in (1, 2):
            pool = self._pool(adapter, origin, route)
            try:
                answer = pool.urlopen(
                    method,
                    target,
                    body=body,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    timeout=self._timeout(timeout),
                    preload_content=True,
                    decode_content=True,
                )
            except u3.ClosedPoolError as exc:
                if attempt == 2:  # pragma: no cover - closed twice in a row
                    raise translate_urllib3_error(exc, url) from exc
                route.pool = None
                continue
            except (u3.HTTPError, OSError) as exc:
                raise translate_urllib3_error(exc, url) from exc
            # A repeated header (Link) reads as one comma-joined value, as in requests.
            fields = answer.headers
            return HttpResponse(answer.status, Headers({k: fields[k] for k in fields}), answer.data)
        raise AssertionError("unreachable")  # pragma: no cover

    def _via_adapter(
        self,
        adapter: HTTPAdapter,
        route: _Route,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: Timeout,
    ) -> HttpResponse:
        def send() -> requests.Response:
            prepared = requests.PreparedRequest()
            prepared.prepare(method=method, url=url, headers=dict(headers), data=body)
            verify, proxies = route.verify, route.proxies
            return adapter.send(prepared, timeout=timeout, verify=verify, proxies=proxies)

        return _through_requests(send, url)

    def _via_session(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: Timeout,
    ) -> HttpResponse:
        return _through_requests(
            lambda: self._session.request(
                method, url, headers=dict(headers), data=body, timeout=timeout
            ),
            url,
        )

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __repr__(self) -> str:
        return f"RequestsTransport(owns_session={self._owns_session})"


def _with_length(
    method: str, body: bytes | None, headers: Mapping[str, str]
) -> tuple[bytes | None, Mapping[str, str]]:
    """The body and headers as ``PreparedRequest`` sends them: ``Content-Length`` last,
    and ``0`` for an empty or absent body of a method other than GET and HEAD (so the
    direct path writes the very bytes ``HTTPAdapter.send`` would)."""
    if not body:
        body = None
        if method in ("GET", "HEAD"):
            return body, headers
    if any(name.lower() == "content-length" for name in headers):
        return body, headers
    sized = dict(headers)
    sized["Content-Length"] = str(len(body)) if body else "0"
    return body, sized


@dataclass
class _Route:
    """What the environment says about one origin, and its pool once opened."""

    proxies: dict[str, str]
    verify: bool | str = True
    pool: HTTPConnectionPool | None = None


def _through_requests(send: Callable[[], requests.Response], url: str) -> HttpResponse:
    """Run a ``requests`` call and read its body, translating its errors (RSC15l)."""
    try:
        response = send()
        content = response.content
    except requests.exceptions.RequestException as exc:
        raise translate_error(exc, url) from exc
    return HttpResponse(response.status_code, Headers(response.headers), content)


def _where(url: str) -> str:
    return origin_of(url) if url else "the server"


def _timed_out(exc: BaseException, url: str) -> HttpTransportError:
    return HttpTransportError(
        f"no answer from {_where(url)} in time ({type(exc).__name__})",
        retryable=True,
        timeout=True,
        cause=exc,
    )


def _unreachable(exc: BaseException, url: str) -> HttpTransportError:
    return HttpTransportError(
        f"cannot connect to {_where(url)}: {describe_failure(exc)}", retryable=True, cause=exc
    )


def translate_error(exc: requests.exceptions.RequestException, url: str = "") -> HttpTransportError:
    """Map a ``requests`` exception to a transport error with its retryability (RSC15l).

    The message names where the request went (``url``'s host and port) and the
    likely cause (:func:`~ably_bridge.transports.failures.describe_failure`).
    """
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.Timeout):
        # ConnectTimeout and ReadTimeout alike: another host may answer (RSC15l2).
        return _timed_out(exc, url)
    if isinstance(
        exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError
    ):
        # Unresolvable or unreachable host, refused, reset, TLS failure (RSC15l1).
        return _unreachable(exc, url)
    # Invalid URL, schema, headers...: the same request would fail anywhere.
    return HttpTransportError(f"request could not be sent ({name})", retryable=False, cause=exc)


def translate_urllib3_error(exc: BaseException, url: str = "") -> HttpTransportError:
    """Map a urllib3 (or socket) failure to a transport error, as :func:`translate_error` does."""
    name = type(exc).__name__
    # NewConnectionError subclasses ConnectTimeoutError in urllib3: a refusal, not a timeout.
    if isinstance(exc, u3.TimeoutError | TimeoutError) and not isinstance(
        exc, u3.NewConnectionError
    ):
        return _timed_out(exc, url)
    if isinstance(
        exc,
        u3.NewConnectionError
        | u3.ProtocolError
        | u3.SSLError
        | u3.ProxyError
        | u3.PoolError
        | u3.DecodeError
        | OSError,
    ):
        return _unreachable(exc, url)
    return HttpTransportError(f"request could not be sent ({name})", retryable=False, cause=exc)
