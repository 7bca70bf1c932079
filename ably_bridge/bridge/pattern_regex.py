"""The parser of ``re:`` route patterns: the checked subset of Python's regex syntax.

This module owns :func:`parse_regex`, a recursive-descent parser that turns the
text after ``re:`` into the syntax tree of
:mod:`~ably_bridge.bridge.pattern_syntax` (which says what the subset is), or
refuses it with a :class:`~ably_bridge.bridge.pattern_syntax.SyntaxProblem`
that names what is not supported or wrong and its position. Error messages
follow Python's ``re`` where the two agree on what an error is. Pure: no I/O,
no ``re``.
"""

from __future__ import annotations

import unicodedata

from ably_bridge.bridge.pattern_syntax import (
    ALT,
    ASSERT,
    AT_BOUNDARY,
    AT_END,
    AT_END_OR_NL,
    AT_NON_BOUNDARY,
    AT_START,
    CAT,
    CHAR,
    EMPTY,
    MAX_GROUP_DEPTH,
    MAX_PATTERN_LENGTH,
    MAX_REPEAT,
    REPEAT,
    CharTest,
    Node,
    SyntaxProblem,
    literal,
)

__all__ = ["parse_regex"]

_EMPTY = Node(EMPTY)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_CATEGORIES = frozenset("dDwWsS")
_DIGITS = frozenset("0123456789")
_OCTAL = frozenset("01234567")
_HEX = frozenset("0123456789abcdefABCDEF")
_KNOWN_FLAGS = frozenset("is")
_REFUSED_FLAGS = {
    "a": "ASCII matching",
    "L": "locale matching",
    "m": "multi-line anchors",
    "u": "the explicit unicode flag",
    "x": "verbose patterns",
}


def parse_regex(source: str) -> Node:
    """The tree of a regex of the supported subset; :class:`SyntaxProblem` if outside it."""
    if len(source) > MAX_PATTERN_LENGTH:
        raise SyntaxProblem(f"longer than {MAX_PATTERN_LENGTH} characters", unsupported=True)
    return _Parser(source).parse()


