"""runtime/templating.py and runtime/conditions.py: sandboxed Jinja, shell quoting, typed values,
`when` expressions that fail closed, and the run/skip rules of the README's Runbooks section."""

import json
import subprocess

import pytest

from playbook.compiler import shell, source
from playbook.compiler.plan import compile_source
from playbook.runtime import conditions, templating
from playbook.runtime.plan import Dep, Node
from playbook.runtime.engine import StepResult
from playbook.runtime.templating import TemplateError
from playbook.runtime.variables import Sources

SANDBOX_ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ [].append(1) }}",
    "{{ {}.update(a=1) }}",
    "{{ x.__class__ }}",
]


def run_sh(command, cwd):
    return subprocess.run(["/bin/sh", "-c", command], cwd=str(cwd), capture_output=True, text=True, timeout=30)


def command(template, values, interpreter=None):
    """Render a command template as the runtime does, with the quoting the compiler finds."""
    analysis = shell.analyse(template, interpreter)
    assert analysis.problems == ()
    return templating.render(template, values, shell=True, quoting=analysis.quoting)


# -- undefined names and the sandbox -------------------------------------------------------------
def test_undefined_names_are_errors():
    with pytest.raises(TemplateError) as info:
        templating.render("echo {{ MISSING }}", {})
    assert "'MISSING' is undefined" in str(info.value)


def test_undefined_attribute_is_an_error():
    with pytest.raises(TemplateError):
        templating.render("{{ X.nothing }}", {"X": "text"})


@pytest.mark.parametrize("template", SANDBOX_ESCAPES)
@pytest.mark.parametrize("shell", [False, True])
def test_sandbox_blocks_attribute_escapes(template, shell):
    with pytest.raises(TemplateError):
        templating.render(template, {"x": "value"}, shell=shell)


@pytest.mark.parametrize("template", SANDBOX_ESCAPES)
def test_sandbox_blocks_escapes_in_expressions(template):
    expression = template[2:-2].strip()
    with pytest.raises(TemplateError):
        templating.evaluate(expression, {"x": "value"})
    with pytest.raises(conditions.ConditionError):
        conditions.evaluate_when(expression, {"x": "value"}, {})


def test_sandbox_message_says_not_allowed():
    with pytest.raises(TemplateError) as info:
        templating.render("{{ ''.__class__ }}", {})
    assert str(info.value).startswith("not allowed in a runbook template")


def test_template_syntax_error_is_one_line():
    with pytest.raises(TemplateError) as info:
        templating.parse("{{ oops")
    assert str(info.value).startswith("template syntax error: ")
    assert "\n" not in str(info.value)


