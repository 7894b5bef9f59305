"""The shell is the oracle for command substitution (the README's Security model).

Values are put into every position the compiler accepts, in a corpus of shell snippets, then
run by the real shells of this machine (sh, dash, bash). Each snippet writes the value it
received to a file `out`; the bytes must be exactly the value's, and no `CANARY` file may
appear (every hostile payload tries to create one). The snippets of one value run in one shell
process, each in a directory of its own, so an escape is pinned to its snippet and a snippet
that swallowed the next one shows as a missing `out`.

Two inputs: a fixed grid (PAYLOADS × SNIPPETS × shells) and hypothesis-generated values built
from quotes, backslashes, line breaks, `$( )`, backquotes, here-document delimiters and
unicode. Then the defects reported in issue 9, each with a test that failed before.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from playbook.compiler import shell, source
from playbook.compiler.plan import compile_source
from playbook.compiler.source import CompileError
from playbook.runtime import executors, templating
from playbook.runtime.variables import Sources

SHELLS = ("sh", "dash", "bash")


def _why_not(name):
    """Why the shell `name` is not run here, or None."""
    path = shutil.which(name)
    if path is None:
        return "%s is not installed" % name
    for other in SHELLS[SHELLS.index(name) + 1 :]:
        if shutil.which(other) and os.path.realpath(shutil.which(other)) == os.path.realpath(path):
            return "%s is %s on this machine: the %s runs cover it" % (name, other, other)
    return None


AVAILABLE = [name for name in SHELLS if _why_not(name) is None]
# Each distinct interpreter once (`sh` is left out where it is dash or bash: those runs cover
# it); a shell that is not installed is a skip, which fails the run under CI.
SHELL_PARAMS = [
    pytest.param(name, marks=pytest.mark.skipif(bool(_why_not(name)), reason=str(_why_not(name))))
    for name in SHELLS if shutil.which(name) is None or _why_not(name) is None
]


def _same(value):
    return value


def _twice(value):
    return value + value


# (name, template, expected text in `out` for a value, shells it runs in or None for all)
SNIPPETS = [
    ("word", "printf %s {{ X }} > out", _same, None),
    ("single", "printf %s '{{ X }}' > out", _same, None),
    ("double", 'printf %s "{{ X }}" > out', _same, None),
    ("word-pieces", "printf %s --opt={{ X }}. > out", lambda v: "--opt=" + v + ".", None),
    ("word-end", "printf %s --opt={{ X }} > out", lambda v: "--opt=" + v, None),
    ("two-words", "printf %s x {{ X }}>out", lambda v: "x" + v, None),
    ("after-tilde", "printf %s ~{{ X }} > out", lambda v: "~" + v, None),
    ("after-assignment", "v={{ X }} printf %s {{ X }} > out", _same, None),
    ("brace", "printf %s {a,{{ X }}} > out", lambda v: "a" + v, ("bash",)),
    ("after-reserved-word", "printf %s in {{ X }} > out", lambda v: "in" + v, None),
    ("for-list", 'for v in a {{ X }}; do printf %s "$v" >> out; done', lambda v: "a" + v, None),
    ("case-branch", "case a in a) printf %s {{ X }} > out;; esac", _same, None),
    ("case-pattern", "case a in {{ X }}) printf a > out;; *) printf %s {{ X }} > out;; esac", _same, None),
    ("mixed-pieces", "printf %s \"a\"{{ X }}'b'\"{{ X }}\"'{{ X }}' > out", lambda v: "a" + v + "b" + v + v, None),
    ("adjacent", "printf %s {{ X }}{{ X }} > out", _twice, None),
    ("assignment", 'v={{ X }}; printf %s "$v" > out', _same, None),
    ("subst-in-double", 'v="$(printf %s {{ X }}; echo .)"; printf %s "${v%.}" > out', _same, None),
    ("double-in-subst", 'v="$(printf %s "{{ X }}"; echo .)"; printf %s "${v%.}" > out', _same, None),
    ("single-in-subst", "v=\"$(printf %s '{{ X }}'; echo .)\"; printf %s \"${v%.}\" > out", _same, None),
    ("bare-subst", 'v=$(printf %s {{ X }}; echo .); printf %s "${v%.}" > out', _same, None),
    ("subst-in-subst", 'v="$(printf %s "$(printf %s {{ X }}; echo .)")"; printf %s "${v%.}" > out', _same, None),
    ("after-comment-quote", "echo hi # don't\nprintf %s {{ X }} > out", _same, None),
    ("after-comment-double", ': # say "hi\nprintf %s "{{ X }}" > out', _same, None),
    ("after-quoted-heredoc", ": <<'EOF'\nit's \"$(x)\" `y` \\\nEOF\nprintf %s {{ X }} > out", _same, None),
    ("after-heredoc", ": <<EOF\nit's $HOME \"x\" ${HOME:-y}\nEOF\nprintf %s '{{ X }}' > out", _same, None),
    ("after-tab-heredoc", ": <<-EOF\n\tit's\n\tEOF\nprintf %s \"{{ X }}\" > out", _same, None),
    ("after-two-heredocs", ": <<A <<'B'\na'\nA\nb\"\nB\nprintf %s {{ X }} > out", _same, None),
    ("on-heredoc-line", ": <<'EOF'; printf %s {{ X }} > out\nbody'\nEOF", _same, None),
    ("quoted-on-heredoc-line", ": <<EOF; printf %s '{{ X }}' \"{{ X }}\" > out\nbody\"\nEOF", _twice, None),
    ("if", "if true; then printf %s {{ X }} > out; fi", _same, None),
    ("for", 'for v in {{ X }}; do printf %s "$v" > out; done', _same, None),
    ("case", "case {{ X }} in *) printf %s {{ X }} > out;; esac", _same, None),
    ("subshell", "( printf %s {{ X }} > out )", _same, None),
    ("group", '{ printf %s "{{ X }}" > out; }', _same, None),
    ("after-expansions", ": ${HOME:-x} $((1 + 2)) `echo hi` $'a\"b' $\"a'b\"; printf %s {{ X }} > out", _same, None),
    ("continued-line", "printf %s \\\n{{ X }} > out", _same, None),
    ("dollar-quote-in-double", "printf %s \"$'{{ X }}'\" > out", lambda v: "$'" + v + "'", None),
    ("escaped-quote-in-double", 'printf %s "\\"{{ X }}" > out', lambda v: '"' + v, None),
    ("jinja-if", "{% if true %}printf %s {% else %}printf %s{% endif %} {{ X }} > out", _same, None),
    ("jinja-optional-word", "{% if false %}command {% endif %}printf %s {{ X }} > out", _same, None),
    ("jinja-for", "{% for i in [1, 2] %}: {{ i }}; printf %s {{ X }} >> out; {% endfor %}", _twice, None),
    ("here-string", "cat <<< {{ X }} > out", lambda v: v + "\n", ("bash",)),
    ("process-substitution", "cat <(printf %s {{ X }}) > out", _same, ("bash",)),
    ("array", "a=( {{ X }} '{{ X }}' ); printf %s \"${a[0]}${a[1]}\" > out", _twice, ("bash",)),
]

# #! scripts run through the real executor (the interpreter reads the script from a pipe).
SCRIPTS = [
    ("sh-script", "#!/bin/sh\nprintf %s {{ X }} > out\n", _same),
    ("bash-script", "#!/usr/bin/env bash\nprintf %s \"{{ X }}\" > out\n", _same),
    (
        "python-script",
        "#!%s -S\nopen('out', 'w', encoding='utf-8', newline='').write({{ X | tojson }})\n"
        % sys.executable,
        _same,
    ),
]

PAYLOADS = [
    "",
    " ",
    "plain",
    "root",
    "b,c",
    "1",
    "do",
    "two words",
    "x; touch CANARY",
    "x && touch CANARY",
    "x | touch CANARY",
    "$(touch CANARY)",
    "`touch CANARY`",
    "x\ntouch CANARY",
    "'; touch CANARY; echo '",
    '"; touch CANARY; echo "',
    "'\"$(touch CANARY)\"'",
    "\\",
    "\\\\'",
    "a\\",
    "'",
    '"',
    "''",
    "\\'",
    "$HOME",
    "${HOME}",
    "$((1+1))",
    "$'\\x41'",
    "~root",
    "*",
    "?",
    "[a]",
    "{a,b}",
    "{1..3}",
    "-n",
    "--",
    "#x",
    "!x",
    "%s",
    "a=b",
    "if",
    "esac",
    ";",
    "&",
    "|",
    ")",
    "(",
    "<",
    ">",
    "EOF",
    "\nEOF\ntouch CANARY\n",
    "EOF\ntouch CANARY",
    "\tEOF\ntouch CANARY",
    "A\nB\ntouch CANARY",
    "x\r\ny",
    "\n",
    "\\\n",
    "é😀\u2028\u00a0",
    "--opt='x'",
    "\x01\x1b[31m",
]


_ANALYSES = {}


def _render(template, value):
    if template not in _ANALYSES:
        _ANALYSES[template] = shell.analyse(template)
    analysis = _ANALYSES[template]
    assert analysis.problems == (), analysis.problems
    return templating.render(template, {"X": value}, shell=True, quoting=analysis.quoting)


def _snippets_for(name):
    return [snippet for snippet in SNIPPETS if snippet[3] is None or name in snippet[3]]


def _run(shell_name, values, root):
    """Run every snippet with every value in one `shell_name` process, each in a directory of its
    own; returns {value: names of the snippets that did not receive exactly it, or ran a canary}."""
    snippets = _snippets_for(shell_name)
    script = []
    for v, value in enumerate(values):
        for n, (_, template, _, _) in enumerate(snippets):
            folder = os.path.join(root, "%d-%d" % (v, n))
            os.mkdir(folder)
            script.append("cd '%s' || exit 99\n%s\n" % (folder, _render(template, value)))
        if v == len(values) - 1 or sum(map(len, script)) > 60000:  # an argument holds 128 KiB at most
            _shell(shell_name, "".join(script), root)
            script = []
    failed = {}
    for v, value in enumerate(values):
        for n, (name, _, expected, _) in enumerate(snippets):
            if not _arrived(os.path.join(root, "%d-%d" % (v, n)), expected(value)):
                failed.setdefault(value, []).append(name)
    if os.path.exists(os.path.join(root, "CANARY")):
        failed["(a canary in the run's own directory)"] = []
    return failed


def _shell(name, script, cwd):
    subprocess.run(
        [name, "-c", script],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        env=dict(os.environ, LC_ALL="C.UTF-8"),
    )


def _arrived(folder, expected):
    """Whether `folder/out` holds exactly `expected` and no canary ran there."""
    out = os.path.join(folder, "out")
    got = pathlib.Path(out).read_bytes() if os.path.exists(out) else None
    return got == expected.encode("utf-8") and not os.path.exists(os.path.join(folder, "CANARY"))


def _run_scripts(values, root):
    failed = {}
    for v, value in enumerate(values):
        for n, (name, template, expected) in enumerate(SCRIPTS):
            folder = os.path.join(root, "%d-%d" % (v, n))
            os.mkdir(folder)
            result = executors.run_command(_render(template, value), cwd=folder, timeout=60)
            assert result.error is None, result.error
            if not _arrived(folder, expected(value)):
                failed.setdefault(value, []).append(name)
    return failed


# -- the fixed grid ------------------------------------------------------------------------------
def grid_size():
    """(tries, payloads, positions): a try is one payload in one position run by one interpreter."""
    tries = sum(len(PAYLOADS) * len(_snippets_for(name)) for name in AVAILABLE) + len(PAYLOADS) * len(SCRIPTS)
    return tries, len(PAYLOADS), len(SNIPPETS) + len(SCRIPTS)


@pytest.mark.parametrize("shell_name", SHELL_PARAMS)
def test_every_payload_arrives_exactly_in_every_position(shell_name, tmp_path):
    assert _run(shell_name, PAYLOADS, str(tmp_path)) == {}


def test_every_payload_arrives_exactly_in_scripts(tmp_path):
    assert _run_scripts(PAYLOADS, str(tmp_path)) == {}


# -- generated values ----------------------------------------------------------------------------
FRAGMENTS = [
    "'",
    '"',
    "\\",
    "\n",
    "$(touch CANARY)",
    "`touch CANARY`",
    "; touch CANARY",
    "EOF",
    "\nEOF\n",
    "$",
    "${",
    "}",
    "#",
    "!",
    "*",
    "~",
    "{a,b}",
    "\t",
    " ",
    "é",
    "😀",
    "\u2028",
    "\r",
]
PLAIN_WORDS = st.one_of(
    st.sampled_from(["root", "b,c", "1", "2", "a=b", "if", "esac", "do", "in", "%1", "@", "+"]),
    st.text(sorted(templating.PLAIN_CHARACTERS), min_size=1, max_size=8),
)
VALUES = st.one_of(
    PLAIN_WORDS,
    st.lists(
        st.one_of(
            st.sampled_from(FRAGMENTS),
            st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6),
        ),
        max_size=8,
    ).map("".join),
)


@settings(max_examples=30, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_generated_values_arrive_exactly_in_every_shell(value):
    failed = {}
    with tempfile.TemporaryDirectory() as root:
        for name in AVAILABLE:
            folder = os.path.join(root, name)
            os.mkdir(folder)
            failed.update({(name, key): names for key, names in _run(name, [value], folder).items()})
    assert failed == {}


@settings(max_examples=10, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_generated_values_arrive_exactly_in_scripts(value):
    with tempfile.TemporaryDirectory() as root:
        assert _run_scripts([value], root) == {}


# -- fuzzed commands -----------------------------------------------------------------------------
# Commands made of random shell fragments with values in them. Whatever the compiler accepts
# must run no payload in any shell; the fragments themselves never create a CANARY.
COMMAND_FRAGMENTS = [
    "echo ",
    "printf %s ",
    ": ",
    "x",
    "a=b ",
    " ",
    "'",
    '"',
    "\\",
    "$",
    "$(",
    ")",
    "(",
    "`",
    "${A:-",
    "}",
    "$((1+",
    "((",
    "))",
    "$'",
    '$"',
    "#",
    "\n",
    ";",
    "|",
    "&&",
    ">/dev/null ",
    " <<EOF\n",
    " <<'EOF'\n",
    " <<-EOF\n",
    "EOF\n",
    "\tEOF\n",
    "case ",
    " in ",
    "*) ",
    ";;",
    " esac",
    "[[ ",
    " ]]",
    "eval ",
    "a=(",
    "~",
    "{a,",
    "{% if A %}",
    "{% else %}",
    "{% endif %}",
    "{{ X }}",
    "{{ X }}",
    "{{ X }}",
    "'{{ X }}'",
    '"{{ X }}"',
]
HOSTILE = [
    "; touch CANARY",
    "$(touch CANARY)",
    "`touch CANARY`",
    "'; touch CANARY; '",
    '"; touch CANARY; "',
    "\ntouch CANARY\n",
    "\nEOF\ntouch CANARY\n",
    "\\'; touch CANARY #",
    ") ; touch CANARY ; (",
]
COMMANDS = st.lists(st.sampled_from(COMMAND_FRAGMENTS), min_size=1, max_size=14).map("".join)


def _accepted(template):
    """The quoting the compiler records for `template`, or None when it refuses or cannot parse."""
    try:
        analysis = shell.analyse(template)
    except templating.TemplateError:
        return None
    return None if analysis.problems or not analysis.quoting else analysis.quoting


@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(template=COMMANDS)
def test_fuzzed_commands_never_run_a_value(template):
    quoting = _accepted(template)
    assume(quoting is not None)
    with tempfile.TemporaryDirectory() as root:
        for name in AVAILABLE:
            script = []
            for number, value in enumerate(HOSTILE):
                folder = os.path.join(root, "%s-%d" % (name, number))
                os.mkdir(folder)
                command = templating.render(template, {"X": value, "A": number % 2}, shell=True, quoting=quoting)
                # Each command in a shell of its own: one with an open quote must not swallow the next.
                script.append("cd '%s' && %s -c %s\n" % (folder, name, shlex.quote(command)))
            _shell(name, "".join(script), root)
        ran = sorted(folder for folder in os.listdir(root) if os.path.exists(os.path.join(root, folder, "CANARY")))
        assert ran == [] and not os.path.exists(os.path.join(root, "CANARY"))


# -- the defects reported in issue 9, each from a compiled runbook -------------------------------
def _runbook(command):
    body = command.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return (
        '[runbook]\ntitle = "t"\n\n[variables]\nX = { required = true }\n\n[step]\ntype = "Command"\n'
        'command_name = "%s"\n' % body
    )


def _compiled_command(command, value):
    plan = compile_source(source.parse(_runbook(command), "d.toml"), Sources.gather(["X=" + value]), bake=True).plan
    return plan.nodes[0].command


def _refusal(command):
    with pytest.raises(CompileError) as info:
        compile_source(source.parse(_runbook(command), "d.toml"), Sources.gather(["X=x"]), bake=True)
    (error,) = [d for d in info.value.diagnostics if d.severity == "error"]
    return error


@pytest.mark.skipif(not shutil.which("sh"), reason="sh is not installed")
@pytest.mark.parametrize("value", ["x; touch CANARY", "$(touch CANARY)", "x'; touch CANARY; '"])
@pytest.mark.parametrize(
    "command",
    [
        "echo hi # don't\nprintf %s {{ X }} > out",
        'printf %s "$(printf %s {{ X }}; echo .)" > out',
    ],
)
def test_reported_escapes_are_now_exact(tmp_path, command, value):
    subprocess.run(["sh", "-c", _compiled_command(command, value)], cwd=str(tmp_path), capture_output=True, timeout=30)
    assert not (tmp_path / "CANARY").exists()
    assert (tmp_path / "out").read_text().rstrip(".") == value


@pytest.mark.parametrize(
    "command, place, reason",
    [
        ("cat <<EOF\n{{ X }}\nEOF", "d.toml:9:28", "it stands in a here-document"),
        ("cat <<'EOF'\n{{ X }}\nEOF", "d.toml:9:30", "it stands in a here-document"),
        ("echo $'{{ X }}'", "d.toml:9:24", "it stands inside $'…'"),
        ("echo $(( {{ X }} + 1 ))", "d.toml:9:26", "it stands inside shell arithmetic"),
        ("#!/usr/bin/env python3\nx = {{ X }}", "d.toml:9:45", "a #! script run by python3"),
        ("{% if false %}'{% endif %}echo {{ X }}", "d.toml:9:48", "past an {% if %} whose branches"),
    ],
)
def test_reported_misreadings_are_refused_at_validate_time(command, place, reason):
    error = _refusal(command)
    assert error.format().startswith("%s: error: cannot quote {{ X }} in step.command_name: " % place)
    assert reason in error.message
    assert "| raw deliberately" in error.hint
