"""Secret values of the bridge configuration, kept out of every repr, str and log line.

This module owns :class:`Secret` (an opaque string that only :meth:`Secret.reveal`
exposes) and :func:`redact_url` (a URL with its password replaced), so that a
printed :class:`~ably_bridge.bridge.config.BridgeConfig`, a logged target or a
config error never shows an Ably key, a cipher key or a broker password.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["REDACTED", "Secret", "redact_url", "url_has_password"]

REDACTED = "<redacted>"


class Secret:
    """A string that prints as ``<redacted>``; ``reveal()`` gives the value.

    ``shown`` is what ``repr``/``str`` print instead (for a URL, the URL with its
    password redacted), never the value itself.
    """

    __slots__ = ("_shown", "_value")

    def __init__(self, value: str, shown: str = REDACTED) -> None:
        self._value = value
        self._shown = shown

    @classmethod
    def url(cls, value: str) -> Secret:
        """A URL secret that prints with its password (if any) redacted."""
        return cls(value, redact_url(value))

    def reveal(self) -> str:
        """The secret value. Call it only where the value is used, never to log it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self._shown!r})"

    def __str__(self) -> str:
        return self._shown

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def url_has_password(url: str) -> bool:
    """Whether ``url`` carries a password in its userinfo part."""
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (the username is kept)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{user}:***@{host}"
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return REDACTED
