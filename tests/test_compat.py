"""Every runbook of the Playbook 1.x compatibility corpus (../shared/compat-runbooks, see its
MANIFEST.md) through `playbook validate`: the valid ones pass, the invalid ones fail with a
one-line diagnostic naming the file, the line and the problem — never a traceback."""

import importlib.metadata
import re

import pytest

from playbook.compiler import source

VALID = [
    "conditional_dependencies.playbook.toml",
    "conditional_deployment.playbook.toml",
    "plugin-auto.playbook.toml",
    "plugin.playbook.toml",
    "simple_bash_commands.playbook.toml",
    "variables-deploy.playbook.toml",
    "probes/probe-abort.playbook.toml",
    "probes/probe-crit.playbook.toml",
    "probes/probe-extra.playbook.toml",  # 1.x rejected `retries`; our schema has it
    "probes/probe-markup.playbook.toml",
    "probes/probe-misc.playbook.toml",
    "probes/probe-sigint.playbook.toml",
    "probes/probe-skipfail.playbook.toml",
]

# file -> [(line, message fragment)], every one must be reported; hints are checked separately
INVALID = {
    "doc-complex.playbook.toml": [
        (10, "unknown field 'prompt' in node start"),
        (28, "unknown field 'function_name' in node c"),
    ],
    "xxx.playbook.toml": [(41, "unknown field 'function_name' in node notify")],
    "probes/probe-badcond.playbook.toml": [(15, "invalid condition 'maybe' in 'a:maybe' (node b)")],
    "probes/probe-badtype.playbook.toml": [(9, "unknown node type 'Shell' in node a")],
    "probes/probe-critskip.playbook.toml": [(12, "node a is both skip = true and critical = true")],
    "probes/probe-cyc.playbook.toml": [(11, "dependency cycle: a -> b -> a")],
    "probes/probe-selfdep.playbook.toml": [(11, "node a depends on itself")],
    "probes/probe-missing.playbook.toml": [
        (11, "node a depends on unknown node 'ghost'"),
        (11, "node a depends on unknown node 'ghost2'"),
        (12, "the when of node a"),
    ],
    "probes/probe-novars.playbook.toml": [(10, "undeclared variable X used in a.command_name")],
    "probes/probe-undeclared.playbook.toml": [(13, "undeclared variable X used in a.command_name")],
    "probes/probe-whenvars.playbook.toml": [(43, "unknown function undefined_fn() in bad_when.when")],
    "probes/probe-plug.playbook.toml": [
        # p1 passes the list ITEMS to the text parameter s: 1.x printed the list's repr; here the
        # call would fail when p1 runs, so validate says so first
        (20, "node p1: parameter 's' takes str, but it is given ITEMS (list"),
        (36, "node p3: parameter 'i': 1.5 is not an integer"),
    ],
}
SLACK = [
    "playbook-slack-plugin-basic_notification.playbook.toml",
    "playbook-slack-plugin-advanced_workflow.playbook.toml",
]
HINTS = {
    "doc-complex.playbook.toml": ["did you mean prompt_after?", "did you mean plugin and function?"],
    "xxx.playbook.toml": ["did you mean plugin and function?"],
}


def echo_plugin_installed():
    try:
        found = importlib.metadata.entry_points(group="playbook.plugins")
    except TypeError:  # Python 3.9
        found = importlib.metadata.entry_points().get("playbook.plugins", ())
    return any(ep.name == "echo" for ep in found)


def validate(playbook_cli, compat_dir, name, *extra):
    result = playbook_cli(["validate", name] + list(extra), cwd=compat_dir)
    assert "Traceback" not in result.stderr + result.stdout
    return result


def error_lines(stderr):
    return [line for line in stderr.splitlines() if ": error: " in line]


def test_every_corpus_file_is_covered(compat_dir):
    found = {str(p.relative_to(compat_dir)) for p in compat_dir.rglob("*.playbook.toml")}
    assert found == set(VALID) | set(INVALID) | set(SLACK)


