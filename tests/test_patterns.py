"""runtime/patterns.py: `pattern` of variables and plugin parameters, matched in linear time.

The oracle is `re.fullmatch` itself: on random patterns (every construct the matcher accepts)
and random short values, both must agree. Then the catastrophic cases: they finish, and the
constructs that need backtracking are refused at validate time with file:line and a hint.
"""

import re
import subprocess
import sys
import warnings

import pytest
from conftest import run_playbook
from test_bundle import INTERPRETERS, _label, bare_env, compile_bundle, run
from hypothesis import given, settings
from hypothesis import strategies as st

from playbook.compiler.plan import compile_source
from playbook.compiler.source import CompileError, parse
from playbook.runtime import patterns
from playbook.runtime.patterns import PatternError, compile_pattern
from playbook.runtime.plugins import ParameterDef, PluginError, convert_param
from playbook.runtime.variables import VariableError, check, parse_spec

# -- the oracle --------------------------------------------------------------------------------------
ATOMS = ["a", "b", "A", "-", r"\.", ".", "[ab]", "[^a]", "[a-c1]", r"[\d_]", r"[^\W\d]", r"\d", r"\w", r"\s",
         r"\W", r"\b", r"\B", "^", "$", r"\A", r"\Z", "", "é", "K"]
QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{0,2}", "{1,}", "*?", "+?", "??", "{1,2}?"]
FLAGS = ["", "", "(?i)", "(?s)", "(?m)", "(?a)", "(?ai)"]


def _quantified(inner):
    return st.tuples(inner, st.sampled_from(QUANTIFIERS)).map(lambda p: p[0] + p[1])


regexes = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        st.lists(_quantified(inner), min_size=1, max_size=4).map("".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        _quantified(inner.map(lambda r: "(%s)" % r)),
        _quantified(inner.map(lambda r: "(?:%s)" % r)),
        _quantified(inner.map(lambda r: "(?i:%s)" % r)),
    ),
    max_leaves=8,
)
values = st.text(alphabet="abAB1_ -.\n\u212aé", max_size=8)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(FLAGS), regexes, st.lists(values, min_size=1, max_size=6))
def test_agrees_with_re_fullmatch(flags, regex, texts):
    pattern = flags + regex
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = re.compile(pattern)
        except re.error:
            with pytest.raises(PatternError, match="^is not a valid regular expression: "):
                compile_pattern(pattern)
            return
        try:
            compiled = compile_pattern(pattern)
        except PatternError as exc:  # `*` then `+` reads as possessive on Python 3.11+
            assert str(exc).startswith("uses a possessive quantifier"), pattern
            return
    for text in texts:
        assert compiled.fullmatch(text) == (expected.fullmatch(text) is not None), (pattern, text)


@pytest.mark.parametrize(
    "pattern, yes, no",
    [
        ("[a-z][a-z0-9-]*", ["web", "a-1"], ["Web", "", "1a"]),
        (r"([a-z0-9-]+\.)+[a-z]{2,}", ["example.com", "a.b.cd"], ["example", "a..cd"]),
        (r"\d+(\.\d+)?", ["1", "1.5"], ["1.", ".5"]),
        ("(?i)prod|staging", ["PROD", "staging"], ["dev"]),
        ("a$", ["a"], ["a\n"]),  # fullmatch: `$` before a final newline is not the end
        ("", [""], ["a"]),
    ],
)
def test_everyday_patterns(pattern, yes, no):
    assert all(patterns.fullmatch(pattern, v) for v in yes)
    assert not any(patterns.fullmatch(pattern, v) for v in no)


# -- catastrophic patterns finish ----------------------------------------------------------------------
EVIL = ["(a+)+$", "(a*)*$", "(a|a)*$", "(a|aa)+$", "(.*a){12}$", r"(\w+\s?)*$", "(a+)+b", "a*a*a*a*a*a*a*a*a*a*b"]


@pytest.mark.parametrize("pattern", EVIL)
def test_catastrophic_patterns_are_answered(pattern):
    """Each would backtrack for hours in `re` on these values; here they are answered at once."""
    assert patterns.fullmatch(pattern, "a" * 40 + "!") is False
    assert patterns.fullmatch(pattern, "a" * 5000 + "!") is False
    assert patterns.fullmatch(pattern, "a" * 40 + ("b" if pattern.endswith("b") else "")) is True


RUNBOOK = '''[runbook]
title = "patterns"

[variables]
NAME = { pattern = "(a+)+$" }

[greet]
type = "Command"
command_name = "echo {{ NAME }}"
'''


