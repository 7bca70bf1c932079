"""Why a connection failed, in words a user can act on.

This module owns :func:`describe_failure` and :func:`origin_of`. A failure
below HTTP reaches the transports as a chain of exceptions (``requests`` over
``urllib3`` over ``ssl`` or ``socket``) whose class names say little to a user
(``NewConnectionError``, ``SSLError``). :func:`describe_failure` walks the chain
and names the likely cause and the usual fix: nothing listening, a host name
that does not resolve, TLS spoken to a plain-HTTP server (the local emulator
without ``--tls``), plain HTTP sent to a TLS server, an untrusted certificate,
a timeout. :func:`origin_of` gives the ``host:port`` a URL points at, so every
message names where the client tried to go.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urlsplit

__all__ = ["describe_failure", "origin_of"]

_PLAIN_HTTP_SERVER = (
    "TLS handshake failed: the server answered in plain HTTP "
    "(for the local emulator use tls=False, --no-tls or ABLY_TLS=false)"
)
_TLS_SERVER = (
    "the server closed the connection without an HTTP answer "
    "(if it expects TLS, use tls=True, --tls or ABLY_TLS=true)"
)


def origin_of(url: str) -> str:
    """``host:port`` of ``url`` (the scheme's default port when none is given)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    except ValueError:
        return url
    host = parts.hostname or "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 12:
        seen.append(current)
        nested = getattr(current, "reason", None)  # urllib3 MaxRetryError keeps it here
        if isinstance(nested, BaseException) and nested not in seen:
            current = nested
            continue
        args = getattr(current, "args", ())
        inner = next((a for a in args if isinstance(a, BaseException) and a not in seen), None)
        current = current.__cause__ or current.__context__ or inner
    return seen


def describe_failure(exc: BaseException) -> str:
    """The likely cause of ``exc`` (a connection-level failure) and its usual fix."""
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    for error in chain:
        if isinstance(error, ConnectionRefusedError) or "connection refused" in text:
            return "connection refused: nothing listens there (a wrong port, or not started?)"
        if isinstance(error, socket.gaierror) or "name or service not known" in text:
            return "the host name does not resolve (a typo in the endpoint?)"
        if isinstance(error, ssl.SSLCertVerificationError) or "certificate verify failed" in text:
            return "the server's TLS certificate is not trusted (REQUESTS_CA_BUNDLE names a CA)"
    if "wrong version number" in text or "record layer failure" in text or "http_request" in text:
        return _PLAIN_HTTP_SERVER
    for error in chain:
        if isinstance(error, http.client.RemoteDisconnected | http.client.BadStatusLine):
            return _TLS_SERVER
        if isinstance(error, ConnectionResetError):
            return "the server reset the connection"
        if isinstance(error, ssl.SSLError):
            return f"TLS failed ({error.__class__.__name__}: {error})"
        if isinstance(error, TimeoutError | socket.timeout) or "timed out" in text:
            return "no answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