@pytest.mark.parametrize("name", VALID)
def test_valid_corpus_file(playbook_cli, compat_dir, name):
    result = validate(playbook_cli, compat_dir, name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("%s: valid — " % name)
    assert "error" not in result.stderr


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_corpus_file(playbook_cli, compat_dir, name):
    if name.endswith("probe-plug.playbook.toml") and not echo_plugin_installed():
        pytest.skip("the probe plugin `echo` (tests/probe_plugin) is not installed in this environment")
    result = validate(playbook_cli, compat_dir, name)
    assert result.returncode == 2, result.stdout
    errors = error_lines(result.stderr)
    assert errors, result.stderr
    for line in errors:  # one line each: FILE:LINE:COL: error: problem
        assert re.match(r"^%s:\d+:\d+: error: \S" % re.escape(name), line), line
    for line_no, fragment in INVALID[name]:
        prefix = "%s:%d:" % (name, line_no)
        assert any(e.startswith(prefix) and fragment in e for e in errors), "%s %r not in:\n%s" % (
            prefix,
            fragment,
            result.stderr,
        )
    for hint in HINTS.get(name, ()):
        assert "  hint: " + hint in result.stderr


def test_stale_schema_hints_name_the_1x_field(playbook_cli, compat_dir):
    result = validate(playbook_cli, compat_dir, "doc-complex.playbook.toml")
    assert "(prompt is the Playbook 1.x name)" in result.stderr
    assert "(function_name is the Playbook 1.x name)" in result.stderr


def test_stale_schema_gives_no_false_unknown_node_errors(playbook_cli, compat_dir):
    result = validate(playbook_cli, compat_dir, "doc-complex.playbook.toml")
    assert "unknown node" not in result.stderr, result.stderr


def test_probe_missing_reports_every_missing_node(playbook_cli, compat_dir):
    result = validate(playbook_cli, compat_dir, "probes/probe-missing.playbook.toml")
    assert len([e for e in error_lines(result.stderr) if "unknown node" in e]) == 2


def test_undeclared_probe_ignores_jinja_in_comment(playbook_cli, compat_dir):
    result = validate(playbook_cli, compat_dir, "probes/probe-undeclared.playbook.toml")
    assert "NOT_DEFINED" not in result.stderr
    assert len(error_lines(result.stderr)) == 1


def test_undeclared_probe_with_var_validates(playbook_cli, compat_dir):
    result = validate(playbook_cli, compat_dir, "probes/probe-undeclared.playbook.toml", "--var", "X=1")
    assert result.returncode == 0, result.stderr


def test_novars_probe_with_var_validates_with_a_warning(playbook_cli, compat_dir):
    name = "probes/probe-novars.playbook.toml"
    result = validate(playbook_cli, compat_dir, name, "--var", "X=hello")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^%s:10:1: warning: variable X is not declared" % re.escape(name), result.stderr, re.M)
    assert "  variables: X (given)" in result.stdout
    plan = playbook_cli(["plan", name, "--var", "X=hello"], cwd=compat_dir)
    assert "$ echo X is hello" in plan.stdout


def test_whenvars_probe_reports_only_the_unknown_function(playbook_cli, compat_dir):
    result = validate(playbook_cli, compat_dir, "probes/probe-whenvars.playbook.toml")
    assert len(error_lines(result.stderr)) == 1


def test_plug_probe_reports_p1_and_p3(playbook_cli, compat_dir):
    """p3's float for an int, and p1's list for a text parameter: both fail when they run, so
    validate reports both (validate and run agree)."""
    if not echo_plugin_installed():
        pytest.skip("the probe plugin `echo` (tests/probe_plugin) is not installed in this environment")
    result = validate(playbook_cli, compat_dir, "probes/probe-plug.playbook.toml")
    errors = error_lines(result.stderr)
    assert len(errors) == 2
    assert "p1" in errors[0] and "p3" in errors[1]


@pytest.mark.parametrize("name", SLACK)
def test_slack_examples_parse_and_fail_only_for_the_missing_plugin(playbook_cli, compat_dir, name):
    src = source.read(str(compat_dir / name))  # 1.x could not parse these (multi-line inline tables)
    assert src.data["runbook"]["title"]
    result = validate(playbook_cli, compat_dir, name)
    assert result.returncode == 2
    assert "invalid TOML" not in result.stderr
    errors = error_lines(result.stderr)
    assert errors
    assert all("plugin 'slack'" in e for e in errors), result.stderr
    assert "plugin 'slack' is not installed" in errors[0]
    assert "pip install" in errors[0]


def test_variables_deploy_with_production_vars_file(playbook_cli, compat_dir):
    result = validate(
        playbook_cli, compat_dir, "variables-deploy.playbook.toml", "--vars-file", "variables-production.vars.toml"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "variables-deploy.playbook.toml: valid — Deploy myapp"
    plan = playbook_cli(
        ["plan", "variables-deploy.playbook.toml", "--vars-file", "variables-production.vars.toml"], cwd=compat_dir
    )
    assert "--app=myapp --version=1.2.3 --env=prod --timeout=300" in plan.stdout


def test_variables_deploy_with_development_vars_file(playbook_cli, compat_dir):
    result = validate(
        playbook_cli, compat_dir, "variables-deploy.playbook.toml", "--vars-file", "variables-development.vars.toml"
    )
    assert result.returncode == 0, result.stderr
    assert "valid — Deploy myapp-dev" in result.stdout


def test_conditional_deployment_needs_environment(playbook_cli, compat_dir):
    name = "conditional_deployment.playbook.toml"
    result = validate(playbook_cli, compat_dir, name, "--check-vars")
    assert result.returncode == 2
    assert "  ENVIRONMENT — Target deployment environment (one of: dev, staging, prod)" in result.stderr.splitlines()
    assert validate(playbook_cli, compat_dir, name, "--check-vars", "--var", "ENVIRONMENT=prod").returncode == 0


def test_conditional_dependencies_alternatives_in_words(playbook_cli, compat_dir):
    result = playbook_cli(["plan", "conditional_dependencies.playbook.toml"], cwd=compat_dir)
    assert result.returncode == 0
    assert "runs if deploy failed or rollback succeeded" in result.stdout
