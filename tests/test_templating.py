"""runtime/templating.py and runtime/conditions.py: sandboxed Jinja, shell quoting, typed values,
`when` expressions that fail closed, and the run/skip rules of DESIGN.md section 3."""

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


# -- decide: DESIGN.md section 3 ------------------------------------------------------------------
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
