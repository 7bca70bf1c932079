"""Name patterns used by routes to select channels and message names (pure).

This module owns the pattern syntax of the bridge configuration and its
compilation into one fast matcher per list of patterns:

* ``re:<regex>`` - a Python regular expression, matched with *search*
  semantics like the channel filter of Ably's hosted integrations
  (``re:^chat:`` anchors, ``re:news`` matches anywhere);
* a **glob** - any pattern containing ``*`` (any run of characters, ``:``
  included) or ``?`` (one character). Brackets are literal, because Ably
  channel names use them for qualifiers such as ``[meta]``;
* anything else is an **exact** name.

A :class:`NameMatcher` keeps exact names in a frozenset and folds every glob and
regex into a single compiled alternation, so a match costs one set lookup and at
most one regex scan however many patterns a route lists.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["NameMatcher", "PatternError", "compile_pattern", "is_pattern"]

logger = logging.getLogger(__name__)

REGEX_PREFIX = "re:"


class PatternError(ValueError):
    """A pattern that cannot be compiled; the message says why."""


def is_pattern(text: str) -> bool:
    """Whether ``text`` is a glob or a regex rather than an exact name."""
    return text.startswith(REGEX_PREFIX) or "*" in text or "?" in text


def _glob_to_regex(glob: str) -> str:
    out: list[str] = []
    for char in glob:
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        else:
            out.append(re.escape(char))
    return "^" + "".join(out) + r"\Z"


def compile_pattern(text: str) -> str:
    """The regex source for one glob or ``re:`` pattern; :class:`PatternError` if invalid.

    Exact names are not patterns and raise :class:`PatternError` too only when
    empty.
    """
    if not isinstance(text, str) or not text:
        raise PatternError("a pattern must be a non-empty string")
    if text.startswith(REGEX_PREFIX):
        source = text[len(REGEX_PREFIX) :]
        if not source:
            raise PatternError("empty regular expression after 're:'")
        try:
            re.compile(source)
        except re.error as exc:
            raise PatternError(f"invalid regular expression: {exc}") from exc
        return source
    return _glob_to_regex(text)


class NameMatcher:
    """Matches a name against a list of exact names, globs and ``re:`` regexes."""

    __slots__ = ("_exact", "_regexes", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        exact: set[str] = set()
        sources: list[str] = []
        for text in self.patterns:
            if is_pattern(text):
                sources.append(compile_pattern(text))
            else:
                exact.add(text)
        self._exact = frozenset(exact)
        self._regexes: tuple[re.Pattern[str], ...] = ()
        if sources:
            try:
                self._regexes = (re.compile("|".join(f"(?:{s})" for s in sources)),)
            except re.error:
                # Inline global flags such as "(?i)" are only legal at the start of
                # a regex, so such patterns cannot be folded into one alternation.
                self._regexes = tuple(re.compile(s) for s in sources)

    @property
    def empty(self) -> bool:
        """True when there are no patterns at all (callers treat that as 'match all')."""
        return not self.patterns

    def matches(self, name: str) -> bool:
        """Whether ``name`` matches any of the patterns."""
        if name in self._exact:
            return True
        return any(rx.search(name) is not None for rx in self._regexes)

    def __repr__(self) -> str:
        return f"NameMatcher({list(self.patterns)!r})"
