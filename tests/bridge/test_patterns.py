"""Route patterns: linear-time matching (asserted on step counts), the refused subset,
and the same answers as Python's ``re`` for the supported one."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ably_bridge.bridge.config import ConfigError, parse_config
from ably_bridge.bridge.pattern_engine import Program
from ably_bridge.bridge.pattern_regex import parse_regex
from ably_bridge.bridge.pattern_syntax import SyntaxProblem, parse_glob
from ably_bridge.bridge.patterns import (
    MAX_NAME_LENGTH,
    NameMatcher,
    PatternError,
    compile_pattern,
)

# Patterns whose backtracking cost explodes on a near-miss (issue 17, item 1, and the
# textbook cases), with the near-miss name for a length n.
ADVERSARIAL = [
    ("re:^room-(a+)+$", lambda n: "room-" + "a" * n + "!"),
    ("re:(a|a)*b", lambda n: "a" * n),
    ("re:(a*)*b", lambda n: "a" * n),
    ("re:^(\\w+\\s?)*$", lambda n: "ab " * (n // 3) + "!"),
    ("re:(x+x+)+y", lambda n: "x" * n),
    ("re:^(a|aa|aaa)*c$", lambda n: "a" * n + "b"),
    ("*a*a*a*a*b", lambda n: "a" * n),
    ("*a?a*a?a*a?b", lambda n: "a" * n),
    ("re:(?i)(.*a){12}b", lambda n: "A" * n),
]


def steps(matcher: NameMatcher, name: str) -> tuple[bool, int]:
    before = matcher.steps
    hit = matcher.matches(name)
    return hit, matcher.steps - before


@pytest.mark.parametrize(("pattern", "make"), ADVERSARIAL)
def test_adversarial_names_cost_linear_steps(pattern: str, make: Callable[[int], str]) -> None:
    matcher = NameMatcher([pattern])
    hit, cold = steps(matcher, make(200))
    assert not hit
    # Cold: each new DFA state costs at most a pass over the NFA.
    assert cold <= 205 * (matcher._programs[0].nfa_states + 2)
    # Warm: one step a character once the few DFA states are built.
    for n in (400, 800, 1600):
        name = make(n)
        hit, work = steps(matcher, name)
        assert not hit
        assert work <= len(name) + 40 * matcher._programs[0].nfa_states, (n, work)
    _, work_1600 = steps(NameMatcher([pattern]), make(1600))
    _, work_800 = steps(NameMatcher([pattern]), make(800))
    assert work_1600 - work_800 <= 1600  # doubling the name adds its length, no more


def test_the_issue_cases_match_in_about_one_step_a_character() -> None:
    rx = NameMatcher(["re:^room-(a+)+$"])
    name = "room-" + "a" * 1000 + "!"
    assert steps(rx, name)[1] < 1200
    assert rx.matches("room-aaaa") and not rx.matches("room-")
    glob = NameMatcher(["*a*a*a*a*b"])
    assert steps(glob, "a" * 200)[1] < 400
    assert glob.matches("xaxaxaxab") and not glob.matches("xaxaxab")


def test_worst_case_without_a_cache_is_names_times_nfa() -> None:
    """Even with the DFA cache at one state (flushed at every step), the cost is bounded."""
    tree = parse_regex("(a|b)*a(a|b){12}c")  # 2^12 DFA states: the cache cannot hold them
    program = Program([tree], max_states=1)
    name = "ab" * 500
    assert not program.search(name)
    bound = (len(name) + 1) * (2 * program.nfa_states + 2)
    assert program.steps <= bound
    assert program.flushes > 100


def test_cache_limits_are_kept_and_answers_survive_a_flush() -> None:
    program = Program([parse_regex("(a|b)*a(a|b){8}$")], max_states=50, max_transitions=80)
    names = ["".join("ab"[(i >> k) & 1] for k in range(12)) for i in range(300)]
    for name in names:
        assert program.search(name) == (re.search("(a|b)*a(a|b){8}$", name) is not None)
    assert program.flushes > 0
    assert len(program._states) <= 51


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("re:(a)\\1", "backreferences are not supported at position 3"),
        ("re:(?P<x>a)(?P=x)", "backreferences are not supported"),
        ("re:[\\1]", "backreferences are not supported"),
        ("re:a(?=b)", "lookahead assertions are not supported at position 1"),
        ("re:a(?!b)", "lookahead assertions are not supported"),
        ("re:(?<=a)b", "lookbehind assertions are not supported"),
        ("re:(?<!a)b", "lookbehind assertions are not supported"),
        ("re:(?>a+)b", "atomic groups are not supported"),
        ("re:a*+b", "possessive quantifiers are not supported"),
        ("re:a{2}+", "possessive quantifiers are not supported"),
        ("re:(a)?(?(1)b|c)", "conditional groups are not supported"),
        ("re:(?m)^a", "the flag 'm' (multi-line anchors) is not supported"),
        ("re:(?x)a b", "the flag 'x' (verbose patterns) is not supported"),
        ("re:(?a:\\w)", "the flag 'a' (ASCII matching) is not supported"),
        ("re:a{1001}", "repetition count above 1000"),
        ("re:a{3,2}", "min repeat greater than max repeat"),
        ("re:(a{999}){999}", "too large once repetitions are expanded"),
        ("re:" + "(" * 51 + "a" + ")" * 51, "groups nested deeper than 50"),
        ("re:" + "a" * 1001, "longer than 1000 characters"),
        ("a" * 1000 + "*", "longer than 1000 characters"),
        ("re:x(?i)y", "global flags must be at the start"),
        ("re:(?-i)y", "global flags must be at the start"),
        ("re:(?i", "unknown flag or missing ':'"),
        ("re:(?Q)", "unknown extension ?Q"),
        ("re:(?<n>a)", "unknown extension ?<"),
        ("re:(?Pn)", "unknown extension ?P"),
        ("re:(?P<1>a)", "bad character in group name"),
        ("re:(?P<n>a)(?P<n>b)", "redefinition of group name 'n'"),
        ("re:(?#open", "unterminated comment"),
        ("re:\\q", "bad escape \\q"),
        ("re:\\", "bad escape (end of pattern)"),
        ("re:\\x4", "incomplete escape \\x4"),
        ("re:\\U00110000", "bad escape \\U00110000"),
        ("re:\\N{NO SUCH CHARACTER}", "undefined character name"),
        ("re:\\N", "missing { or }"),
        ("re:\\477", "outside of range"),
        ("re:[z-a]", "bad character range z-a at position 1"),
        ("re:[\\d-z]", "bad character range"),
        ("re:[a", "unterminated character set"),
        ("re:[a\\", "unterminated character set"),
        ("re:(a", "missing ), unterminated subpattern at position 0"),
        ("re:a)", "unbalanced parenthesis at position 1"),
        ("re:*a", "nothing to repeat at position 0"),
        ("re:{2}", "nothing to repeat"),
        ("re:^*", "nothing to repeat at position 1"),
        ("re:a**", "multiple repeat"),
        ("re:", "empty regular expression"),
        ("", "non-empty string"),
    ],
)
def test_patterns_outside_the_subset_are_refused_with_the_reason(
    pattern: str, message: str
) -> None:
    with pytest.raises(PatternError, match=re.escape(message)):
        compile_pattern(pattern)


def test_messages_say_whether_a_pattern_is_invalid_or_outside_the_subset() -> None:
    with pytest.raises(PatternError, match=r"^invalid regular expression: missing \)"):
        compile_pattern("re:(a")
    with pytest.raises(PatternError, match=r"^unsupported regular expression \(route patterns"):
        compile_pattern("re:(a)\\1")
    with pytest.raises(PatternError, match=r"^unsupported glob \(route patterns must match"):
        compile_pattern("*" * 1001)
    with pytest.raises(PatternError, match="too large once repetitions are expanded"):
        NameMatcher(["re:(a{999}){999}"])
    with pytest.raises(SyntaxProblem, match="no pattern"):
        Program([])


def test_check_config_names_the_field_of_a_refused_pattern() -> None:
    stream = [{"type": "redis_stream", "key": "k"}]
    raw = {
        "redis": {"url": "redis://127.0.0.1:6379/0"},
        "routes": [
            # The issue's pattern is regular: it is accepted, and matches in linear time.
            {"id": "a", "channels": ["re:^room-(a+)+$"], "discover": {"prefixes": ["room-"]},
             "targets": stream},
            {"id": "b", "channels": ["ok", "re:(x)\\1"], "names": ["re:(?=y)"],
             "ciphers": [{"channels": ["re:(?<=z)"], "key_env": "K"}], "targets": stream},
        ],
    }  # fmt: skip
    with pytest.raises(ConfigError) as err:
        parse_config(raw, {"ABLY_KEY": "app.key:secret", "K": "a" * 22 + "=="})
    found = err.value.problems
    assert [p.split(":")[0] for p in found] == [
        "routes[1].channels[1]",
        "routes[1].names[0]",
        "routes[1].ciphers[0].channels[0]",
    ]
    assert "backreferences are not supported at position 3" in found[0]
    assert "lookahead assertions are not supported" in found[1]
    assert "lookbehind assertions are not supported" in found[2]


def test_a_long_list_of_patterns_is_split_into_several_programs() -> None:
    patterns = [f"re:^p{i}-a{{1,900}}$" for i in range(40)]
    matcher = NameMatcher(patterns)
    assert len(matcher._programs) > 1
    assert matcher.matches("p39-aaa") and matcher.matches("p0-a") and not matcher.matches("p0-")


def test_names_over_the_bound_match_exact_names_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ably_bridge.bridge.patterns")
    long = "x" * (MAX_NAME_LENGTH + 1)
    matcher = NameMatcher(["x*", long])
    assert matcher.matches(long)  # an exact name still matches
    assert not matcher.matches(long + "y")
    assert not matcher.matches(long + "z")
    assert matcher.oversized == 2
    assert sum("longer than 2048" in r.getMessage() for r in caplog.records) == 1
    assert matcher.matches("x" * MAX_NAME_LENGTH)


def test_results_are_kept_and_the_cache_is_bounded() -> None:
    matcher = NameMatcher(["re:^a+$"])
    assert matcher.matches("aaa")
    work = matcher.steps
    assert matcher.matches("aaa") and matcher.steps == work  # answered from the cache
    for i in range(5000):
        matcher.matches(f"b{i}")
    assert len(matcher._results) <= 4096
    matcher.matches("a" * 300)  # long names are matched each time, not kept
    assert "a" * 300 not in matcher._results and matcher.matches("a" * 300)


def test_the_dfa_cache_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import ably_bridge.bridge.pattern_engine as engine

    monkeypatch.setattr(engine, "MAX_KERNEL_ENTRIES", 500)
    program = Program([parse_regex("(a|b)*a(a|b){20}c")])
    for i in range(200):
        program.search("".join("ab"[(i * 7919 >> k) & 1] for k in range(40)))
    assert program.flushes > 0 and program._kernel_entries < 500 + program.nfa_states


def test_router_semantics_kept() -> None:
    m = NameMatcher(["a?c", "re:(?i)^upper", "exact", "[meta]*"])
    assert m.matches("abc") and not m.matches("abcd") and not m.matches("ac")
    assert m.matches("UPPERCASE") and m.matches("uPpEr") and not m.matches("xupper")
    assert m.matches("exact") and not m.matches("exactly")
    assert m.matches("[meta]channel.lifecycle") and not m.matches("meta]x")
    assert NameMatcher([]).empty and not NameMatcher([]).matches("x")
    assert NameMatcher(["only"]).steps == 0
    assert m.matches("a\nc")  # a glob's "?" and "*" take any character
    assert repr(NameMatcher(["a*"])) == "NameMatcher(['a*'])"


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("^a$", ["a", "a\n"], ["a\n\n", "ba", ""]),
        ("a\\Z", ["a", "ba"], ["a\n"]),
        ("\\Aa", ["ab"], ["ba"]),
        ("\\bcat\\b", ["cat", "a cat!", "cat_"[:3]], ["cats", "concat"]),
        ("\\Bat", ["cat"], ["at", "a at"]),
        ("\\B", ["ab", " "], [""]),
        ("\\b", ["a"], ["", " "]),
        ("$", ["", "x"], []),
        ("^$", ["", "\n"], ["x"]),
        ("(?s)a.b", ["a\nb"], []),
        ("a.b", ["axb"], ["a\nb"]),
        ("(?i:k)", ["k", "K", "\u212a"], ["x"]),
        ("(?i)[a-z]+\\d", ["ABC1", "\u212a9"], ["_1"]),
        ("(?i)stra\u00dfe", ["STRA\u1e9eE", "stra\u00dfe"], ["strasse"]),
        ("(?i:a)(?-i:b)", ["Ab", "ab"], ["AB"]),
        ("[^a-c]", ["d", "\n"], ["abc"]),
        ("[\\w-]+:[\\s\\S]", ["chat-1: x"], [":x"]),
        ("[]a]+x", ["]ax"], ["x"]),
        ("\\x41\\u00e9\\N{SNOWMAN}\\101\\0", ["A\u00e9\u2603A\x00"], ["Ae"]),
        ("[\\x41-\\x43\\b]", ["B", "\b"], ["D"]),
        ("a{,2}b", ["b", "aab"], []),
        ("^a{2,}$", ["aa", "aaaa"], ["a"]),
        ("^a{2}$", ["aa"], ["aaa"]),
        ("^(?:ab){1,2}?$", ["ab", "abab"], ["ababab"]),
        ("a{", ["a{"], ["a"]),
        ("a{x}", ["a{x}"], ["a"]),
        ("a{}", ["a{}"], ["a"]),
        ("^()*$", [""], ["a"]),
        ("(?#note)x", ["x"], ["y"]),
        ("(?P<id>\\d+)-\\.", ["12-."], ["12-x"]),
        ("\\d", ["\u0663"], ["x"]),
        ("\u00e9|^$", ["caf\u00e9", ""], ["cafe"]),
        ("(?s:(?-s:a.b)|c.d)", ["axb", "c\nd"], ["a\nb"]),
        ("a\\tb\\n\\r\\f\\v\\a\\00", ["a\tb\n\r\f\v\a\x00"], ["atb"]),
        ("(?i)\u0130", ["\u0130"], ["x"]),
    ],
)
def test_supported_regexes_agree_with_python(pattern: str, yes: list[str], no: list[str]) -> None:
    program = compile_pattern("re:" + pattern)
    for name in yes:
        assert program.search(name), (pattern, name)
        assert re.search(pattern, name), (pattern, name)
    for name in no:
        assert not program.search(name), (pattern, name)
        assert not re.search(pattern, name), (pattern, name)


# -- the same answer as Python's re, on random patterns of the subset ---------------------

_ATOMS = st.sampled_from(
    ["a", "b", "-", ":", ".", "\\.", "[ab]", "[^a]", "[a-c]", "\\d", "\\w", "\\W", "\\s",
     "[\\w:]", "\u00e9", "K", "_", "1"]
)  # fmt: skip
_ANCHORS = st.sampled_from(["^", "$", "\\A", "\\Z", "\\b", "\\B"])
_QUANTIFIERS = st.sampled_from(["*", "+", "?", "{2}", "{1,2}", "{,2}", "{2,}", "*?", "+?", "??"])


def _regexes() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, inner).map("".join),
            st.tuples(inner, inner).map("|".join),
            inner.map(lambda r: f"({r})"),
            inner.map(lambda r: f"(?:{r})"),
            st.tuples(st.sampled_from(["(?i:", "(?s:", "(?-i:"]), inner).map(
                lambda t: f"{t[0]}{t[1]})"
            ),
            st.tuples(inner.map(lambda r: f"(?:{r})"), _QUANTIFIERS).map("".join),
        )

    base = st.one_of(_ATOMS, st.tuples(_ATOMS, _QUANTIFIERS).map("".join), _ANCHORS)
    return st.recursive(base, extend, max_leaves=8)


_NAMES = st.text(alphabet="ab-:.1_ \n\u00e9kKc", max_size=12)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flags=st.sampled_from(["", "(?i)", "(?s)", "(?is)"]),
    regex=_regexes(),
    names=st.lists(_NAMES, min_size=1, max_size=6),
)
def test_random_regexes_agree_with_python(flags: str, regex: str, names: list[str]) -> None:
    pattern = flags + regex
    try:
        expected = re.compile(pattern)
    except re.error:
        with pytest.raises(PatternError):
            compile_pattern("re:" + pattern)
        return
    program = compile_pattern("re:" + pattern)
    for name in names:
        assert program.search(name) == (expected.search(name) is not None), (pattern, name)


@settings(max_examples=400, deadline=None)
@given(
    glob=st.text(alphabet="ab*?:[]", min_size=1, max_size=8),
    names=st.lists(st.text(alphabet="ab:[]", max_size=10), min_size=1, max_size=6),
)
def test_globs_agree_with_a_reference(glob: str, names: list[str]) -> None:
    reference = re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob) + r"\Z",
        re.DOTALL,
    )
    program = Program([parse_glob(glob)])
    for name in names:
        assert program.search(name) == (reference.match(name) is not None), (glob, name)
