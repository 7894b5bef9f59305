"""compiler/cli.py: `playbook validate`, `plan`, `create`, `--version`, `--help`, run as the real
console script (pytest-console-scripts' `script_runner`, or a subprocess where the environment
matters)."""

import importlib.metadata
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from playbook.compiler.main import COMMANDS

HERE = Path(__file__).resolve().parent
GOOD = HERE / "fixtures" / "good"
BAD = HERE / "fixtures" / "bad"
EXAMPLES = HERE.parent / "examples"


@pytest.fixture
def workdir(tmp_path):
    """A copy of the good fixtures in a fresh directory."""
    for path in GOOD.glob("*.playbook.toml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


# -- --version and --help --------------------------------------------------------------------------
def test_version(script_runner):
    result = script_runner.run(["playbook", "--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == "playbook, version %s" % importlib.metadata.version("playbook")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_on_every_command_has_an_example(script_runner, command):
    result = script_runner.run(["playbook", command, "--help"])
    assert result.returncode == 0, result.stderr
    assert "example" in result.stdout.lower(), result.stdout
    assert re.search(r"^\s+playbook %s\b" % re.escape(command), result.stdout, re.M), result.stdout
    assert "Traceback" not in result.stderr


def test_top_level_help_shows_example_command_lines(script_runner):
    result = script_runner.run(["playbook", "--help"])
    assert result.returncode == 0
    assert re.search(r"^\s+.*playbook validate \S+", result.stdout, re.M), result.stdout
    assert re.search(r"^\s+.*playbook plan \S+", result.stdout, re.M), result.stdout


def test_main_commands_exist():
    assert {"validate", "plan", "create"} <= set(COMMANDS)


# -- validate ----------------------------------------------------------------------------------------
def test_validate_ok_prints_a_summary(script_runner, workdir):
    result = script_runner.run(["playbook", "validate", "typed-values.playbook.toml", "--var", "APP=api"], cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "typed-values.playbook.toml: valid — Typed values for api"
    assert "  3 nodes: 2 Command, 1 Function" in lines
    assert "  variables: APP (given), CANARY, LIMITS, RATIO, REPLICAS, ZONES" in lines
    assert "  plugins: python" in lines
    assert result.stderr == ""


def test_validate_reads_variables_from_environment_and_file(playbook_cli, workdir):
    (workdir / "dev.vars.toml").write_text('ENVIRONMENT = "dev"\n')
    by_env = playbook_cli(["validate", "conditions.playbook.toml", "--vars-env", "PB_"], cwd=workdir, env={"PB_ENVIRONMENT": "prod"})
    assert by_env.returncode == 0, by_env.stderr
    assert "  variables: ENVIRONMENT (given)" in by_env.stdout.splitlines()
    both = playbook_cli(
        ["plan", "--json", "conditions.playbook.toml", "--vars-file", "dev.vars.toml", "--var", "ENVIRONMENT=prod", "--vars-env", "PB_"],
        cwd=workdir,
        env={"PB_ENVIRONMENT": "dev"},
    )
    assert json.loads(both.stdout)["values"] == {"ENVIRONMENT": "prod"}  # --var wins
    file_over_env = playbook_cli(
        ["plan", "--json", "conditions.playbook.toml", "--vars-file", "dev.vars.toml", "--vars-env", "PB_"],
        cwd=workdir,
        env={"PB_ENVIRONMENT": "prod"},
    )
    assert json.loads(file_over_env.stdout)["values"] == {"ENVIRONMENT": "dev"}  # file over environment


def test_validate_summary_marks_required_variables(script_runner, workdir):
    result = script_runner.run(["playbook", "validate", "conditions.playbook.toml"], cwd=workdir)
    assert result.returncode == 0
    assert "  variables: ENVIRONMENT (required)" in result.stdout.splitlines()


def test_validate_invalid_exits_2_with_diagnostics(script_runner):
    result = script_runner.run(["playbook", "validate", "unknown-field-typo.playbook.toml"], cwd=BAD)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown-field-typo.playbook.toml:11:1: error: unknown field 'comand_name' in node build" in result.stderr
    assert "  hint: did you mean 'command_name'?" in result.stderr
    assert result.stderr.rstrip().endswith("unknown-field-typo.playbook.toml: 2 errors")


def test_validate_json_shape(script_runner, workdir):
    result = script_runner.run(["playbook", "validate", "--json", "conditions.playbook.toml", "--var", "ENVIRONMENT=dev"], cwd=workdir)
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert set(data) >= {"valid", "summary", "missing_variables", "diagnostics"}
    assert data["valid"] is True
    assert data["missing_variables"] == []
    assert data["diagnostics"] == []
    summary = data["summary"]
    assert summary["file"] == "conditions.playbook.toml"
    assert summary["title"] == "Conditions in words"
    assert summary["nodes"] == 5
    assert summary["node_types"] == {"Command": 3, "Manual": 2}
    assert summary["baked"] == ["ENVIRONMENT"]
    assert summary["required_variables"] == []


def test_validate_json_on_error(script_runner):
    result = script_runner.run(["playbook", "validate", "--json", "cycle-two-nodes.playbook.toml"], cwd=BAD)
    assert result.returncode == 2
    data = json.loads(result.stdout)
    assert data["valid"] is False
    (diag,) = data["diagnostics"]
    assert diag == {
        "severity": "error",
        "message": "dependency cycle: a -> b -> a",
        "file": "cycle-two-nodes.playbook.toml",
        "line": 10,
        "col": 1,
        "hint": "a node cannot (directly or indirectly) wait for itself",
    }


def test_validate_json_includes_warnings(script_runner, compat_dir):
    result = script_runner.run(
        ["playbook", "validate", "--json", "probes/probe-novars.playbook.toml", "--var", "X=hello"], cwd=compat_dir
    )
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert [d["severity"] for d in data["diagnostics"]] == ["warning"]
    assert data["summary"]["baked"] == ["X"]


def test_check_vars_lists_missing_variables(script_runner, workdir):
    result = script_runner.run(["playbook", "validate", "--check-vars", "conditions.playbook.toml"], cwd=workdir)
    assert result.returncode == 2
    assert "error: missing required variables:" in result.stderr
    assert "  ENVIRONMENT — Target environment (one of: dev, prod)" in result.stderr.splitlines()


def test_check_vars_json(script_runner, workdir):
    result = script_runner.run(["playbook", "validate", "--check-vars", "--json", "secrets.playbook.toml"], cwd=workdir)
    assert result.returncode == 2
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert data["missing_variables"] == ["API_TOKEN"]


def test_check_vars_passes_when_everything_is_given(script_runner, workdir):
    result = script_runner.run(
        ["playbook", "validate", "--check-vars", "conditions.playbook.toml", "--var", "ENVIRONMENT=prod"], cwd=workdir
    )
    assert result.returncode == 0, result.stderr


def test_check_vars_counts_a_supplied_secret_as_given(playbook_cli, workdir):
    result = playbook_cli(["validate", "--check-vars", "secrets.playbook.toml", "--var", "API_TOKEN=abc"], cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "missing required variables" not in result.stderr


def test_bad_var_option_is_exit_2_without_traceback(script_runner, workdir):
    result = script_runner.run(["playbook", "validate", "conditions.playbook.toml", "--var", "oops"], cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --var 'oops': expected NAME=VALUE with NAME a valid identifier"


def test_broken_vars_file_is_exit_2_without_traceback(script_runner, workdir):
    (workdir / "broken.vars.toml").write_text("X = [\n")
    result = script_runner.run(
        ["playbook", "validate", "conditions.playbook.toml", "--vars-file", "broken.vars.toml"], cwd=workdir
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --vars-file broken.vars.toml: ")
    assert "Traceback" not in result.stderr


def test_missing_runbook_file(script_runner, tmp_path):
    result = script_runner.run(["playbook", "validate", "nope.playbook.toml"], cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.playbook.toml: error: cannot read runbook" in result.stderr


def test_validate_writes_no_files(tmp_path, playbook_cli):
    """No state database, no cache, nothing in the working directory or the home directory."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(EXAMPLES / "deploy.playbook.toml", src / "deploy.playbook.toml")
    shutil.copy(BAD / "cycle-two-nodes.playbook.toml", src / "cycle.playbook.toml")
    cwd = tmp_path / "cwd"
    home = tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("PLAYBOOK_DB_PATH", None)
    before = sorted(p.name for p in src.iterdir())
    runs = [
        ["validate", src / "deploy.playbook.toml", "--var", "ENVIRONMENT=prod"],
        ["validate", "--json", "--check-vars", src / "deploy.playbook.toml"],
        ["validate", src / "cycle.playbook.toml"],
        ["plan", src / "deploy.playbook.toml", "--var", "ENVIRONMENT=dev"],
        ["plan", "--json", src / "deploy.playbook.toml"],
    ]
    for args in runs:
        result = playbook_cli(args, cwd=cwd, env=dict(env, PLAYBOOK_DB_PATH=str(home / "run.db")))
        assert "Traceback" not in result.stderr
    assert list(cwd.iterdir()) == []
    assert list(home.iterdir()) == []
    assert sorted(p.name for p in src.iterdir()) == before


# -- plan ----------------------------------------------------------------------------------------------
def test_plan_shows_conditions_in_words(script_runner, workdir):
    result = script_runner.run(["playbook", "plan", "conditions.playbook.toml"], cwd=workdir)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.splitlines()[0] == "Plan: Conditions in words — 5 nodes"
    assert "Resolved when run: ENVIRONMENT" in text
    assert "runs if deploy succeeded or rollback succeeded; and when ENVIRONMENT == 'prod'" in text
    assert "runs if deploy failed" in text
    assert "after verify (skipped if it fails)" in text
    assert "$ echo deploy to {{ ENVIRONMENT }}  (template: completed when run)" in text
    assert "asks: Continue?" in text
    # in execution order
    order = [re.match(r"\d+\. (\S+)", line).group(1) for line in text.splitlines() if re.match(r"\d+\. ", line)]
    assert order == ["deploy", "rollback", "verify", "report", "prod_only"]


def test_plan_with_variables_renders_and_folds(script_runner, workdir):
    result = script_runner.run(["playbook", "plan", "conditions.playbook.toml", "--var", "ENVIRONMENT=dev"], cwd=workdir)
    assert result.returncode == 0
    text = result.stdout
    assert "Values: ENVIRONMENT=dev\n" in text
    assert "$ echo deploy to dev\n" in text
    assert "never runs: condition: ENVIRONMENT == 'prod' is false (ENVIRONMENT='dev')" in text


def test_plan_json_is_the_plan_document(script_runner, workdir):
    result = script_runner.run(["playbook", "plan", "--json", "conditions.playbook.toml", "--var", "ENVIRONMENT=prod"], cwd=workdir)
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["plan_version"] == 1
    assert set(data) >= {"plan_version", "source", "runbook", "variables", "values", "nodes"}
    assert data["values"] == {"ENVIRONMENT": "prod"}
    assert [n["id"] for n in data["nodes"]] == ["deploy", "rollback", "verify", "report", "prod_only"]


PLAN_HERE = """\
[runbook]
title = "Deploy {{ APP_NAME }} to {{ ENVIRONMENT }}"

[variables]
ENVIRONMENT = { required = true, choices = ["dev", "prod"] }
APP_NAME = { default = "myapp" }
REPLICAS = { default = 2 }
REGION = { required = false }
API_TOKEN = { secret = true }

[build]
type = "Command"
command_name = "echo build {{ APP_NAME }} x{{ REPLICAS }} in {{ REGION | default('eu') }}"
timeout = 60

[migrate]
type = "Command"
command_name = "echo migrate {{ APP_NAME }} with {{ API_TOKEN }}"
depends_on = ["build"]

[prod_gate]
type = "Manual"
depends_on = ["migrate"]
when = "ENVIRONMENT == 'prod'"

[notify]
type = "Function"
plugin = "python"
function = "notify"
function_params = { message = "{{ APP_NAME }} done" }
depends_on = ["migrate"]
"""


def test_plan_renders_with_given_values_then_defaults(playbook_cli, tmp_path):
    (tmp_path / "here.playbook.toml").write_text(PLAN_HERE)
    secret = "TOPSECRET-5c4b3a"
    result = playbook_cli(["plan", "here.playbook.toml", "--var", "ENVIRONMENT=dev", "--var", "API_TOKEN=" + secret], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "Plan: Deploy myapp to dev — 4 nodes",
        "Values: API_TOKEN=***, ENVIRONMENT=dev, APP_NAME=myapp (default), REPLICAS=2 (default)",
        "Not given (may be absent): REGION",
    ]
    assert "1. build [Command] (timeout 60s)" in lines
    assert "   $ echo build myapp x2 in eu" in lines
    assert "2. migrate [Command] (default timeout 300s)" in lines
    assert '   $ echo migrate myapp with "$PLAYBOOK_SECRET_1"' in lines  # a secret: the reference, never the value
    assert "3. prod_gate [Manual]" in lines
    assert "   never runs: condition: ENVIRONMENT == 'prod' is false (ENVIRONMENT='dev')" in lines
    assert "4. notify [Function]" in lines  # no timeout unless it sets one
    assert "   python.notify(message='myapp done')" in lines
    assert "{{" not in result.stdout
    assert secret not in result.stdout + result.stderr


def test_plan_without_values_shows_what_is_resolved_when_run(playbook_cli, tmp_path):
    (tmp_path / "here.playbook.toml").write_text(PLAN_HERE)
    result = playbook_cli(["plan", "here.playbook.toml"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "Plan: Deploy {{ APP_NAME }} to {{ ENVIRONMENT }} — 4 nodes",  # ENVIRONMENT is needed
        "Values: APP_NAME=myapp (default), REPLICAS=2 (default)",
        "Resolved when run: API_TOKEN, ENVIRONMENT",
        "Not given (may be absent): REGION",
    ]
    assert "   $ echo migrate {{ APP_NAME }} with {{ API_TOKEN }}  (template: completed when run)" in lines
    assert "   $ echo build myapp x2 in eu" in lines


def test_plan_shows_the_configured_default_timeout(playbook_cli, tmp_path):
    (tmp_path / "here.playbook.toml").write_text(PLAN_HERE)
    config = tmp_path / "ops.toml"
    config.write_text("[execution]\ndefault_timeout = 900\n")
    env = {"PLAYBOOK_CONFIG": str(config)}
    result = playbook_cli(["plan", "here.playbook.toml", "--var", "ENVIRONMENT=prod"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "2. migrate [Command] (default timeout 900s from %s:2)" % config in result.stdout.splitlines()
    assert "1. build [Command] (timeout 60s)" in result.stdout.splitlines()
    config.write_text("[execution]\ndefault_timeout = -1\n")
    bad = playbook_cli(["plan", "here.playbook.toml", "--var", "ENVIRONMENT=prod"], cwd=tmp_path, env=env)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: %s:2: execution.default_timeout" % config), bad.stderr
    assert bad.stdout == ""


def test_plan_json_has_effective_values_and_timeouts(playbook_cli, tmp_path):
    (tmp_path / "here.playbook.toml").write_text(PLAN_HERE)
    (tmp_path / "prod.vars.toml").write_text('ENVIRONMENT = "prod"\n')
    secret = "TOPSECRET-0a1b2c"
    args = ["plan", "--json", "here.playbook.toml", "--vars-file", "prod.vars.toml", "--vars-env", "PB_"]
    result = playbook_cli(args, cwd=tmp_path, env={"PB_API_TOKEN": secret, "PLAYBOOK_DEFAULT_TIMEOUT": "600"})
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["plan_version"] == 1
    assert data["runbook"]["title"] == "Deploy myapp to prod"
    assert data["values"] == {"APP_NAME": "myapp", "ENVIRONMENT": "prod", "REPLICAS": 2}
    assert data["effective"] == {
        "values": {
            "API_TOKEN": {"from": "environment PB_API_TOKEN", "value": "***"},
            "APP_NAME": {"from": "default", "value": "myapp"},
            "ENVIRONMENT": {"from": "--vars-file prod.vars.toml", "value": "prod"},
            "REGION": {"from": "may be absent"},
            "REPLICAS": {"from": "default", "value": 2},
        },
        "default_timeout": {"from": "environment variable PLAYBOOK_DEFAULT_TIMEOUT", "seconds": 600},
        "timeouts": {"build": {"from": "step", "seconds": 60}, "migrate": {"from": "default", "seconds": 600}},
    }
    by_id = {node["id"]: node for node in data["nodes"]}
    assert by_id["migrate"]["command"] == 'echo migrate myapp with "$PLAYBOOK_SECRET_1"'
    assert by_id["build"]["command"] == "echo build myapp x2 in eu"
    assert "templates" not in by_id["build"]
    assert result.stdout == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"  # sorted


def test_plan_of_invalid_runbook_exits_2(script_runner):
    result = script_runner.run(["playbook", "plan", "self-dependency.playbook.toml"], cwd=BAD)
    assert result.returncode == 2
    assert "self-dependency.playbook.toml:9:1: error: node a depends on itself" in result.stderr


def test_plan_json_of_invalid_runbook_is_json(script_runner):
    result = script_runner.run(["playbook", "plan", "--json", "self-dependency.playbook.toml"], cwd=BAD)
    assert result.returncode == 2
    assert json.loads(result.stdout)["valid"] is False


@pytest.mark.parametrize("name, extra", [
    ("examples/deploy.playbook.toml", ["--var", "ENVIRONMENT=prod"]),
    ("fixtures/good/typed-values.playbook.toml", ["--var", "CANARY=true"]),
    ("compat/conditional_deployment.playbook.toml", ["--var", "ENVIRONMENT=dev"]),
])
def test_plan_json_is_identical_across_hash_seeds(playbook_cli, name, extra):
    where, _, file = name.partition("/")
    if where == "compat":
        from conftest import compat_path

        path = compat_path(file)  # only this case needs the corpus beside the checkout
    else:
        path = (EXAMPLES.parent / name) if where == "examples" else HERE / name
    outputs = []
    for seed in ("0", "1", "12345"):
        result = playbook_cli(["plan", "--json", path.name] + extra, cwd=path.parent, env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1] == outputs[2], path.name


def test_secret_never_appears_in_plan_or_validate_output(playbook_cli, workdir):
    secret = "TOPSECRET-9f8e7d"
    outputs = []
    for args in (
        ["plan", "--json", "secrets.playbook.toml"],
        ["plan", "secrets.playbook.toml"],
        ["validate", "secrets.playbook.toml"],
        ["validate", "--json", "secrets.playbook.toml"],
    ):
        result = playbook_cli(args + ["--var", "API_TOKEN=" + secret], cwd=workdir)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert not [out for out in outputs if secret in out]
    data = json.loads(playbook_cli(["plan", "--json", "secrets.playbook.toml", "--var", "API_TOKEN=" + secret], cwd=workdir).stdout)
    assert "API_TOKEN" not in data["values"]
    assert data["variables"]["API_TOKEN"]["secret"] is True


# -- create --------------------------------------------------------------------------------------------
def test_create_writes_a_runbook_that_validates(playbook_cli, tmp_path):
    result = playbook_cli(
        ["create", "--title", "Rotate TLS certificates", "--author", "ops", "--description", "Yearly", "-o", "rotate.playbook.toml"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote rotate.playbook.toml" in result.stdout
    written = (tmp_path / "rotate.playbook.toml").read_text()
    assert 'title = "Rotate TLS certificates"' in written
    assert 'author = "ops"' in written
    assert written.count("\n#") >= 5  # well commented
    check = playbook_cli(["validate", "rotate.playbook.toml"], cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "valid — Rotate TLS certificates" in check.stdout


def test_create_default_name_from_title(playbook_cli, tmp_path):
    result = playbook_cli(["create", "--title", "Fail over DB!", "--author", "a", "--description", "d"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fail-over-db.playbook.toml").exists()


def test_create_without_a_terminal_uses_defaults(playbook_cli, tmp_path):
    result = playbook_cli(["create", "-o", "x.playbook.toml"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert playbook_cli(["validate", "x.playbook.toml"], cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    "title",
    ['Quotes "inside" and \\ backslash', "Ünïcödé 🚀 title", "Line one\nline two", "tab\tseparated", "# not a comment"],
)
def test_create_quotes_the_title_safely(playbook_cli, tmp_path, title):
    result = playbook_cli(["create", "--title", title, "--author", "o'neil", "--description", title, "-o", "r.playbook.toml"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check = playbook_cli(["validate", "--json", "r.playbook.toml"], cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["summary"]["title"] == title


def test_create_refuses_to_overwrite_without_force(playbook_cli, tmp_path):
    target = tmp_path / "mine.playbook.toml"
    target.write_text("# precious\n")
    result = playbook_cli(["create", "--title", "T", "--author", "a", "--description", "d", "-o", target.name], cwd=tmp_path)
    assert result.returncode == 2
    assert "mine.playbook.toml exists; use --force to overwrite it" in result.stderr
    assert target.read_text() == "# precious\n"
    forced = playbook_cli(
        ["create", "--title", "T", "--author", "a", "--description", "d", "-o", target.name, "--force"], cwd=tmp_path
    )
    assert forced.returncode == 0, forced.stderr
    assert 'title = "T"' in target.read_text()


# -- examples ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.playbook.toml")), ids=lambda p: p.name)
def test_every_example_validates(playbook_cli, path):
    required = json.loads(playbook_cli(["validate", "--json", path.name], cwd=path.parent).stdout)["summary"]["required_variables"]
    result = playbook_cli(["validate", path.name], cwd=path.parent)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    plan = playbook_cli(["plan", "--json", path.name], cwd=path.parent)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["plan_version"] == 1
    assert isinstance(required, list)


def test_examples_cover_the_issue():
    names = {p.name for p in EXAMPLES.glob("*.playbook.toml")}
    assert len(names) >= 3
    texts = {name: (EXAMPLES / name).read_text() for name in names}
    assert any("[variables]" in t and "when" in t and ":failure" in t for t in texts.values())  # deployment
    assert any('type = "Manual"' in t for t in texts.values())  # approvals / checklist
    assert any('plugin = "python"' in t for t in texts.values())  # plugin demo


def test_no_traceback_with_odd_paths(script_runner, tmp_path):
    work = tmp_path / "work"
    (work / "dir.playbook.toml").mkdir(parents=True)
    result = script_runner.run(["playbook", "validate", "dir.playbook.toml"], cwd=work)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert os.listdir(work) == ["dir.playbook.toml"]


# -- exit codes: every --help lists its own, in the README's words ---------------------------------
def _readme_exit_tables():
    """{"playbook": {code: row}, "fleet": {code: row}} from the README's two exit-code tables."""
    text = (HERE.parent / "README.md").read_text("utf-8")
    tables = {}
    for name, header in (("playbook", "| exit | meaning |"), ("fleet", "| fleet exit | meaning |")):
        rows = {}
        for line in text.split(header, 1)[1].splitlines()[2:]:
            if not line.startswith("|"):
                break
            code, meaning = [cell.strip() for cell in line.strip("|").split("|", 1)]
            rows[int(code)] = meaning
        tables[name] = rows
    return tables


HELPS = sorted(COMMANDS) + ["fleet resume", "fleet report", "approval request", "approval sign"]


@pytest.mark.parametrize("command", HELPS)
def test_every_help_lists_its_exit_codes_in_the_readmes_words(playbook_inprocess, command):
    from playbook.runtime.errors import EXIT_MEANINGS

    result = playbook_inprocess(*command.split(), "--help")
    assert result.returncode == 0, result.text
    listed = result.stdout.split("exit codes:\n", 1)
    assert len(listed) == 2, "%s --help lists no exit codes" % command
    rows = [re.match(r"^\s+(\d+)  (.+)$", line) for line in listed[1].splitlines() if line.strip()]
    assert rows and all(rows), listed[1]
    rollout = command in ("fleet", "fleet resume")  # a rollout's codes sum up its hosts: the fleet table
    table = _readme_exit_tables()["fleet" if rollout else "playbook"]
    for row in rows:
        code, meaning = int(row.group(1)), row.group(2)
        assert code in table, "%s --help lists exit %d, which the README's table lacks" % (command, code)
        assert table[code].startswith(meaning), (command, code, meaning, table[code])
        if not rollout:
            assert meaning == EXIT_MEANINGS[code]


def test_create_exit_codes_are_the_readmes(playbook_inprocess, tmp_path):
    (tmp_path / "taken.playbook.toml").write_text("")
    result = playbook_inprocess("create", "-o", "taken.playbook.toml")  # no terminal here
    assert result.returncode == 2 and "taken.playbook.toml exists" in result.stderr
    assert playbook_inprocess("view-dag").returncode == 2  # neither FILE nor --run