# -- shell quoting -------------------------------------------------------------------------------
INJECTIONS = [
    "x; touch {pwned}",
    "x && touch {pwned}",
    "$(touch {pwned})",
    "`touch {pwned}`",
    "x | touch {pwned}",
    "x\ntouch {pwned}",
    "'; touch {pwned}; echo '",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_value_in_command_can_never_run_a_second_command(tmp_path, payload):
    pwned = tmp_path / "pwned"
    value = payload.format(pwned=pwned)
    rendered = command("echo {{ ENV }}", {"ENV": value})
    result = run_sh(rendered, tmp_path)
    assert result.returncode == 0
    assert not pwned.exists(), rendered
    assert result.stdout == value + "\n"


def test_var_on_the_command_line_is_quoted_in_the_compiled_plan(tmp_path):
    """`--var 'ENV=x; touch …/pwned'` baked into `echo {{ ENV }}` and run with /bin/sh."""
    pwned = tmp_path / "pwned"
    text = '[runbook]\ntitle = "t"\n\n[variables]\nENV = { required = true }\n\n[greet]\ntype = "Command"\ncommand_name = "echo {{ ENV }}"\n'
    sources = Sources.gather(["ENV=x; touch %s" % pwned])
    (node,) = compile_source(source.parse(text, "q.toml"), sources, bake=True).plan.nodes
    assert node.templates == ()
    result = run_sh(node.command, tmp_path)
    assert not pwned.exists()
    assert result.stdout == "x; touch %s\n" % pwned


def test_run_time_rendering_of_a_kept_template_is_quoted(tmp_path):
    pwned = tmp_path / "pwned"
    text = '[runbook]\ntitle = "t"\n\n[variables]\nENV = { required = true }\n\n[greet]\ntype = "Command"\ncommand_name = "echo {{ ENV }}"\n'
    (node,) = compile_source(source.parse(text, "q.toml")).plan.nodes
    assert node.templates == ("command",)
    rendered = templating.render_node(node, {"ENV": "$(touch %s)" % pwned})
    run_sh(rendered.command, tmp_path)
    assert not pwned.exists()


def test_value_inside_single_quotes_can_never_run_a_second_command(tmp_path):
    pwned = tmp_path / "pwned"
    rendered = command("echo '{{ ENV }}'", {"ENV": "x; touch %s" % pwned})
    run_sh(rendered, tmp_path)
    assert not pwned.exists(), rendered


def test_value_inside_double_quotes_can_never_run_a_second_command(tmp_path):
    pwned = tmp_path / "pwned"
    rendered = command('echo "{{ ENV }}"', {"ENV": "$(touch %s)" % pwned})
    run_sh(rendered, tmp_path)
    assert not pwned.exists(), rendered


def test_raw_is_not_quoted(tmp_path):
    rendered = command("{{ CMD | raw }} && echo {{ WORD }}", {"CMD": "echo a b", "WORD": "c d"})
    assert rendered == "echo a b && echo 'c d'"
    assert run_sh(rendered, tmp_path).stdout == "a b\nc d\n"


def test_values_in_commands_are_rendered_as_text_then_quoted():
    values = {"B": True, "L": ["a", 1], "N": 3, "D": {"k": "v"}}
    rendered = command("x {{ B }} {{ L }} {{ N }} {{ D }}", values)
    assert rendered == "x true '[\"a\", 1]' 3 '{\"k\": \"v\"}'"


def test_non_command_fields_are_not_quoted():
    assert templating.render("deploy {{ A }}", {"A": "a b; c"}) == "deploy a b; c"


# -- native values ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "template, values, expected",
    [
        ("{{ N }}", {"N": 5}, 5),
        ("{{ L }}", {"L": [1, 2]}, [1, 2]),
        ("{{ D }}", {"D": {"a": 1}}, {"a": 1}),
        ("{{ B }}", {"B": False}, False),
        ("  {{ N * 2 }}  ", {"N": 5}, 10),
        ("{{- N -}}", {"N": 5}, 5),
        ("n={{ N }}", {"N": 5}, "n=5"),
        ("{{ N }}{{ N }}", {"N": 5}, "55"),
        ("plain", {}, "plain"),
    ],
)
def test_render_native_keeps_the_type_of_a_single_expression(template, values, expected):
    result = templating.render_native(template, values)
    assert result == expected
    assert type(result) is type(expected)


def test_function_params_render_natively():
    node = Node("n", "Function", function_params={"i": "{{ N }}", "s": "n={{ N }}", "l": ["{{ N }}", 1], "k": 7})
    assert templating.render_field(node, "function_params", {"N": 42}) == {"i": 42, "s": "n=42", "l": [42, 1], "k": 7}


def test_timeout_and_critical_are_typed():
    node = Node("n", "Command", timeout="{{ T * 2 }}", critical="{{ ENV == 'prod' }}")
    assert templating.render_field(node, "timeout", {"T": 30}) == 60
    assert templating.render_field(node, "critical", {"ENV": "prod"}) is True
    with pytest.raises(TemplateError):
        templating.render_field(node, "timeout", {"T": 0})


def test_strip_braces():
    assert templating.strip_braces("{{ a and b }}") == "a and b"
    assert templating.strip_braces("  a and b ") == "a and b"


def test_analyze_reports_names_and_calls():
    names, called = templating.analyze("{{ A }} {% for x in L %}{{ x }}{% endfor %} {{ f(B) }} {{ range(3) }}")
    assert names == {"A", "L", "B", "f"}
    assert called == {"f"}  # Jinja's own globals (range, dict, …) are not the author's functions


