"""compiler/schema.py: every field of the README's Runbooks section, its type and default; unknown keys
rejected with "did you mean". (The one-file-per-failure cases are in tests/fixtures/bad/.)"""

import pytest

from playbook.compiler import schema, source
from playbook.compiler.plan import compile_source
from playbook.compiler.source import CompileError


def check(text, name="s.toml"):
    src = source.parse(text, name)
    runbook = schema.check(src)
    return src, runbook


def compile_text(text, name="s.toml", **kwargs):
    return compile_source(source.parse(text, name), **kwargs)


def errors(text):
    with pytest.raises(CompileError) as info:
        compile_text(text)
    return [d for d in info.value.diagnostics if d.severity == "error"]


EVERY_FIELD = """
[runbook]
title = "Every field"
description = "all of them"
version = "1.2.3"
author = "ops"
created_at = "2025-01-01T00:00:00Z"
shell = "/bin/bash"

[runbook.plugin_config.python]
greeting = "hi"

[variables]
N = 3

[ask]
type = "Manual"
name = "Ask a human"
description = "Check the dashboards"
depends_on = []
when = "N > 1"
skip = false
critical = true
timeout = 30
prompt_before = "Ready?"
prompt_after = "Done?"
retries = 2
retry_delay = 1.5

[run]
type = "Command"
command_name = "echo {{ N }}"
interactive = false
shell = "/bin/sh"
env = { GREETING = "hello", COUNT = 3, FLAG = true }
cwd = "/"
depends_on = ["ask:success"]

[call]
type = "Function"
plugin = "python"
function = "notify"
function_params = { message = "n is {{ N }}" }
plugin_config = { greeting = "hello" }
depends_on = ["run:done"]
"""


def test_every_field_of_the_design_is_accepted():
    compiled = compile_text(EVERY_FIELD)
    plan = compiled.plan
    assert plan.runbook["shell"] == "/bin/bash"
    assert plan.runbook["version"] == "1.2.3"
    assert plan.plugin_config == {"python": {"greeting": "hi"}}
    ask, run, call = (plan.by_id[i] for i in ("ask", "run", "call"))
    assert ask.name == "Ask a human"
    assert ask.critical is True
    assert ask.timeout == 30
    assert (ask.prompt_before, ask.prompt_after) == ("Ready?", "Done?")
    assert (ask.retries, ask.retry_delay) == (2, 1.5)
    assert ask.when == "N > 1"
    assert run.command == "echo {{ N }}"
    assert run.shell == "/bin/sh"
    assert run.env == {"GREETING": "hello", "COUNT": "3", "FLAG": "true"}
    assert run.cwd == "/"
    assert run.interactive is False
    assert (call.plugin, call.function) == ("python", "notify")
    assert call.plugin_config == {"greeting": "hello"}


def test_defaults_of_optional_fields():
    src, runbook = check('[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "true"\n')
    assert not src.errors
    (node,) = runbook.nodes
    assert node.description == ""
    assert node.skip is False
    assert node.critical is False
    assert node.retries == 0
    assert node.retry_delay == 0
    assert node.timeout is None
    assert node.when is None
    assert node.prompt_before is None and node.prompt_after is None
    assert node.interactive is False
    assert runbook.raw_deps == {"a": None}


@pytest.mark.parametrize(
    "key, hint",
    [
        ("comand_name", "did you mean 'command_name'?"),
        ("prompt", "did you mean prompt_after? (prompt is the Playbook 1.x name)"),
        ("function_name", "did you mean plugin and function? (function_name is the Playbook 1.x name)"),
        ("dependson", "did you mean 'depends_on'?"),
        ("retrys", "did you mean 'retries'?"),
    ],
)
def test_unknown_field_did_you_mean(key, hint):
    (err,) = [
        e
        for e in errors('[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "x"\n%s = "v"\n' % key)
        if "unknown field" in e.message
    ]
    assert err.message == "unknown field %r in node a" % key
    assert err.hint == hint
    assert err.line == 7


def test_field_of_another_node_type_says_which():
    (err,) = errors('[runbook]\ntitle = "t"\n\n[a]\ntype = "Manual"\nfunction_params = { x = 1 }\n')
    assert err.message == "function_params is a field of Function nodes, not of Manual node a"


@pytest.mark.parametrize(
    "line, message",
    [
        ('retries = 1.5', "retries must be a whole number, not float"),
        ('retries = true', "retries must be a whole number, not bool"),
        ('interactive = "no"', "interactive must be true or false, not str"),
        ('env = "A=1"', "env must be a table of strings, not str"),
        ('env = { A = [1] }', "env.A must be a string"),
        ('depends_on = [1]', "depends_on entries must be strings"),
        ('when = 3', "when must be a Jinja expression string, not int"),
        ('critical = "maybe"', "'maybe' is not a boolean"),
        ('timeout = -5', "timeout must be a positive number of seconds"),
        ('retry_delay = -1', "retry_delay must be zero or a positive number of seconds"),
        ('timeout = "0"', "timeout must be a positive number of seconds"),
    ],
)
def test_wrong_value_types(line, message):
    errs = errors('[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "x"\n%s\n' % line)
    assert any(message in e.message for e in errs), [e.format() for e in errs]
    assert all(e.line == 7 for e in errs)


