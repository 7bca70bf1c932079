"""The one error type of the library, and the few subclasses callers catch apart.

``AblyException`` mirrors Ably's ErrorInfo (TI1-TI5): a message, an Ably error
code, an HTTP status, a help link and an optional cause. It is both the Python
exception that public calls raise and, through :meth:`to_dict` /
:meth:`from_dict`, the ``error`` object that travels on the wire.

Subclasses exist only where callers react differently:

* :class:`AuthenticationError` - credentials problems (401 family, 40100-40199).
* :class:`TokenError` - a token was refused or expired (40140-40149); renewable.
* :class:`EncodingError` - a frame or payload could not be (de)coded.
* :class:`TimeoutError_` is deliberately absent: timeouts use code 50003 / 80014
  on a plain ``AblyException`` so they remain ``except AblyException``-able.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ably_bridge.error_codes import TITLES, ErrorCode

__all__ = [
    "AblyAuthException",
    "AblyException",
    "AuthenticationError",
    "EncodingError",
    "ErrorCode",
    "TokenError",
    "help_href",
    "is_token_error",
]

HELP_BASE = "https://help.ably.io/error/"


def help_href(code: int) -> str:
    """The help link Ably attaches to an error code (TI5)."""
    return f"{HELP_BASE}{code}"


def is_token_error(status_code: int | None, code: int | None) -> bool:
    """A token error is HTTP 401 with a code in 40140..40149 (RSA4b, RTN14b)."""
    return status_code == 401 and code is not None and 40140 <= code < 40150


def _default_status(code: int) -> int:
    """Derive the HTTP status from an Ably code when none was given (40160 -> 401)."""
    head = code // 100
    if 400 <= head <= 599:
        return head
    return 500


class AblyException(Exception):
    """An Ably error: ``message``, ``code``, ``status_code``, ``href`` and ``cause``.

    ``code`` is an Ably error code (see :class:`ErrorCode`); ``status_code`` the
    HTTP status that goes with it. Construct either as
    ``AblyException("reason", 40160, 401)`` or with keywords. An error from a
    REST response carries that response's ``headers`` (a case-insensitive
    mapping, e.g. ``exc.headers.get("Retry-After")`` of a 429); otherwise
    ``headers`` is None. Headers are never part of ``str``, ``repr`` or ``to_dict``.
    """

    headers: Mapping[str, str] | None = None

    def __init__(
        self,
        message: str,
        code: int = ErrorCode.BAD_REQUEST,
        status_code: int | None = None,
        href: str | None = None,
        cause: BaseException | None = None,
        *,
        detail: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = int(code)
        self.status_code = (
            int(status_code) if status_code is not None else _default_status(self.code)
        )
        self.href = href if href is not None else help_href(self.code)
        self.cause = cause
        self.detail = dict(detail) if detail else None
        if cause is not None:
            self.__cause__ = cause

    @classmethod
    def from_code(
        cls, code: int, message: str | None = None, cause: BaseException | None = None
    ) -> AblyException:
        """Build an exception (of the fitting subclass) from a code and its registry title."""
        text = message or TITLES.get(int(code), "Ably error")
        status = _default_status(int(code))
        return exception_for(text, int(code), status, cause=cause)

    # -- wire form (ErrorInfo) -------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """ErrorInfo as it travels on the wire (camelCase keys)."""
        out: dict[str, Any] = {
            "message": self.message,
            "code": self.code,
            "statusCode": self.status_code,
            "href": self.href,
        }
        if isinstance(self.cause, AblyException):
            out["cause"] = self.cause.to_dict()
        if self.detail:
            out["detail"] = dict(self.detail)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> AblyException:
        """Parse an ErrorInfo object; tolerant of missing fields and the old ``reason`` key."""
        raw = raw or {}
        code = _as_int(raw.get("code"), ErrorCode.INTERNAL_ERROR)
        status = _as_int(raw.get("statusCode"), _default_status(code))
        message = raw.get("message") or raw.get("reason") or TITLES.get(code, "Ably error")
        cause_raw = raw.get("cause")
        cause = cls.from_dict(cause_raw) if isinstance(cause_raw, Mapping) else None
        detail = raw.get("detail") if isinstance(raw.get("detail"), Mapping) else None
        href = raw.get("href") if isinstance(raw.get("href"), str) else None
        return exception_for(str(message), code, status, href=href, cause=cause, detail=detail)

    def __str__(self) -> str:
        return f"{self.message} (code={self.code}, status={self.status_code}, see {self.href})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, code={self.code}, "
            f"status_code={self.status_code})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AblyException):
            return NotImplemented
        return (self.code, self.status_code, self.message) == (
            other.code,
            other.status_code,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.status_code, self.message))


class AuthenticationError(AblyException):
    """Credentials were refused or could not be obtained (40100-40199, 80019)."""


class TokenError(AuthenticationError):
    """A token was refused (HTTP 401, codes 40140-40149); a new token may fix it."""


class EncodingError(AblyException):
    """A frame or payload could not be encoded or decoded (40013 and friends)."""


# The official ``ably`` package names its auth error AblyAuthException.
AblyAuthException = AuthenticationError

_ENCODING_CODES = frozenset({40013, 40018})


def exception_for(
    message: str,
    code: int,
    status_code: int,
    *,
    href: str | None = None,
    cause: BaseException | None = None,
    detail: Mapping[str, str] | None = None,
) -> AblyException:
    """Return an exception of the subclass that fits ``code`` and ``status_code``."""
    kind: type[AblyException] = AblyException
    if is_token_error(status_code, code):
        kind = TokenError
    elif 40100 <= code < 40200 or code == ErrorCode.TOKEN_REQUEST_FAILED:
        kind = AuthenticationError
    elif code in _ENCODING_CODES:
        kind = EncodingError
    return kind(message, code, status_code, href, cause, detail=detail)


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return int(default)