# -- when ------------------------------------------------------------------------------------------
RESULTS = {
    "ok": StepResult(status="succeeded", ran=True, exit_code=0, stdout="fine\n"),
    "bad": StepResult(status="failed", ran=True, exit_code=3, stderr="boom"),
    "skipped": StepResult(status="skipped", ran=False),
    "skipped_after_run": StepResult(status="skipped", ran=True, exit_code=3),
}


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("has_succeeded('ok')", True),
        ("has_succeeded('bad')", False),
        ("has_failed('bad')", True),
        ("has_failed('skipped')", False),
        ("has_run('ok')", True),
        ("has_run('skipped')", False),
        ("has_run('skipped_after_run')", True),
        ("is_skipped('skipped')", True),
        ("is_skipped('ok')", False),
        ("previous_node('bad').exit_code == 3", True),
        ("previous_node('ok').stdout == 'fine\\n'", True),
        ("previous_node('bad').stderr == 'boom'", True),
        ("ENV == 'prod' and N > 3", True),
        ("not FLAG", True),
        ("ITEMS | length == 2", True),
        ("'prod' in ENV", True),
        ("N > 10", False),
    ],
)
def test_when_expressions(expression, expected):
    values = {"ENV": "prod", "N": 5, "FLAG": False, "ITEMS": ["a", "b"]}
    assert conditions.evaluate_when(expression, values, RESULTS) is expected


def test_when_sees_typed_values():
    # a bool False must not be the truthy text "False", an int must compare as a number
    assert conditions.evaluate_when("SKIP", {"SKIP": False}, {}) is False
    assert conditions.evaluate_when("N > 3", {"N": 10}, {}) is True


@pytest.mark.parametrize("text, expected", [("true", True), ("false", False), ("", False), ("yes", True)])
def test_when_with_text_result(text, expected):
    assert conditions.evaluate_when("T", {"T": text}, {}) is expected


@pytest.mark.parametrize(
    "expression",
    ["undefined_fn()", "MISSING", "has_succeeded('ghost')", "N > 'x'", "1 / 0", "T", "''.__class__"],
)
def test_when_errors_fail_closed(expression):
    values = {"N": 5, "T": "perhaps"}
    with pytest.raises(conditions.ConditionError):
        conditions.evaluate_when(expression, values, RESULTS)
    node = Node("n", "Command", [Dep("ok")], when=expression)
    verdict, reason = conditions.decide(node, RESULTS, values)
    assert verdict == "skip"
    assert reason.startswith("condition could not be evaluated")


# -- decide: the README's Runbooks section ------------------------------------------------------------------
def decide(deps=(), results=None, values=None, **fields):
    node = Node("n", "Command", [Dep(*d.split(":")) if ":" in d else Dep(d) for d in deps], **fields)
    return conditions.decide(node, results or {}, values or {})


def test_skip_true_is_disabled():
    assert decide(["ok"], RESULTS, skip=True) == ("skip", "disabled (skip = true)")


def test_plain_dependency_that_failed_skips_with_upstream_reason():
    assert decide(["ok", "bad"], RESULTS) == ("skip", "upstream bad failed")


def test_plain_dependency_succeeded_or_skipped_runs():
    assert decide(["ok", "skipped"], RESULTS) == ("run", None)


def test_when_takes_over_from_a_failed_plain_dependency():
    assert decide(["bad"], RESULTS, when="has_failed('bad')", when_nodes=("bad",)) == ("run", None)
    verdict, reason = decide(["bad"], RESULTS, when="has_succeeded('bad')")
    assert verdict == "skip"
    assert reason == "condition: has_succeeded('bad') is false"


def test_conditional_entries_are_alternatives():
    assert decide(["bad:success", "ok:success"], RESULTS) == ("run", None)
    assert decide(["ok:failure", "bad:failure"], RESULTS) == ("run", None)
    verdict, reason = decide(["bad:success", "skipped:success"], RESULTS)
    assert verdict == "skip"
    assert reason == "condition not met: needs bad succeeded or skipped succeeded"


