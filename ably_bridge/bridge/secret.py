"""Secret values of the bridge configuration, kept out of every repr, str, log line and label.

This module owns :class:`Secret` (an opaque string that only :meth:`Secret.reveal`
exposes) and the one parser of credentials in URLs, :func:`url_credentials`, that
every redaction goes through: :func:`redact_url` (a URL fit to print),
:func:`url_has_password` (what ``check-config`` refuses in the file) and
:func:`redact_text` (every URL inside free text: log messages, tracebacks, errors).
So a printed :class:`~ably_bridge.bridge.config.BridgeConfig`, a logged target, a
``/metrics`` label or a config error never shows an Ably key, a cipher key or a
broker password.

The URL forms understood (and tested) are the ones Redis, Celery and kombu take:

* a password in the userinfo - ``redis://:pw@host``, ``rediss://user:pw@host``,
  ``amqp://user:pw@host//``, ``amqps://...``, ``sentinel://:pw@host:26379``,
  ``unix://:pw@/path.sock`` (the username stays visible, the password does not;
  a password with an unencoded ``@``, ``/``, ``?``, ``#`` or ``;`` is hidden
  too: an ``@`` after the host hides everything before it);
* a secret query parameter - ``?password=...`` (also ``passwd``, ``pwd``,
  ``secret``, ``token``, ``key``, ``access_token``, ``sentinel_password`` and any
  name ending in ``password``, ``secret`` or ``token``);
* several URLs joined by ``;`` (kombu's failover lists, ``sentinel://...;sentinel://...``).

Besides, every :class:`Secret` made from a plain value (an Ably key, a cipher key)
and every credential found in a URL secret is remembered (:func:`known_secrets`,
values of at least :data:`MIN_KNOWN_LENGTH` characters), and :func:`redact_text`
replaces those values wherever they appear, in whatever form a library prints them.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from ably_bridge.encoding.crypto import ChannelCipher

__all__ = [
    "MIN_KNOWN_LENGTH",
    "REDACTED",
    "Secret",
    "UrlCredentials",
    "cipher_for",
    "known_secrets",
    "redact_text",
    "redact_url",
    "remember_secret",
    "url_credentials",
    "url_has_password",
]

REDACTED = "<redacted>"
MASK = "***"
MIN_KNOWN_LENGTH = 8  # shorter values are too likely to occur in ordinary text

_SECRET_PARAMS = frozenset(
    {
        "password", "passwd", "pass", "pwd", "secret", "token", "key", "auth",
        "apikey", "api_key", "access_token", "accesstoken", "access_key", "secret_key",
        "client_secret", "sentinel_password", "credential", "credentials", "authorization",
    }
)  # fmt: skip
_SECRET_SUFFIXES = ("password", "secret", "token")
# Where a URL starts in free text (the scheme is at most 32 characters: linear scan).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s\"'<>`]*")
# A ";" that starts another URL of a kombu failover list.
_NEXT_URL = re.compile(r";(?=[A-Za-z][A-Za-z0-9+.\-]{0,31}://)")

_known: frozenset[str] = frozenset()
_known_lock = threading.Lock()


def remember_secret(value: str) -> None:
    """Scrub ``value`` from every text :func:`redact_text` sees from now on."""
    global _known
    if len(value) >= MIN_KNOWN_LENGTH and value not in _known:
        with _known_lock:
            _known = _known | {value}


def known_secrets() -> frozenset[str]:
    """The values :func:`redact_text` scrubs wherever they appear."""
    return _known


@dataclass(frozen=True, slots=True)
class UrlCredentials:
    """What :func:`url_credentials` found: where (``forms``) and the values themselves."""

    forms: tuple[str, ...]
    values: tuple[str, ...]
    shown: str  # the URL fit to print

    def __bool__(self) -> bool:
        return bool(self.forms)


def _secret_param(name: str) -> bool:
    key = unquote_plus(name).strip().lower().replace("-", "_")
    return key in _SECRET_PARAMS or key.endswith(_SECRET_SUFFIXES)


def _one_url(url: str, forms: list[str], values: list[str]) -> str:
    """Redact one URL (no ``;`` list), noting the credentials found."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, authority_end)
    if at >= 0:
        user, colon, password = rest[:at].partition(":")
        if colon and password:
            forms.append("a password in the userinfo (user:password@)")
            values.append(password)
            rest = f"{user}:{MASK}{rest[at:]}"
    elif "@" in rest:
        # An "@" after a "/", "?" or "#": a password with unencoded special characters,
        # or an "@" in the path or query. Either way, hide everything before it.
        at = rest.rfind("@")
        forms.append("an '@' after a '/', '?' or '#' (percent-encode them in a password)")
        values.append(rest[:at])
        rest = f"{MASK}{rest[at:]}"
    fragment = ""
    if "#" in rest:
        rest, fragment = rest.split("#", 1)
        if fragment:  # no client reads one; it may hold anything (hidden, not refused)
            values.append(fragment)
            fragment = "#" + MASK
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
        params = []
        for param in query.split("&"):
            name, eq, value = param.partition("=")
            if eq and value and _secret_param(name):
                forms.append(f"a {unquote_plus(name)!r} query parameter")
                values.append(unquote_plus(value))
                param = f"{name}={MASK}"
            params.append(param)
        query = "?" + "&".join(params)
    return f"{scheme}{sep}{rest}{query}{fragment}"


def url_credentials(url: str) -> UrlCredentials:
    """The credentials in ``url`` (every form in the module docstring) and its printable form."""
    forms: list[str] = []
    values: list[str] = []
    parts = _NEXT_URL.split(url)
    shown = ";".join(_one_url(part, forms, values) for part in parts)
    return UrlCredentials(tuple(dict.fromkeys(forms)), tuple(values), shown)


def url_has_password(url: str) -> bool:
    """Whether ``url`` carries a credential in any form (see :func:`url_credentials`)."""
    return bool(url_credentials(url))


def redact_url(url: str) -> str:
    """``url`` with every credential replaced by ``***`` (usernames and hosts kept)."""
    return url_credentials(url).shown


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it and every known secret masked."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for value in _known:
        if value in text:
            text = text.replace(value, MASK)
    return text


class Secret:
    """A string that prints as ``<redacted>``; ``reveal()`` gives the value.

    ``shown`` is what ``repr``/``str`` print instead (for a URL, the URL with its
    credentials redacted), never the value itself. ``hide`` are the parts of the
    value to scrub from logs (default: the whole value).
    """

    __slots__ = ("_shown", "_value")

    def __init__(
        self, value: str, shown: str = REDACTED, *, hide: Iterable[str] | None = None
    ) -> None:
        self._value = value
        self._shown = shown
        for part in (value,) if hide is None else hide:
            remember_secret(part)

    @classmethod
    def url(cls, value: str) -> Secret:
        """A URL secret that prints with its credentials (if any) redacted."""
        found = url_credentials(value)
        return cls(value, found.shown, hide=found.values)

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


@functools.lru_cache(maxsize=256)
def cipher_for(key: Secret) -> ChannelCipher:
    """The AES channel cipher a configured key makes (one per key, made once: a route's
    cipher is asked for on every event)."""
    from ably_bridge.encoding.crypto import get_cipher, get_default_params

    return get_cipher(get_default_params(key=key.reveal()))