def test_boolean_when_and_literal_critical_and_timeout_text_are_typed():
    text = (
        '[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "x"\nwhen = false\n'
        'critical = "yes"\ntimeout = "90"\n'
    )
    (node,) = compile_text(text).plan.nodes
    assert node.critical is True
    assert node.timeout == 90
    assert node.when_value is False


def test_unknown_type_without_close_match_lists_the_types():
    (err,) = errors('[runbook]\ntitle = "t"\n\n[a]\ntype = "Shell"\n')
    assert err.message == "unknown node type 'Shell' in node a"
    assert err.hint == "node types are Manual, Command and Function"


def test_missing_runbook_table_points_at_line_one():
    errs = errors('[a]\ntype = "Manual"\n')
    assert [(e.message, e.line, e.col) for e in errs] == [("missing [runbook] table", 1, 1)]
    assert "[runbook]" in errs[0].hint


def test_runbook_that_is_not_a_table():
    (err,) = errors('runbook = "yes"\n')
    assert err.message == "runbook must be a table"


def test_variables_that_are_not_a_table():
    (err,) = errors('variables = 3\n[runbook]\ntitle = "t"\n')
    assert err.message == "[variables] must be a table"


def test_array_of_tables_is_not_a_node():
    (err,) = errors('[runbook]\ntitle = "t"\n\n[[steps]]\ntype = "Manual"\n')
    assert "top-level key 'steps' is not a node" in err.message


def test_plugin_config_entries_must_be_tables():
    (err,) = errors('[runbook]\ntitle = "t"\nplugin_config = { slack = "token" }\n')
    assert err.message == "plugin_config.slack must be a table"


def test_several_mistakes_in_one_node_are_all_reported():
    errs = errors(
        '[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncomand_name = "x"\nretries = -1\nskip = "no"\n'
    )
    text = "\n".join(e.message for e in errs)
    assert "unknown field 'comand_name'" in text
    assert "Command node a needs command_name" in text
    assert "skip must be true or false" in text


def test_skip_true_without_critical_is_fine_and_disabled():
    text = '[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "x"\nskip = true\n'
    (node,) = compile_text(text).plan.nodes
    assert node.skip is True
    assert node.skip_reason == "disabled (skip = true)"


def test_did_you_mean_helper():
    assert schema.did_you_mean("descripton", schema.COMMON_FIELDS) == "did you mean 'description'?"
    assert schema.did_you_mean("zzzzzz", schema.COMMON_FIELDS) is None


def test_a_node_with_a_schema_error_does_not_cause_unknown_node_errors():
    text = (
        '[runbook]\ntitle = "t"\n\n'
        '[start]\ntype = "Manual"\nprompt = "Proceed?"\ndepends_on = []\n\n'
        '[b]\ntype = "Command"\ncommand_name = "echo b"\ndepends_on = ["start"]\n\n'
        '[c]\ntype = "Manual"\nwhen = "has_succeeded(\'start\')"\n'
    )
    errs = errors(text)
    assert any("unknown field 'prompt' in node start" in e.message for e in errs)
    assert not [e for e in errs if "unknown node" in e.message], [e.format() for e in errs]


def test_unknown_variable_spec_key_has_did_you_mean():
    (err,) = errors('[runbook]\ntitle = "t"\n\n[variables]\nNAME = { defualt = "x" }\n')
    assert err.message == "unknown key 'defualt' in variable NAME"
    assert err.hint and "default" in err.hint


# -- bounds of durations (runtime/durations.py) --------------------------------------------------
@pytest.mark.parametrize(
    "line, message",
    [
        ("timeout = 1e308", "timeout must be at most 604800 seconds (7 days)"),
        ("timeout = 1e23", "timeout must be at most 604800 seconds (7 days)"),
        ("timeout = 9223372036854775807", "timeout must be at most 604800 seconds (7 days)"),
        ("timeout = 604801", "timeout must be at most 604800 seconds (7 days)"),
        ("timeout = inf", "timeout must be at most 604800 seconds (7 days)"),
        ("timeout = nan", "timeout must be a positive number of seconds"),
        ("timeout = -inf", "timeout must be a positive number of seconds"),
        ("timeout = 0", "timeout must be a positive number of seconds"),
        ('timeout = "1e308"', "timeout must be at most 604800 seconds (7 days)"),
        ("retry_delay = 1e308", "retry_delay must be at most 86400 seconds (1 day)"),
        ("retry_delay = 9223372036854775807", "retry_delay must be at most 86400 seconds (1 day)"),
        ("retry_delay = 86400.5", "retry_delay must be at most 86400 seconds (1 day)"),
        ("retry_delay = inf", "retry_delay must be at most 86400 seconds (1 day)"),
        ("retry_delay = nan", "retry_delay must be zero or a positive number of seconds"),
        ("retry_delay = -0.5", "retry_delay must be zero or a positive number of seconds"),
    ],
)
def test_durations_are_finite_and_bounded(line, message):
    errs = errors('[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "x"\n%s\n' % line)
    assert [(e.line, e.col, e.message) for e in errs] == [(7, 1, message)]


def test_durations_at_their_maximum_are_fine():
    text = '[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "x"\ntimeout = 604800\nretry_delay = 86400\n'
    (node,) = compile_text(text).plan.nodes
    assert (node.timeout, node.retry_delay) == (604800, 86400)
    text = text.replace("timeout = 604800", 'timeout = "604800.0"').replace("retry_delay = 86400", "retry_delay = 0")
    (node,) = compile_text(text).plan.nodes
    assert (node.timeout, node.retry_delay) == (604800, 0)