@pytest.mark.parametrize(
    "dep, runs",
    [
        ("ok:success", True),
        ("bad:success", False),
        ("ok:failure", False),
        ("bad:failure", True),
        ("ok:done", True),
        ("bad:done", True),
        ("skipped:done", False),
        ("skipped:success", False),
    ],
)
def test_each_suffix(dep, runs):
    assert (decide([dep], RESULTS)[0] == "run") is runs


def test_conditional_entries_and_when_combine_with_and():
    assert decide(["ok:success"], RESULTS, {"ENV": "dev"}, when="ENV == 'prod'")[0] == "skip"
    assert decide(["ok:success"], RESULTS, {"ENV": "prod"}, when="ENV == 'prod'") == ("run", None)
    assert decide(["bad:success"], RESULTS, {"ENV": "prod"}, when="ENV == 'prod'")[0] == "skip"


def test_condition_folded_at_compile_time():
    node = Node("n", "Command", when="ENV == 'prod'", when_value=False, skip_reason="condition: ENV == 'prod' is false (ENV='dev')")
    assert conditions.decide(node, {}, {}) == ("skip", "condition: ENV == 'prod' is false (ENV='dev')")
    node = Node("n", "Command", when="ENV == 'prod'", when_value=True)
    assert conditions.decide(node, {}, {}) == ("run", None)


def test_in_words():
    node = Node("n", "Command", [Dep("deploy", "success"), Dep("rollback", "success")], when="ENVIRONMENT == 'prod'")
    assert conditions.in_words(node) == "runs if deploy succeeded or rollback succeeded; and when ENVIRONMENT == 'prod'"
    assert conditions.in_words(Node("n", "Command", [Dep("a")])) == "after a (skipped if it fails)"
    assert conditions.in_words(Node("n", "Command", [Dep("a"), Dep("b")])) == "after a, b (skipped if any fails)"
    assert conditions.in_words(Node("n", "Command")) == "always runs"
    assert conditions.in_words(Node("n", "Command", [Dep("a", "done")])) == "runs if a ran (succeeded or failed)"
    assert conditions.in_words(Node("n", "Command", skip=True)) == "never runs: disabled (skip = true)"


# -- each template compiled once in a process; templates compiled when a bundle is built --------
def _count_jinja(monkeypatch):
    """Count, per source text, the lexer/parser runs (jinja2's Parser) and code generations."""
    import collections

    import jinja2.environment
    import jinja2.parser

    counts = {"parsed": collections.Counter(), "generated": 0}
    parser_init = jinja2.parser.Parser.__init__
    generate = jinja2.environment.Environment._generate

    def counted_init(self, environment, source, *args, **kwargs):
        counts["parsed"][source] += 1
        return parser_init(self, environment, source, *args, **kwargs)

    def counted_generate(self, *args, **kwargs):
        counts["generated"] += 1
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.parser.Parser, "__init__", counted_init)
    monkeypatch.setattr(jinja2.environment.Environment, "_generate", counted_generate)
    for cached in (templating.parse, templating.analyze, templating._compile, templating._expression, templating._previous_nodes):
        cached.cache_clear()
    return counts


