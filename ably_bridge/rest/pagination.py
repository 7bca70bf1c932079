"""Pages of REST results (TG1-TG7, HP1-HP8) and ``Link`` header parsing.

* :func:`parse_links` reads ``Link`` headers into ``{rel: target}``; it
  accepts the server's relative form (``<./messages?...>; rel="next"``), the
  absolute-path form (``</channels/x/messages?...>``) and full URLs, several
  links in one comma-joined header, and several rels in one ``rel``.
* :class:`PaginatedResult` holds one page of decoded items and follows
  ``next``/``first`` links through a fetch function given by the client, so
  every page goes through the same HTTP funnel (auth, fallbacks, renewal).
  Iterating it yields every item of this page and of all the following pages.
* :class:`HttpPaginatedResponse` adds the raw HTTP facts for
  ``AblyRest.request`` (RSC19d).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urljoin, urlsplit

__all__ = ["HttpPaginatedResponse", "PageResponse", "PaginatedResult", "parse_links"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,<]+)*)")
_REL_RE = re.compile(r'rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))')


def parse_links(values: str | list[str] | None, request_path: str) -> dict[str, str]:
    """Map each ``rel`` to a path-and-query resolved against ``request_path``.

    Full URLs are reduced to their path and query: the next page is fetched
    from whichever host the funnel chooses, not from the host that answered.
    """
    if not values:
        return {}
    texts = [values] if isinstance(values, str) else values
    links: dict[str, str] = {}
    for text in texts:
        for match in _LINK_RE.finditer(text):
            target, params = match.group(1).strip(), match.group(2)
            for rel_match in _REL_RE.finditer(params):
                rels = (rel_match.group(1) or rel_match.group(2) or "").split()
                for rel in rels:
                    links.setdefault(rel.lower(), _resolve(target, request_path))
    return links


def _resolve(target: str, request_path: str) -> str:
    absolute = urljoin(request_path, target)
    parts = urlsplit(absolute)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class PageResponse:
    """What a fetch returns to a page: status, headers and the decoded body."""

    __slots__ = ("body", "headers", "path", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: Any, path: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.path = path

    def link_header(self) -> str | None:
        value = self.headers.get("Link")
        return None if value is None else str(value)


Fetch = Callable[[str], PageResponse]
"""Fetch a path (with its query string) through the REST funnel."""


class PaginatedResult(Generic[T]):
    """One page of results with navigation (TG1-TG7).

    ``items`` is this page; ``has_next``/``is_last``/``next``/``first`` follow
    the ``Link`` headers. ``for item in page`` walks this page and every later
    page, fetching each as it is reached.
    """

    def __init__(
        self,
        items: list[T],
        links: Mapping[str, str],
        fetch: Fetch,
        decode: Callable[[Any], list[T]],
    ) -> None:
        self.items: list[T] = items
        self._links = dict(links)
        self._fetch = fetch
        self._decode = decode

    @classmethod
    def from_response(
        cls, response: PageResponse, fetch: Fetch, decode: Callable[[Any], list[T]]
    ) -> PaginatedResult[T]:
        links = parse_links(response.link_header(), response.path)
        return cls(decode(response.body), links, fetch, decode)

    def has_next(self) -> bool:
        """True when the server named a next page (TG6)."""
        return "next" in self._links

    def is_last(self) -> bool:
        """True when there is no next page (TG7)."""
        return not self.has_next()

    def has_first(self) -> bool:
        return "first" in self._links

    def next(self) -> PaginatedResult[T] | None:
        """The next page, or None on the last page (TG4)."""
        target = self._links.get("next")
        return None if target is None else self._follow(target)

    def first(self) -> PaginatedResult[T] | None:
        """The first page (TG5); None if the server gave no ``first`` link."""
        target = self._links.get("first")
        return None if target is None else self._follow(target)

    def _follow(self, target: str) -> PaginatedResult[T]:
        log.debug("following page link to %s", target.split("?")[0])
        return type(self).from_response(self._fetch(target), self._fetch, self._decode)

    def pages(self) -> Iterator[PaginatedResult[T]]:
        """This page and every following page."""
        page: PaginatedResult[T] | None = self
        while page is not None:
            yield page
            page = page.next()

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.items

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(items={len(self.items)}, has_next={self.has_next()})"


def _http_items(body: Any) -> list[Any]:
    """HP3: a JSON array as is, a single object wrapped, nothing as []."""
    if body is None or body == b"" or body == "":
        return []
    if isinstance(body, list):
        return body
    return [body]


class HttpPaginatedResponse(PaginatedResult[Any]):
    """The answer to ``AblyRest.request`` (RSC19d, HP1-HP8); errors are reported, not raised."""

    def __init__(self, response: PageResponse, fetch: Fetch) -> None:
        super().__init__(
            _http_items(response.body),
            parse_links(response.link_header(), response.path),
            fetch,
            _http_items,
        )
        self.status_code = response.status  # HP4
        self.headers = dict(response.headers)  # HP8
        error_code = response.headers.get("X-Ably-Errorcode")
        self.error_code: int | None = _int_or_none(error_code)  # HP6
        self.error_message: str | None = response.headers.get("X-Ably-Errormessage")  # HP7

    @property
    def success(self) -> bool:
        """True for 2xx (HP5)."""
        return 200 <= self.status_code < 300

    @classmethod
    def from_response(
        cls, response: PageResponse, fetch: Fetch, decode: Callable[[Any], list[Any]] | None = None
    ) -> HttpPaginatedResponse:
        return cls(response, fetch)

    def __repr__(self) -> str:
        return (
            f"HttpPaginatedResponse(status_code={self.status_code}, items={len(self.items)}, "
            f"error_code={self.error_code})"
        )


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
