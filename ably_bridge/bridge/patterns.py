"""Name patterns used by routes to select channels and message names (pure).

This module owns the pattern syntax of the bridge configuration and its
compilation into one linear-time matcher per list of patterns:

* ``re:<regex>`` - a regular expression of the checked subset described in
  :mod:`~ably_bridge.bridge.pattern_syntax` (Python's syntax, minus
  backreferences, lookaround, conditionals, atomic groups, possessive
  quantifiers and the flags other than ``i`` and ``s``), matched with *search*
  semantics like the channel filter of Ably's hosted integrations
  (``re:^chat:`` anchors, ``re:news`` matches anywhere);
* a **glob** - any pattern containing ``*`` (any run of characters, ``:``
  included) or ``?`` (one character). Brackets are literal, because Ably
  channel names use them for qualifiers such as ``[meta]``;
* anything else is an **exact** name.

A :class:`NameMatcher` keeps exact names in a frozenset and folds every glob and
regex into one :class:`~ably_bridge.bridge.pattern_engine.Program`, which reads
a name once, left to right, and never backtracks: a match costs time linear in
the name's length whatever the pattern and the name (a channel name chosen by
whoever may publish cannot stall the bridge). Patterns are at most
:data:`MAX_PATTERN_LENGTH` characters; names longer than :data:`MAX_NAME_LENGTH`
match exact names only (counted in :attr:`NameMatcher.oversized`, logged once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from ably_bridge.bridge.pattern_engine import MAX_NFA_STATES, Program, nfa_size
from ably_bridge.bridge.pattern_regex import parse_regex
from ably_bridge.bridge.pattern_syntax import MAX_PATTERN_LENGTH, Node, SyntaxProblem, parse_glob

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_PATTERN_LENGTH",
    "NameMatcher",
    "PatternError",
    "compile_pattern",
    "is_pattern",
]

logger = logging.getLogger(__name__)

REGEX_PREFIX = "re:"
MAX_NAME_LENGTH = 2048  # characters of a channel or message name matched against patterns
_RESULT_CACHE = 4096  # names whose answer a matcher keeps (names repeat far more than vary)
_CACHED_NAME_LENGTH = 256  # ... if at most this long: the cache holds at most ~1 MB


class PatternError(ValueError):
    """A pattern that cannot be compiled; the message says why."""


def is_pattern(text: str) -> bool:
    """Whether ``text`` is a glob or a regex rather than an exact name."""
    return text.startswith(REGEX_PREFIX) or "*" in text or "?" in text


def _tree(text: str) -> Node:
    if not isinstance(text, str) or not text:
        raise PatternError("a pattern must be a non-empty string")
    try:
        if text.startswith(REGEX_PREFIX):
            source = text[len(REGEX_PREFIX) :]
            if not source:
                raise PatternError("empty regular expression after 're:'")
            return parse_regex(source)
        return parse_glob(text)
    except SyntaxProblem as exc:
        kind = "regular expression" if text.startswith(REGEX_PREFIX) else "glob"
        if exc.unsupported:
            raise PatternError(
                f"unsupported {kind} (route patterns must match in linear time): {exc}"
            ) from None
        raise PatternError(f"invalid {kind}: {exc}") from None


def compile_pattern(text: str) -> Program:
    """The matcher of one glob or ``re:`` pattern; :class:`PatternError` if invalid.

    The message of the error says what is wrong and where (a position in the
    regex), e.g. ``unsupported or invalid regular expression: backreferences
    are not supported at position 7``.
    """
    tree = _tree(text)
    try:
        return Program([tree])
    except SyntaxProblem as exc:
        raise PatternError(f"unsupported pattern: {exc}") from None  # (too large)


def _programs(trees: list[Node]) -> tuple[Program, ...]:
    """As few programs as hold the patterns (one, unless together they are too large)."""
    groups: list[list[Node]] = []
    size = 0
    for tree in trees:
        tree_size = nfa_size(tree) + 1
        if not groups or size + tree_size > MAX_NFA_STATES:
            groups.append([])
            size = 0
        groups[-1].append(tree)
        size += tree_size
    try:
        return tuple(Program(group) for group in groups)
    except SyntaxProblem as exc:  # one pattern alone too large (compile_pattern says so)
        raise PatternError(f"unsupported pattern: {exc}") from None  # (too large)


class NameMatcher:
    """Matches a name against a list of exact names, globs and ``re:`` regexes."""

    __slots__ = ("_exact", "_lock", "_programs", "_results", "oversized", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        exact: set[str] = set()
        trees: list[Node] = []
        for text in self.patterns:
            if is_pattern(text):
                trees.append(_tree(text))
            else:
                exact.add(text)
        self._exact = frozenset(exact)
        self._programs = _programs(trees)
        self._results: dict[str, bool] = {}
        self._lock = threading.Lock()
        self.oversized = 0  # names too long for the patterns (matched exactly only)

    @property
    def empty(self) -> bool:
        """True when there are no patterns at all (callers treat that as 'match all')."""
        return not self.patterns

    @property
    def steps(self) -> int:
        """The matching work done so far (characters read + NFA states visited)."""
        return sum(p.steps for p in self._programs)

    def matches(self, name: str) -> bool:
        """Whether ``name`` matches any of the patterns."""
        if name in self._exact:
            return True
        if not self._programs:
            return False
        hit = self._results.get(name)
        if hit is not None:
            return hit
        if len(name) > MAX_NAME_LENGTH:
            self._too_long(name)
            return False
        hit = any(program.search(name) for program in self._programs)
        if len(name) <= _CACHED_NAME_LENGTH:  # (long names: matched each time, not kept)
            results = self._results
            if len(results) >= _RESULT_CACHE:
                self._results = results = {}
            results[name] = hit
        return hit

    def _too_long(self, name: str) -> None:
        with self._lock:
            self.oversized += 1
            first = self.oversized == 1
        if first:
            logger.warning(
                "a name of %d characters is longer than %d: only exact names match it "
                "(patterns %s)",
                len(name),
                MAX_NAME_LENGTH,
                list(self.patterns),
            )

    def __repr__(self) -> str:
        return f"NameMatcher({list(self.patterns)!r})"