def test_a_run_of_a_runbook_parses_each_distinct_template_once(tmp_path, monkeypatch, capsys):
    """`playbook run FILE` (compiler and runtime in one process, nothing cached on disk): a
    command shared by 100 steps, the title, a `when` and a run-time template are each lexed and
    parsed once, whether the compiler (checks, baking) or the runtime (rendering) asks first,
    and compiled to Python once per quoting."""
    from playbook.compiler.main import dispatch

    steps = "".join(
        '[s%d]\ntype = "Command"\ncommand_name = "echo {{ X }} {{ Y }} >/dev/null"\nwhen = "{{ X != \'z\' }}"\ndepends_on = []\n' % i
        for i in range(100)
    )
    runbook = tmp_path / "many.playbook.toml"
    runbook.write_text(
        '[runbook]\ntitle = "Many {{ X }}"\n[variables]\nX = { default = "a b" }\nY = { default = "$(c)" }\n'
        + steps
        + '[last]\ntype = "Command"\ncommand_name = "echo {{ previous_node(\'s1\').stdout }}"\ndepends_on = ["s1"]\n'
    )
    counts = _count_jinja(monkeypatch)
    code = dispatch(["run", str(runbook), "--auto-approve", "--no-output", "--state-path", str(tmp_path / "state.db")])
    assert code == 0, capsys.readouterr()
    assert dict(counts["parsed"]) == {
        "Many {{ X }}": 1,
        "echo {{ X }} {{ Y }} >/dev/null": 1,
        "echo {{ previous_node('s1').stdout }}": 1,
        "{{ X != 'z' }}": 1,  # the compiler's analysis of the `when`
        "X != 'z'": 1,  # the `when` compiled as an expression
    }
    assert counts["generated"] == 4  # title, the shared command, the run-time command, the `when`


CORPUS = [
    "plain {{ X }} text",
    "{% for a, b in items %}{{ a ~ b | upper }}-{{ loop.index }}{% set c = 1 %}{{ c }}{% endfor %}{{ z }}",
    "{% macro m(p, q=2) %}{{ p }}{{ q }}{% endmacro %}{{ m(1) }}{% if k %}{% set y = 2 %}{% else %}{% set y = 3 %}{% endif %}{{ y }}",
    "{{ (1 + 2) * x }} {{ 'a' | upper }} {{ [1, 2] | join(',') }} {{ {'a': 1}['a'] }} {{ x.y['z'] }} {# a comment #}",
    "{% raw %}{{ not a value }}{% endraw %}{{ X | default('d') }}\n",
    "{{ previous_node('build').stdout | trim }} {{ runbook_dir }}/x",
]
COMMANDS = [
    "printf %s {{ X }} '{{ X }}' \"{{ X }}\" --o={{ X }}. {{ X | raw }}",
    "{% if true %}printf %s {% else %}printf %s{% endif %} {{ X }} > out",
    "{% for i in [1, 2] %}: {{ i }}; printf %s {{ X }} >> out; {% endfor %}",
    "for v in a {{ X }}; do printf %s \"$v\"; done; echo {{ 1 + 2 }}",
    "#!/usr/bin/env python3\nprint({{ X | tojson }})\n",
]


@pytest.mark.parametrize("text, shell_mode", [(t, False) for t in CORPUS + COMMANDS] + [(t, True) for t in COMMANDS])
def test_a_copy_of_the_shared_syntax_tree_compiles_to_the_same_code(text, shell_mode):
    """Templates are compiled from a copy of the tree `parse` shares: the Python code is the same
    as from a fresh parse of the source, for text and for commands with their quoting, and
    compiling does not change the shared tree (code generation folds constants in place)."""
    env = templating.environment(shell_mode)
    if shell_mode:
        analysis = shell.analyse(text, "python3" if text.startswith("#!") else None)
        assert analysis.problems == ()
        fresh = templating._quote_outputs(env.parse(text), analysis.quoting)
        copied = templating._template_ast(env, text, True, analysis.quoting)
    else:
        fresh, copied = text, templating._template_ast(env, text, False, ())
    before = repr(templating.parse(text))
    assert env.compile(copied, raw=True) == env.compile(fresh, raw=True)
    assert repr(templating.parse(text)) == before


EXPRESSIONS = ["X != 'z'", "a and (b or not c)", "n > 2 * 3", "'x' in items | map('upper') | list", "has_succeeded('a')"]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_expressions_compile_to_the_code_of_jinjas_compile_expression(expression):
    """An expression is compiled as `Environment.compile_expression` compiles it (the same
    template `result = (expr)`), so that its precompiled code can be made without Jinja's method."""
    env = templating.environment(False)
    generated = []
    original = env._generate
    env._generate = lambda *args, **kwargs: generated.append(original(*args, **kwargs)) or generated[-1]
    try:
        env.compile_expression(expression, undefined_to_none=False)
    finally:
        del env._generate
    assert env.compile(templating._expression_ast(env, expression), raw=True) == generated[0]


