"""Streaming large query results through the workers, one bounded task result per page.

This module owns :func:`iter_history` and :func:`iter_presence`. A history
export of a million messages must not become one task result (it would sit in
the result backend and in the producer's memory at once). These generators send
one ``ably.history`` (or ``ably.presence_get``) task per page of ``page_size``
items (at most 1,000, Ably's page limit), yield the page's items, and follow the
page's ``next`` cursor with the next task. The next page's task is sent before
the current page's items are yielded, so the worker fetches while the caller
writes. Memory stays at about two pages whatever the size of the export.

A result backend is needed (each page is a task result). Each page's result is
forgotten (removed from the backend) once read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workers import producers
from workers.tasks import MAX_PAGE

__all__ = ["iter_history", "iter_presence"]


def _pages(send: Any, timeout: float) -> Iterator[dict[str, Any]]:
    pending = send()
    while pending is not None:
        page: dict[str, Any] = pending.get(timeout=timeout)
        pending.forget()
        cursor = page.get("next")
        pending = send(cursor=cursor) if cursor else None  # prefetch the next page
        yield from page.get("items") or []


def _page_size(page_size: int) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise TypeError("page_size must be an integer")
    if not 1 <= page_size <= MAX_PAGE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE}")
    return page_size


def iter_history(
    channel: str,
    *,
    start: int | None = None,
    end: int | None = None,
    direction: str | None = None,
    page_size: int = MAX_PAGE,
    timeout: float = 60.0,
    app: Any = None,
    **send_options: Any,
) -> Iterator[dict[str, Any]]:
    """Every message of ``channel``'s history (RSL2) in range, as wire dicts, page by page."""
    size = _page_size(page_size)

    def send(**query: Any) -> Any:
        if "cursor" in query:
            return producers.history(channel, app=app, **query, **send_options)
        return producers.history(
            channel, start=start, end=end, direction=direction, limit=size, app=app,
            **send_options,
        )  # fmt: skip

    return _pages(send, timeout)


def iter_presence(
    channel: str,
    *,
    client_id: str | None = None,
    connection_id: str | None = None,
    page_size: int = MAX_PAGE,
    timeout: float = 60.0,
    app: Any = None,
    **send_options: Any,
) -> Iterator[dict[str, Any]]:
    """Every member present on ``channel`` (RSP3), as presence wire dicts, page by page."""
    size = _page_size(page_size)

    def send(**query: Any) -> Any:
        if "cursor" in query:
            return producers.presence_get(channel, app=app, **query, **send_options)
        return producers.presence_get(
            channel, limit=size, client_id=client_id, connection_id=connection_id, app=app,
            **send_options,
        )  # fmt: skip

    return _pages(send, timeout)