def test_the_hanging_case_on_the_command_line(tmp_path):
    """validate, plan and run with a 40-character value that makes `re` backtrack: they finish
    (the subprocess timeout only guards the test suite against the old hang)."""
    (tmp_path / "p.playbook.toml").write_text(RUNBOOK)
    value = "NAME=" + "a" * 40 + "!"
    for args in (["validate"], ["plan"], ["run", "--state-path", str(tmp_path / "run.db")]):
        try:
            result = run_playbook(args[:1] + ["p.playbook.toml", "--var", value] + args[1:], cwd=tmp_path, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("playbook %s hung on the pattern" % args[0])
        assert result.returncode == 2, result.stderr
        assert "NAME (from --var): '%s' does not match the pattern (a+)+$" % value[5:] in result.stderr
    result = run_playbook(["plan", "p.playbook.toml", "--var", "NAME=" + "a" * 40], cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def pattern_bundle(tmp_path_factory):
    work = tmp_path_factory.mktemp("patterns")
    (work / "p.playbook.toml").write_text(RUNBOOK)
    return compile_bundle(work / "p.playbook.toml", work / "p.pbz", "--python", "%d.%d" % sys.version_info[:2])


@pytest.mark.parametrize("python", INTERPRETERS, ids=_label)
def test_the_matcher_in_a_bundle_on_every_python(pattern_bundle, tmp_path, python):
    """The parser the matcher uses is internal to each Python (sre_parse, re._parser)."""
    env = bare_env(tmp_path, python)
    proc = run([pattern_bundle, "plan", "--var", "NAME=" + "a" * 40 + "!"], env, timeout=60)
    assert proc.returncode == 2 and "does not match the pattern (a+)+$" in proc.stderr, proc.stderr
    proc = run([pattern_bundle, "plan", "--var", "NAME=" + "a" * 40], env, timeout=60)
    assert proc.returncode == 0, proc.stderr


# -- what is refused, where ------------------------------------------------------------------------------
REFUSED = [
    (r"(a)\1", r"a backreference (\1 or (?P=name))"),
    ("(?P<x>a)(?P=x)", r"a backreference (\1 or (?P=name))"),
    ("(?=a)a", "a lookahead or lookbehind ((?=…) or (?<=…))"),
    ("(?<=a)b", "a lookahead or lookbehind ((?=…) or (?<=…))"),
    ("(?!a).", "a negative lookahead or lookbehind ((?!…) or (?<!…))"),
    ("(a)?(?(1)b|c)", "a conditional group ((?(1)…|…))"),
]
if sys.version_info >= (3, 11):
    REFUSED += [("(?>a+)b", "an atomic group ((?>…))"), ("a++b", "a possessive quantifier (*+, ++, ?+ or {m,n}+)")]


def _toml_string(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


@pytest.mark.parametrize("pattern, what", REFUSED)
def test_constructs_that_need_backtracking_are_refused_at_validate_time(pattern, what):
    text = '[runbook]\ntitle = "t"\n\n[variables]\nX = { pattern = %s }\n\n[a]\ntype = "Manual"\n' % _toml_string(pattern)
    with pytest.raises(CompileError) as info:
        compile_source(parse(text, "p.toml"))
    (diag,) = info.value.diagnostics
    assert (diag.file, diag.line, diag.col) == ("p.toml", 5, 7)
    assert diag.message == "pattern of variable X uses %s, which cannot be matched in bounded time" % what
    assert diag.hint == (
        "write the pattern without it: Playbook matches patterns in time linear in the value, "
        "so that no value can make a check hang"
    )


def test_huge_repeat_counts_and_invalid_patterns_are_refused():
    _, errors = parse_spec("X", {"pattern": "(a{1000}){1000}"})
    assert [str(e) for e in errors] == [
        "pattern of variable X is too large: more than %d states once its repeats are written out" % patterns.MAX_STATES
    ]
    assert errors[0].hint == "use smaller repeat counts ({m,n})"
    _, errors = parse_spec("X", {"pattern": "(" * 5000})
    assert [str(e).split(":")[0] for e in errors] == ["pattern of variable X is not a valid regular expression"]


def test_a_plugin_parameter_pattern_that_needs_backtracking_is_an_error_not_a_hang():
    assert convert_param(ParameterDef(pattern="(a+)+$"), "a" * 40) == "a" * 40
    with pytest.raises(PluginError, match=r"does not match the pattern \(a\+\)\+\$"):
        convert_param(ParameterDef(pattern="(a+)+$"), "a" * 40 + "!")
    with pytest.raises(PluginError, match=r"^the pattern \(a\)\\1 uses a backreference"):
        convert_param(ParameterDef(pattern=r"(a)\1"), "aa")


def test_check_uses_the_linear_matcher():
    spec = {"type": "str", "pattern": "(a|aa)+$"}
    assert check("X", spec, "a" * 60) == "a" * 60
    with pytest.raises(VariableError, match="does not match the pattern"):
        check("X", spec, "a" * 60 + "b")