def _precompiled_plan(text):
    plan = compile_source(source.parse(text, "p.toml")).plan
    return plan, templating.precompile(plan)


PRECOMPILED_RUNBOOK = """
[runbook]
title = "Deploy {{ APP }}"
[variables]
APP = { required = true }
N = { required = true, type = "int" }
[build]
type = "Command"
command_name = "printf %s {{ APP }} '{{ APP }}' \\"{{ APP }}\\" && echo {{ N }}"
timeout = "{{ N }}"
[after]
type = "Command"
command_name = "echo {{ previous_node('build').stdout }} {{ APP }}"
when = "{{ N > 1 }}"
depends_on = ["build"]
[note]
type = "Manual"
prompt_after = "Ship {{ APP }}?"
"""
HOSTILE_VALUES = {"APP": "'; touch CANARY; \"$(id)\" `id` \\\n{{ X }}", "N": 7}


def _render_everything(plan, values):
    from playbook.runtime import session

    bound = session.bind(plan, values)
    after = bound.by_id["after"]
    return (
        bound.runbook["title"],
        [node.to_json() for node in bound.nodes],
        templating.render_node(after, dict(values, previous_node=lambda n: {"stdout": "x'y"}), at_start=True).command,
        conditions.evaluate_when(after.when, values, {}),
        templating.outputs_read(after, "command"),
        _error(lambda: conditions.evaluate_when(after.when, dict(values, N="x"), {})),  # fails at render time
        _error(lambda: templating.render(after.command, dict(values, previous_node=None), shell=True, quoting=after.command_quoting)),
    )


def _error(call):
    with pytest.raises((TemplateError, conditions.ConditionError)) as info:
        call()
    return str(info.value)


def test_a_precompiled_store_renders_exactly_as_the_sources_without_parsing(monkeypatch):
    plan, store = _precompiled_plan(PRECOMPILED_RUNBOOK)
    # the title, two commands, the prompt, the `when` and the timeout (expressions); one run-time template
    assert len(store["code"]) == 6 and len(store["reads"]) == 1
    expected = _render_everything(plan, HOSTILE_VALUES)
    data = {templating.PRECOMPILED_SOURCES: json.dumps(store).encode()}
    try:
        templating.use_precompiled(templating.Precompiled(data.__getitem__))
        counts = _count_jinja(monkeypatch)
        assert _render_everything(plan, HOSTILE_VALUES) == expected
        assert sum(counts["parsed"].values()) == 0 and counts["generated"] == 0
    finally:
        templating.use_precompiled(None)


@pytest.mark.parametrize(
    "damage",
    ["no store", "not JSON", "another signature", "another format", "an entry that does not compile", "an entry of another type", "reads of another type"],
)
def test_a_damaged_precompiled_store_falls_back_to_the_sources(monkeypatch, damage):
    plan, store = _precompiled_plan(PRECOMPILED_RUNBOOK)
    expected = _render_everything(plan, HOSTILE_VALUES)
    first = sorted(store["code"])[0]
    if damage == "another signature":
        store["signature"] = "0" * 64
    elif damage == "another format":
        store["format"] = templating.PRECOMPILED_FORMAT + 1
    elif damage == "an entry that does not compile":
        store["code"][first] = "def root(:\n"
    elif damage == "an entry of another type":
        store["code"][first] = 42
    elif damage == "reads of another type":
        store["reads"] = {key: [1] for key in store["reads"]}
    data = {templating.PRECOMPILED_SOURCES: b"{not json" if damage == "not JSON" else json.dumps(store).encode()}
    if damage == "no store":
        data = {}
    try:
        templating.use_precompiled(templating.Precompiled(data.__getitem__))
        counts = _count_jinja(monkeypatch)
        assert _render_everything(plan, HOSTILE_VALUES) == expected
        partly = damage.startswith("an entry") or damage.startswith("reads")
        assert 0 < sum(counts["parsed"].values()) < (4 if partly else 99)
    finally:
        templating.use_precompiled(None)
