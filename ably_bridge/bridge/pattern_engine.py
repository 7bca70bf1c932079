"""The linear-time matcher of route patterns: a Thompson NFA run as a lazily built DFA.

This module owns :class:`Program`, which compiles syntax trees from
:mod:`~ably_bridge.bridge.pattern_syntax` (one or several, matched as one
alternation) into an NFA and answers :meth:`Program.search` - does the pattern
match anywhere in the name (``re.search`` semantics; globs carry their own
anchors) - without ever backtracking:

* The NFA has at most :data:`MAX_NFA_STATES` states (counted repetitions are
  expanded, so ``(a{100}){100}`` is refused when the program is built).
* The name is read once, left to right. The set of NFA states live after each
  character is a DFA state, built on first use and kept (at most
  :data:`MAX_DFA_STATES` of them, :data:`MAX_TRANSITIONS` transitions and
  :data:`MAX_KERNEL_ENTRIES` NFA states held in all; past that the cache is
  dropped and rebuilt as the names need it), so its memory is bounded too. A character
  costs one dict lookup once its transition is known, and at most one pass
  over the NFA when it is not: the work is O(len(name) * NFA size) in the
  worst case and O(len(name)) once warm, whatever the pattern or the name.
* :attr:`Program.steps` counts that work (a character read, an NFA state
  visited), so tests can assert on it instead of on wall time.

Anchors and word boundaries are position conditions evaluated while following
the NFA's empty moves; what they need to know about a position (start, end,
just before a final newline, word characters on either side) is part of the
DFA state or of the character being read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    REPEAT,
    CharTest,
    Node,
    SyntaxProblem,
    is_word,
)

__all__ = [
    "MAX_DFA_STATES",
    "MAX_KERNEL_ENTRIES",
    "MAX_NFA_STATES",
    "MAX_TRANSITIONS",
    "Program",
    "nfa_size",
]

MAX_NFA_STATES = 20_000
MAX_DFA_STATES = 2_000
MAX_TRANSITIONS = 50_000
MAX_KERNEL_ENTRIES = 200_000  # NFA states held by all cached DFA states together

# NFA state kinds.
_CHAR, _SPLIT, _ASSERT, _MATCH = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class _Context:
    """What the assertions may ask about the position between two characters."""

    at_start: bool
    at_end: bool
    before_final_newline: bool
    prev_word: bool
    next_word: bool

    def holds(self, assertion: str) -> bool:
        if assertion == AT_START:
            return self.at_start
        if assertion == AT_END:
            return self.at_end
        if assertion == AT_END_OR_NL:
            return self.at_end or self.before_final_newline
        empty = self.at_start and self.at_end  # Python: \b and \B fail on ""
        if assertion == AT_BOUNDARY:
            return not empty and self.prev_word != self.next_word
        assert assertion == AT_NON_BOUNDARY
        return not empty and self.prev_word == self.next_word


class _DState:
    """A DFA state: the NFA states waiting for the next character, and what came before."""

    __slots__ = ("at_start", "done", "final", "kernel", "last_newline", "next", "prev_word")

    def __init__(self, kernel: frozenset[int], prev_word: bool, at_start: bool) -> None:
        self.kernel = kernel
        self.prev_word = prev_word
        self.at_start = at_start
        self.next: dict[str, _DState] = {}
        self.final: bool | None = None  # does the name match if it ends here
        self.last_newline: _DState | None = None  # on a "\n" that ends the name
        self.done = False  # MATCHED or DEAD: the answer is known


def _sentinel() -> _DState:
    state = _DState(frozenset(), False, False)
    state.done = True
    return state


_MATCHED = _sentinel()
_DEAD = _sentinel()


class _Builder:
    """Thompson construction, back to front: ``emit(node, next) -> entry state``."""

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.test: list[CharTest | None] = []
        self.assertion: list[str] = []
        self.out1: list[int] = []
        self.out2: list[int] = []

    def new(self, kind: int, out1: int = -1, out2: int = -1, **extra: object) -> int:
        self.kind.append(kind)
        self.test.append(extra.get("test"))  # type: ignore[arg-type]
        self.assertion.append(str(extra.get("assertion", "")))
        self.out1.append(out1)
        self.out2.append(out2)
        return len(self.kind) - 1

    def emit(self, node: Node, nxt: int) -> int:
        kind = node.kind
        if kind == CHAR:
            return self.new(_CHAR, nxt, test=node.test)
        if kind == ASSERT:
            return self.new(_ASSERT, nxt, assertion=node.assertion)
        if kind == CAT:
            for item in reversed(node.items):
                nxt = self.emit(item, nxt)
            return nxt
        if kind == ALT:
            entries = [self.emit(item, nxt) for item in node.items]
            entry = entries[-1]
            for other in reversed(entries[:-1]):
                entry = self.new(_SPLIT, other, entry)
            return entry
        if kind == REPEAT:
            return self.repeat(node, nxt)
        assert kind == EMPTY
        return nxt

    def repeat(self, node: Node, nxt: int) -> int:
        body = node.items[0]
        if node.high is None:  # x{m,}: m copies, then a loop
            loop = self.new(_SPLIT, -1, nxt)
            self.out1[loop] = self.emit(body, loop)
            entry = loop
        else:  # x{m,n}: m copies, then n - m nested optional copies
            entry = nxt
            for _ in range(node.high - node.low):
                entry = self.new(_SPLIT, self.emit(body, entry), nxt)
        for _ in range(node.low):
            entry = self.emit(body, entry)
        return entry


def nfa_size(node: Node) -> int:
    """An upper bound of the NFA states ``node`` compiles to (repetitions expanded)."""
    kind = node.kind
    if kind in (CHAR, ASSERT):
        return 1
    if kind == EMPTY:
        return 0
    if kind in (CAT, ALT):
        return sum(nfa_size(item) for item in node.items) + len(node.items)
    body = nfa_size(node.items[0]) + 1
    copies = node.low + 1 if node.high is None else node.high
    return body * max(copies, 1)


class Program:
    """Several patterns as one linear-time matcher (see the module docstring)."""

    def __init__(
        self,
        trees: Sequence[Node],
        *,
        max_states: int = MAX_DFA_STATES,
        max_transitions: int = MAX_TRANSITIONS,
    ) -> None:
        if not trees:
            raise SyntaxProblem("no pattern")
        size = sum(nfa_size(tree) for tree in trees) + len(trees)
        if size > MAX_NFA_STATES:
            raise SyntaxProblem(
                f"too large once repetitions are expanded (over {MAX_NFA_STATES} states)",
                unsupported=True,
            )
        b = _Builder()
        match = b.new(_MATCH)
        tree = trees[0] if len(trees) == 1 else Node(ALT, tuple(trees))
        self._start = b.emit(tree, match)
        self._kind, self._test, self._assertion = b.kind, b.test, b.assertion
        self._out1, self._out2 = b.out1, b.out2
        self.nfa_states = len(b.kind)
        self._max_states = max(1, max_states)
        self._max_transitions = max(1, max_transitions)
        self.steps = 0  # characters read + NFA states visited, since creation
        self.flushes = 0  # times the DFA cache was dropped for being full
        self._anchored = self._start_anchored()
        self._reset()

    # -- matching ------------------------------------------------------------------
    def search(self, text: str) -> bool:
        """Whether the patterns match anywhere in ``text``."""
        state = self._initial
        body = text[:-1] if text.endswith("\n") else text
        read = 0
        for c in body:
            read += 1
            nxt = state.next.get(c)
            if nxt is None:
                nxt = self._transition(state, c)
            if nxt.done:
                self.steps += read
                return nxt is _MATCHED
            state = nxt
        self.steps += read
        if len(body) != len(text):  # a final "\n": "$" may match just before it
            nxt = state.last_newline
            if nxt is None:
                nxt = self._transition(state, "\n", final_newline=True)
            self.steps += 1
            if nxt.done:
                return nxt is _MATCHED
            state = nxt
        if state.final is None:
            state.final = self._accepts_at_end(state)
        return state.final

    # -- the lazy DFA ----------------------------------------------------------------
    def _reset(self) -> None:
        self._states: dict[tuple[frozenset[int], bool, bool], _DState] = {}
        self._transitions = 0
        self._kernel_entries = 0  # NFA states held by the DFA states: their memory
        self._initial = self._state(frozenset(), False, True)

    def _state(self, kernel: frozenset[int], prev_word: bool, at_start: bool) -> _DState:
        key = (kernel, prev_word, at_start)
        state = self._states.get(key)
        if state is None:
            state = self._states.setdefault(key, _DState(kernel, prev_word, at_start))
            self._kernel_entries += len(kernel)
        return state

    def _transition(self, state: _DState, c: str, *, final_newline: bool = False) -> _DState:
        word = is_word(c)
        ctx = _Context(state.at_start, False, final_newline, state.prev_word, word)
        chars, matched = self._closure(state.kernel, ctx)
        if matched:
            nxt = _MATCHED
        else:
            test = self._test
            kernel = frozenset(self._out1[s] for s in chars if test[s](c))  # type: ignore[misc]
            self.steps += len(chars)
            if not kernel and self._anchored:
                nxt = _DEAD  # no thread left, and none can start after the first position
            else:
                if (
                    len(self._states) >= self._max_states
                    or self._transitions >= self._max_transitions
                    or self._kernel_entries >= MAX_KERNEL_ENTRIES
                ):
                    self.flushes += 1
                    self._reset()
                nxt = self._state(kernel, word, False)
        if final_newline:
            state.last_newline = nxt
        else:
            state.next[c] = nxt
            self._transitions += 1
        return nxt

    def _accepts_at_end(self, state: _DState) -> bool:
        ctx = _Context(state.at_start, True, False, state.prev_word, False)
        return self._closure(state.kernel, ctx)[1]

    def _closure(self, kernel: frozenset[int], ctx: _Context) -> tuple[list[int], bool]:
        """The character states reachable by empty moves, and whether MATCH is (search)."""
        kind, out1, out2, assertion = self._kind, self._out1, self._out2, self._assertion
        seen: set[int] = set()
        chars: list[int] = []
        stack = [self._start, *kernel]  # search: a match may start at every position
        matched = False
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            k = kind[s]
            if k == _CHAR:
                chars.append(s)
            elif k == _SPLIT:
                stack.append(out2[s])
                stack.append(out1[s])
            elif k == _ASSERT:
                if ctx.holds(assertion[s]):
                    stack.append(out1[s])
            else:
                matched = True
        self.steps += len(seen)
        return chars, matched

    def _start_anchored(self) -> bool:
        """True when no match can start after the first position (every branch has ``^``)."""
        for prev_word in (False, True):
            for next_word in (False, True):
                for at_end in (False, True):
                    ctx = _Context(False, at_end, not at_end, prev_word, next_word)
                    chars, matched = self._closure(frozenset(), ctx)
                    if chars or matched:
                        return False
        return True
