"""The HTTP seam: the only module that touches ``requests``.

It owns three small things:

* :class:`HttpResponse` - status, case-insensitive headers and the raw body;
* :class:`HttpTransportError` - every failure below HTTP (DNS, refused
  connections, TLS, timeouts), translated once, here, and labelled
  ``retryable`` (worth trying on a fallback host, RSC15l1/RSC15l2) or not;
* :class:`HttpTransport` - the protocol the REST funnel talks to, and
  :class:`RequestsTransport`, its implementation over a pooled
  ``requests.Session``.

A transport knows nothing about Ably: no hosts, auth, formats or retries.
:mod:`ably_bridge.transports.mock_http` ships a scripted stand-in for tests.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

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

    Pass ``session`` to reuse one (proxies, certificates); it is then not
    closed by :meth:`close`. Urllib3's own retries are disabled: retrying is
    the REST funnel's job, on another host.

    An owned session reads the environment (``HTTPS_PROXY``, ``NO_PROXY``,
    ``REQUESTS_CA_BUNDLE``...) once per origin instead of on every request,
    which ``requests`` otherwise does at a cost of about a quarter of a publish;
    ``.netrc`` credentials are never used (the funnel sets Authorization).
    """

    def __init__(self, session: requests.Session | None = None, *, pool_maxsize: int = 16) -> None:
        self._owns_session = session is None
        self._adapter: HTTPAdapter | None = None
        if session is None:
            session = requests.Session()
            session.trust_env = False  # environment read once per origin, below
            adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool_maxsize, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._adapter = adapter
        self._session = session
        self._env_settings: dict[str, dict[str, Any]] = {}
        self._env_lock = threading.Lock()

    def _settings_for(self, url: str) -> dict[str, Any]:
        """Proxies and CA bundle from the environment for ``url``'s origin, cached."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        settings = self._env_settings.get(origin)
        if settings is None:
            settings = {"proxies": requests.utils.get_environ_proxies(origin)}
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                settings["verify"] = bundle
            with self._env_lock:
                self._env_settings[origin] = settings
        return settings

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: Timeout,
    ) -> HttpResponse:
        try:
            if self._adapter is not None:
                # Our own session: prepare and send straight through the pooled adapter.
                # Session.request would merge cookies, hooks, auth and environment for
                # every call, none of which an Ably request uses, at ~a third of its cost.
                prepared = requests.PreparedRequest()
                prepared.prepare(method=method, url=url, headers=dict(headers), data=body)
                settings = self._settings_for(url)
                response = self._adapter.send(
                    prepared,
                    timeout=timeout,
                    verify=settings.get("verify", True),
                    proxies=settings["proxies"],
                )
            else:
                response = self._session.request(
                    method, url, headers=dict(headers), data=body, timeout=timeout
                )
            content = response.content
        except requests.exceptions.RequestException as exc:
            raise translate_error(exc) from exc
        return HttpResponse(response.status_code, Headers(response.headers), content)

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __repr__(self) -> str:
        return f"RequestsTransport(owns_session={self._owns_session})"


def translate_error(exc: requests.exceptions.RequestException) -> HttpTransportError:
    """Map a ``requests`` exception to a transport error with its retryability (RSC15l)."""
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.Timeout):
        # ConnectTimeout and ReadTimeout alike: another host may answer (RSC15l2).
        return HttpTransportError(
            f"request timed out ({name})", retryable=True, timeout=True, cause=exc
        )
    if isinstance(
        exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError
    ):
        # Unresolvable or unreachable host, refused, reset, TLS failure (RSC15l1).
        return HttpTransportError(f"connection failed ({name})", retryable=True, cause=exc)
    # Invalid URL, schema, headers...: the same request would fail anywhere.
    return HttpTransportError(f"request could not be sent ({name})", retryable=False, cause=exc)