class _Parser:
    """A recursive-descent parser of the subset; nesting depth is bounded by the length."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0
        self.group_names: set[str] = set()
        self.depth = 0

    # -- helpers -------------------------------------------------------------------
    def fail(self, what: str, at: int | None = None, *, unsupported: bool = False) -> SyntaxProblem:
        where = self.pos if at is None else at
        return SyntaxProblem(f"{what} at position {where}", unsupported=unsupported)

    def peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.src[i] if i < len(self.src) else ""

    def take(self) -> str:
        c = self.peek()
        self.pos += 1
        return c

    def accept(self, text: str) -> bool:
        if self.src.startswith(text, self.pos):
            self.pos += len(text)
            return True
        return False

    # -- grammar -------------------------------------------------------------------
    def parse(self) -> Node:
        flags = self.global_flags()
        node = self.alternation(flags)
        if self.pos < len(self.src):
            raise self.fail("unbalanced parenthesis")
        return node

    def global_flags(self) -> tuple[bool, bool]:
        ignore_case = dotall = False
        while self.src.startswith("(?", self.pos) and self._is_flag_group():
            start = self.pos
            self.pos += 2
            on, off = self.flag_letters()
            if off or not self.accept(")"):
                self.pos = start
                break
            ignore_case = ignore_case or "i" in on
            dotall = dotall or "s" in on
        return ignore_case, dotall

    def _is_flag_group(self) -> bool:
        c = self.peek(2)
        return c in _KNOWN_FLAGS or c in _REFUSED_FLAGS or c == "-"

    def flag_letters(self) -> tuple[str, str]:
        on = off = ""
        target = "on"
        while True:
            c = self.peek()
            if c == "-" and target == "on":
                target = "off"
            elif c in _REFUSED_FLAGS:
                raise self.fail(
                    f"the flag '{c}' ({_REFUSED_FLAGS[c]}) is not supported", unsupported=True
                )
            elif c in _KNOWN_FLAGS:
                if target == "on":
                    on += c
                else:
                    off += c
            else:
                return on, off
            self.pos += 1

    def alternation(self, flags: tuple[bool, bool]) -> Node:
        branches = [self.sequence(flags)]
        while self.accept("|"):
            branches.append(self.sequence(flags))
        return branches[0] if len(branches) == 1 else Node(ALT, tuple(branches))

    def sequence(self, flags: tuple[bool, bool]) -> Node:
        items: list[Node] = []
        while self.pos < len(self.src) and self.peek() not in "|)":
            atom = self.atom(flags)
            if atom is None:
                continue
            items.append(self.quantified(atom))
        if not items:
            return _EMPTY
        return items[0] if len(items) == 1 else Node(CAT, tuple(items))

    def quantified(self, atom: Node) -> Node:
        start = self.pos
        bounds = self.quantifier()
        if bounds is None:
            return atom
        if atom.kind in (ASSERT, EMPTY):
            raise self.fail("nothing to repeat", start)
        low, high = bounds
        if self.accept("+"):
            raise self.fail("possessive quantifiers are not supported", start, unsupported=True)
        self.accept("?")  # lazy: the same yes/no answer
        if self.quantifier_here():
            raise self.fail("multiple repeat")
        return Node(REPEAT, (atom,), low=low, high=high)

    def quantifier_here(self) -> bool:
        start = self.pos
        found = self.quantifier() is not None
        self.pos = start
        return found

    def quantifier(self) -> tuple[int, int | None] | None:
        c = self.peek()
        if c == "*":
            self.pos += 1
            return 0, None
        if c == "+":
            self.pos += 1
            return 1, None
        if c == "?":
            self.pos += 1
            return 0, 1
        if c != "{" or self.peek(1) == "}":
            return None
        start = self.pos
        self.pos += 1
        lo = self.digits()
        comma = self.accept(",")
        hi = self.digits() if comma else lo
        if not self.accept("}"):
            self.pos = start  # not a quantifier: "{" is a literal (as in Python)
            return None
        low = int(lo) if lo else 0
        high: int | None = int(hi) if hi else (None if comma else low)
        for value in (low, high):
            if value is not None and value > MAX_REPEAT:
                raise self.fail(f"repetition count above {MAX_REPEAT}", start, unsupported=True)
        if high is not None and high < low:
            raise self.fail("min repeat greater than max repeat", start)
        return low, high

    def digits(self) -> str:
        start = self.pos
        while self.peek() in _DIGITS:
            self.pos += 1
        return self.src[start : self.pos]

    def atom(self, flags: tuple[bool, bool]) -> Node | None:
        ignore_case, dotall = flags
        c = self.peek()
        if c in "*+?" or (c == "{" and self.quantifier_here()):
            raise self.fail("nothing to repeat")
        self.pos += 1
        if c == "(":
            return self.group(flags)
        if c == "[":
            return Node(CHAR, test=self.char_class(ignore_case))
        if c == ".":
            return Node(CHAR, test=CharTest(any_char=True, dotall=dotall))
        if c == "^":
            return Node(ASSERT, assertion=AT_START)
        if c == "$":
            return Node(ASSERT, assertion=AT_END_OR_NL)
        if c == "\\":
            return self.escape(ignore_case)
        return literal(c, ignore_case)

    def group(self, flags: tuple[bool, bool]) -> Node | None:
        start = self.pos - 1
        if self.accept("?"):
            inner = self.group_extension(flags, start)
            if inner is None:  # a comment
                return None
            flags = inner
        self.depth += 1
        if self.depth > MAX_GROUP_DEPTH:
            raise self.fail(f"groups nested deeper than {MAX_GROUP_DEPTH}", start, unsupported=True)
        node = self.alternation(flags)
        self.depth -= 1
        if not self.accept(")"):
            raise self.fail("missing ), unterminated subpattern", start)
        return Node(CAT, (node,))  # a group (even an empty one) may be repeated

    def group_extension(self, flags: tuple[bool, bool], start: int) -> tuple[bool, bool] | None:
        """After ``(?``: the flags of the group's body, or None for a comment (skipped)."""
        c = self.peek()
        if c == ":":
            self.pos += 1
            return flags
        if c == "#":
            end = self.src.find(")", self.pos)
            if end < 0:
                raise self.fail("missing ), unterminated comment", start)
            self.pos = end + 1
            return None
        if c == "P":
            return self.named_group(flags, start)
        if c in "=!":
            raise self.fail("lookahead assertions are not supported", start, unsupported=True)
        if c == "<" and self.peek(1) in ("=", "!"):
            raise self.fail("lookbehind assertions are not supported", start, unsupported=True)
        if c == ">":
            raise self.fail("atomic groups are not supported", start, unsupported=True)
        if c == "(":
            raise self.fail("conditional groups are not supported", start, unsupported=True)
        if c in _KNOWN_FLAGS or c in _REFUSED_FLAGS or c == "-":
            on, off = self.flag_letters()
            if self.peek() == ")":
                raise self.fail("global flags must be at the start of the expression", start)
            if not self.accept(":"):
                raise self.fail("unknown flag or missing ':' in a flag group", start)
            ignore_case, dotall = flags
            if "i" in on:
                ignore_case = True
            if "i" in off:
                ignore_case = False
            if "s" in on:
                dotall = True
            if "s" in off:
                dotall = False
            return ignore_case, dotall
        raise self.fail(f"unknown extension ?{c}", start)

    def named_group(self, flags: tuple[bool, bool], start: int) -> tuple[bool, bool]:
        self.pos += 1  # "P"
        if self.peek() == "=":
            raise self.fail("backreferences are not supported", start, unsupported=True)
        if not self.accept("<"):
            raise self.fail("unknown extension ?P", start)
        end = self.src.find(">", self.pos)
        name = self.src[self.pos : end] if end >= 0 else ""
        if end < 0 or not name.isidentifier():
            raise self.fail("bad character in group name", start)
        if name in self.group_names:
            raise self.fail(f"redefinition of group name {name!r}", start)
        self.group_names.add(name)
        self.pos = end + 1
        return flags

    def escape(self, ignore_case: bool) -> Node:
        start = self.pos - 1
        c = self.take()
        if not c:
            raise self.fail("bad escape (end of pattern)", start)
        if c in "AZbB":
            kind = {"A": AT_START, "Z": AT_END, "b": AT_BOUNDARY, "B": AT_NON_BOUNDARY}[c]
            return Node(ASSERT, assertion=kind)
        if c in _CATEGORIES:
            return Node(CHAR, test=CharTest(categories=c))
        if c in _DIGITS and c != "0" and not self.octal_ahead(c):
            raise self.fail("backreferences are not supported", start, unsupported=True)
        return literal(self.escaped_char(c, start), ignore_case)

    def octal_ahead(self, c: str) -> bool:
        """Whether ``\\c`` starts a three-digit octal escape such as ``\\101``."""
        return c in _OCTAL and self.peek() in _OCTAL and self.peek(1) in _OCTAL

    def escaped_char(self, c: str, start: int) -> str:
        """The character of an escape ``\\c...`` (``c`` already taken)."""
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c == "0":
            code = ""
            while len(code) < 2 and self.peek() in _OCTAL:
                code += self.take()
            return chr(int(code or "0", 8))
        if c in _OCTAL and self.octal_ahead(c):
            code = c + self.take() + self.take()
            if int(code, 8) > 0o377:
                raise self.fail(f"octal escape value \\{code} outside of range 0-0o377", start)
            return chr(int(code, 8))
        if c in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[c]
            code = self.src[self.pos : self.pos + width]
            if len(code) != width or not set(code) <= _HEX:
                raise self.fail(f"incomplete escape \\{c}{code}", start)
            self.pos += width
            value = int(code, 16)
            if value > 0x10FFFF:
                raise self.fail(f"bad escape \\{c}{code}", start)
            return chr(value)
        if c == "N":
            return self.named_char(start)
        if c.isascii() and c.isalnum():
            raise self.fail(f"bad escape \\{c}", start)
        return c

    def named_char(self, start: int) -> str:
        end = self.src.find("}", self.pos)
        if not self.accept("{") or end < 0:
            raise self.fail("missing { or } in \\N{...}", start)
        name = self.src[self.pos : end]
        try:
            char = unicodedata.lookup(name)
        except KeyError:
            raise self.fail(f"undefined character name {name!r}", start) from None
        self.pos = end + 1
        return char

    def char_class(self, ignore_case: bool) -> CharTest:
        start = self.pos - 1
        negated = self.accept("^")
        ranges: list[tuple[int, int]] = []
        categories = ""
        first = True
        while True:
            c = self.peek()
            if not c:
                raise self.fail("unterminated character set", start)
            if c == "]" and not first:
                self.pos += 1
                break
            first = False
            item = self.pos
            low, category = self.class_item(start)
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.pos += 1
                high, high_category = self.class_item(start)
                if category or high_category or low is None or high is None or high < low:
                    where = self.src[item : self.pos]
                    raise self.fail(f"bad character range {where}", item)
                ranges.append((low, high))
            elif category:
                categories += category
            else:
                assert low is not None
                ranges.append((low, low))
        return CharTest(tuple(ranges), categories, negated, ignore_case)

    def class_item(self, start: int) -> tuple[int | None, str]:
        """One class member: (code point, "") or (None, category letter)."""
        c = self.take()
        if c != "\\":
            return ord(c), ""
        escape_start = self.pos - 1
        e = self.take()
        if not e:
            raise self.fail("unterminated character set", start)
        if e in _CATEGORIES:
            return None, e
        if e == "b":
            return 8, ""  # backspace, inside a class
        if e in _DIGITS and e != "0" and not self.octal_ahead(e):
            raise self.fail("backreferences are not supported", escape_start, unsupported=True)
        return ord(self.escaped_char(e, escape_start)), ""
