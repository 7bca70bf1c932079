"""The syntax of route patterns: a checked subset of Python's regex language, and globs.

This module owns the syntax tree of a pattern (:class:`Node` and its kinds,
:class:`CharTest` for the characters one position takes), the parser of globs
(:func:`parse_glob`) and the definition of the regex subset, whose parser is
:func:`~ably_bridge.bridge.pattern_regex.parse_regex`.
:mod:`~ably_bridge.bridge.pattern_engine` compiles trees into a linear-time
matcher. Pure: no I/O, no ``re``.

The regex subset is everything whose meaning is a regular language, so that a
match costs time linear in the name whatever the pattern: literals and escapes
(``\\n``, ``\\x41``, ``\\u00e9``, ``\\N{...}``, ``\\.``), ``.``, classes
(``[a-z_]``, ``[^:]``, ``\\d \\w \\s`` and their negations), groups (``(...)``,
``(?:...)``, ``(?P<name>...)``), alternation, the quantifiers ``* + ? {m} {m,}
{,n} {m,n}`` (greedy or lazy: the same for a yes/no match), the anchors ``^ $
\\A \\Z \\b \\B``, comments ``(?#...)`` and the flags ``i`` (ignore case) and
``s`` (dot matches newline), global (``(?i)`` at the start) or scoped
(``(?i:...)``, ``(?-i:...)``). Refused, each with a message that says what and
where: backreferences, lookahead and lookbehind, conditionals, atomic groups,
possessive quantifiers, the flags ``a L m u x``, repetition counts above
:data:`MAX_REPEAT`, and patterns longer than :data:`MAX_PATTERN_LENGTH`.

Case-insensitive matching compares characters by their simple case folding
(upper-cased, then lower-cased, when each is one character), which is what
Python's ``re`` does for every character but a handful of special cases.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_GROUP_DEPTH",
    "MAX_PATTERN_LENGTH",
    "MAX_REPEAT",
    "CharTest",
    "Node",
    "SyntaxProblem",
    "fold",
    "is_word",
    "literal",
    "parse_glob",
]

MAX_PATTERN_LENGTH = 1000  # characters of one pattern (after "re:")
MAX_REPEAT = 1000  # the largest count in {m,n}
MAX_GROUP_DEPTH = 50  # groups inside groups

# Node kinds.
EMPTY, CHAR, CAT, ALT, REPEAT, ASSERT = "empty", "char", "cat", "alt", "repeat", "assert"
# Assertion kinds.
AT_START, AT_END_OR_NL, AT_END, AT_BOUNDARY, AT_NON_BOUNDARY = "^", "$", "\\Z", "\\b", "\\B"


class SyntaxProblem(ValueError):
    """A pattern outside the supported subset (``unsupported``) or invalid; the message says why."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def fold(c: str) -> str:
    """The simple case folding of one character (see the module docstring)."""
    upper = c.upper()
    if len(upper) == 1:
        lower = upper.lower()
        if len(lower) == 1:
            return lower
    lower = c.lower()
    return lower if len(lower) == 1 else c


def is_word(c: str) -> bool:
    """Python's ``\\w`` for one character: alphanumeric or the underscore."""
    return c.isalnum() or c == "_"


def _category(letter: str, c: str) -> bool:
    if letter in "dD":
        hit = c.isdecimal()
    elif letter in "wW":
        hit = is_word(c)
    else:
        hit = c.isspace()
    return hit if letter.islower() else not hit


@dataclass(frozen=True, slots=True)
class CharTest:
    """Which single characters a position takes: ranges and categories, maybe negated."""

    ranges: tuple[tuple[int, int], ...] = ()
    categories: str = ""  # letters of dDwWsS
    negated: bool = False
    ignore_case: bool = False
    any_char: bool = False  # "." (with dotall: every character; else all but "\n")
    dotall: bool = False

    def _raw(self, c: str) -> bool:
        o = ord(c)
        for lo, hi in self.ranges:
            if lo <= o <= hi:
                return True
        return any(_category(letter, c) for letter in self.categories)

    def __call__(self, c: str) -> bool:
        if self.any_char:
            return self.dotall or c != "\n"
        hit = self._raw(c)
        if not hit and self.ignore_case:
            hit = any(len(v) == 1 and self._raw(v) for v in (c.lower(), c.upper(), fold(c)))
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class Node:
    """A syntax tree node: ``kind`` is one of empty, char, cat, alt, repeat, assert."""

    kind: str
    items: tuple[Node, ...] = ()
    test: CharTest | None = None
    low: int = 0
    high: int | None = None  # None: unbounded
    assertion: str = ""


def literal(c: str, ignore_case: bool) -> Node:
    forms = {c}
    if ignore_case:
        folded = fold(c)
        forms |= {v for v in (c.lower(), c.upper(), folded, folded.upper()) if len(v) == 1}
    ranges = tuple(sorted((ord(v), ord(v)) for v in forms))
    return Node(CHAR, test=CharTest(ranges=ranges, ignore_case=ignore_case))


def parse_glob(glob: str) -> Node:
    """A glob as a tree: ``*`` any run, ``?`` one character, anchored at both ends."""
    if len(glob) > MAX_PATTERN_LENGTH:
        raise SyntaxProblem(f"longer than {MAX_PATTERN_LENGTH} characters", unsupported=True)
    anything = Node(CHAR, test=CharTest(any_char=True, dotall=True))
    items: list[Node] = [Node(ASSERT, assertion=AT_START)]
    for c in glob:
        if c == "*":
            if items[-1].kind == REPEAT:
                continue  # "**" is "*"
            items.append(Node(REPEAT, (anything,), low=0, high=None))
        elif c == "?":
            items.append(anything)
        else:
            items.append(literal(c, False))
    items.append(Node(ASSERT, assertion=AT_END))
    return Node(CAT, tuple(items))
