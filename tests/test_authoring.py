"""Authoring help: the JSON Schema, the `playbook create` wizard, the pre-commit hook and shell
completion (issue 5, item 5)."""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli

from playbook.compiler import schema as compiler_schema
from playbook.compiler.create import (
    NodeDraft,
    check_text,
    parse_depends_on,
    render_nodes,
    toml_value,
)
from playbook.runtime import variables as var_specs
from playbook.runtime.plan import NODE_TYPES

jsonschema = pytest.importorskip("jsonschema")
pexpect = pytest.importorskip("pexpect")

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "schema" / "runbook.schema.json"
COMPAT = Path(__file__).resolve().parents[1].parent / "shared" / "compat-runbooks"
FIXTURES = REPO / "tests" / "fixtures"
PLAYBOOK = Path(sys.executable).parent / "playbook"

# The compat corpus, by what the schema must say. Files not named here are not schema questions.
COMPAT_SCHEMA_VALID = [
    "conditional_dependencies.playbook.toml",
    "conditional_deployment.playbook.toml",
    "plugin-auto.playbook.toml",
    "plugin.playbook.toml",
    "simple_bash_commands.playbook.toml",
    "variables-deploy.playbook.toml",
    "playbook-slack-plugin-basic_notification.playbook.toml",
    "playbook-slack-plugin-advanced_workflow.playbook.toml",
    # probes whose problems are semantic (unknown function, cycles, missing nodes, variables…)
    "probes/probe-abort.playbook.toml",
    "probes/probe-crit.playbook.toml",
    "probes/probe-cyc.playbook.toml",
    "probes/probe-extra.playbook.toml",  # `retries` was unknown in 1.x, is a field now
    "probes/probe-markup.playbook.toml",
    "probes/probe-misc.playbook.toml",
    "probes/probe-missing.playbook.toml",
    "probes/probe-novars.playbook.toml",
    "probes/probe-plug.playbook.toml",
    "probes/probe-selfdep.playbook.toml",
    "probes/probe-sigint.playbook.toml",
    "probes/probe-skipfail.playbook.toml",
    "probes/probe-undeclared.playbook.toml",
    "probes/probe-whenvars.playbook.toml",
]
# file → (JSON path of the error, words of the message)
COMPAT_SCHEMA_INVALID = {
    "doc-complex.playbook.toml": ("start", "'prompt' was unexpected"),
    "xxx.playbook.toml": ("notify", "'function_name' was unexpected"),
    "probes/probe-badtype.playbook.toml": ("a/type", "'Shell' is not one of"),
    "probes/probe-badcond.playbook.toml": ("b/depends_on/0", "'a:maybe' does not match"),
    "probes/probe-critskip.playbook.toml": ("a/critical", "should not be valid"),
}
# Bad fixtures of the compiler tests that the schema catches too.
FIXTURES_SCHEMA_INVALID = [
    "command-without-command-name",
    "field-of-other-node-type",
    "function-without-plugin-and-function",
    "invalid-dependency-suffix",
    "missing-runbook-table",
    "missing-title",
    "missing-type",
    "negative-retries",
    "node-id-invalid",
    "skip-and-critical",
    "stale-1x-function-name",
    "stale-1x-prompt",
    "timeout-zero",
    "top-level-non-table-key",
    "unknown-field-typo",
    "unknown-runbook-key",
    "unknown-type",
    "variable-invalid-name",
    "variable-min-on-str",
    "variable-unknown-spec-key",
    "variable-unknown-type",
    "wrong-type-command-name",
    "wrong-type-depends-on",
    "wrong-type-retries",
    "wrong-type-skip",
    "wrong-type-title",
]


def _plain(value):
    """TOML dates and times → ISO strings, as the compiler (and Taplo) see them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return value


def load_toml(path):
    return _plain(tomli.loads(Path(path).read_text("utf-8-sig")))


@pytest.fixture(scope="module")
def schema():
    return json.loads(SCHEMA_PATH.read_text("utf-8"))


@pytest.fixture(scope="module")
def validator(schema):
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator, data):
    return sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))


def compiles(path):
    from playbook.compiler.plan import compile_file
    from playbook.compiler.source import CompileError

    try:
        compile_file(str(path))
    except CompileError:
        return False
    return True


def needs_compat():
    if not COMPAT.is_dir():
        pytest.skip("compat corpus not found at %s" % COMPAT)


# -- the JSON Schema ---------------------------------------------------------------------------
def test_schema_is_draft_07_with_help_on_every_property(schema):
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if not sub.get("description"):
                    missing.append("%s/%s" % (where, name))
            for key, sub in node.items():
                if key not in ("if", "anyOf"):  # conditions, not fields
                    walk(sub, "%s/%s" % (where, key))
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, "%s/%d" % (where, i))

    walk(schema, "")
    assert not missing, "properties without a description: %s" % missing


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.playbook.toml")), ids=lambda p: p.name)
def test_every_example_passes_the_schema(validator, path):
    errors = schema_errors(validator, load_toml(path))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("name", COMPAT_SCHEMA_VALID)
def test_valid_compat_runbooks_pass_the_schema(validator, name):
    needs_compat()
    errors = schema_errors(validator, load_toml(COMPAT / name))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("name", sorted(COMPAT_SCHEMA_INVALID))
def test_invalid_compat_runbooks_fail_the_schema(validator, name):
    needs_compat()
    where, words = COMPAT_SCHEMA_INVALID[name]
    errors = schema_errors(validator, load_toml(COMPAT / name))
    found = ["/".join(map(str, e.absolute_path)) + ": " + e.message for e in errors]
    assert any(f.startswith(where + ": ") and words in f for f in found), found


def test_the_compat_lists_cover_the_corpus():
    needs_compat()
    runbooks = {str(p.relative_to(COMPAT)) for p in COMPAT.rglob("*.playbook.toml")}
    assert runbooks == set(COMPAT_SCHEMA_VALID) | set(COMPAT_SCHEMA_INVALID)


@pytest.mark.parametrize("path", sorted((FIXTURES / "good").glob("*.playbook.toml")), ids=lambda p: p.name)
def test_good_fixtures_pass_the_schema(validator, path):
    errors = schema_errors(validator, load_toml(path))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("name", FIXTURES_SCHEMA_INVALID)
def test_structural_mistakes_fail_the_schema(validator, name):
    path = FIXTURES / "bad" / ("%s.playbook.toml" % name)
    if not path.exists():
        pytest.skip("fixture %s is gone" % path.name)
    assert schema_errors(validator, load_toml(path))


def _every_runbook():
    paths = list((REPO / "examples").glob("*.playbook.toml")) + list(FIXTURES.rglob("*.playbook.toml"))
    if COMPAT.is_dir():
        paths += list(COMPAT.rglob("*.playbook.toml"))
    return sorted(paths)


def test_the_schema_never_rejects_what_the_compiler_accepts(validator):
    """The schema may miss semantic errors, but an editor must never flag a valid runbook."""
    checked = 0
    for path in _every_runbook():
        try:
            data = load_toml(path)
        except (tomli.TOMLDecodeError, UnicodeDecodeError):
            continue
        if schema_errors(validator, data):
            assert not compiles(path), "%s compiles but fails the schema" % path
            checked += 1
    assert checked >= len(FIXTURES_SCHEMA_INVALID) // 2


def test_depends_on_forms(validator):
    def node(deps):
        return {"runbook": {"title": "t"}, "a": {"type": "Manual"}, "b": {"type": "Manual", "depends_on": deps}}

    for ok in ([], "a", "^", "*", ["a"], ["a:success"], ["a:failure", "a:done"], [" a : done "], ["*"]):
        assert not schema_errors(validator, node(ok)), ok
    for bad in (["a:maybe"], [""], ["a b"], [1], 5, ["a:"], [":success"], "a:sucess"):
        assert schema_errors(validator, node(bad)), bad


def test_type_specific_fields(validator):
    base = {"runbook": {"title": "t"}}
    ok = [
        {"type": "Manual", "prompt_after": "Go?", "critical": "{{ X }}"},
        {"type": "Command", "command_name": "true", "env": {"A": "1", "B": 2}, "cwd": "/", "shell": "/bin/bash"},
        {"type": "Function", "plugin": "python", "function": "notify", "function_params": {"message": "x"}},
        {"type": "Command", "command_name": "true", "timeout": "{{ N }}", "when": True, "skip": True},
    ]
    bad = [
        {"type": "Manual", "plugin": "python"},
        {"type": "Command", "function": "notify", "command_name": "x"},
        {"type": "Function", "plugin": "python"},
        {"type": "Function", "plugin": "python", "function": "f", "cwd": "/"},
        {"type": "Command", "command_name": "x", "env": {"A": ["list"]}},
        {"type": "Command", "command_name": "x", "timeout": -1},
        {"type": "Command", "command_name": "x", "retry_delay": -1},
        {"type": "Command", "command_name": "x", "retries": True},
        {"name": "no type"},
    ]
    for table in ok:
        assert not schema_errors(validator, dict(base, n=table)), table
    for table in bad:
        assert schema_errors(validator, dict(base, n=table)), table


def test_variables(validator):
    def with_vars(**variables):
        return {"runbook": {"title": "t"}, "variables": variables}

    assert not schema_errors(validator, with_vars(A="x", B=1, C=1.5, D=True, E=["a"]))
    assert not schema_errors(
        validator,
        with_vars(
            A={"default": "x", "choices": ["x", "y"], "pattern": "[a-z]", "description": "d", "secret": True},
            B={"type": "int", "min": 1, "max": 3, "required": True},
            C={"default": 0.5, "min": 0},
            D={"default": {"k": 1}, "type": "dict"},
            E={"pattern": "^a"},
        ),
    )
    for bad in (
        {"deflt": 1},
        {"type": "string"},
        {"choices": []},
        {"type": "str", "min": 1},
        {"default": "x", "max": 1},
        {"type": "int", "pattern": "x"},
        {"default": 1, "pattern": "x"},
        {"secret": "yes"},
    ):
        assert schema_errors(validator, with_vars(X=bad)), bad
    assert schema_errors(validator, with_vars(**{"1X": 1}))


def test_schema_directive_is_only_a_comment_for_playbook(tmp_path):
    source = REPO / "examples" / "checklist.playbook.toml"
    target = tmp_path / "with-directive.playbook.toml"
    target.write_text("#:schema %s\n\n%s" % (SCHEMA_PATH, source.read_text("utf-8")), "utf-8")
    result = _validate(target)
    assert result.returncode == 0, result.stderr


# -- the schema and the compiler agree on every field ----------------------------------------
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}


def _python_kinds(spec):
    kinds = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
    types = {_JSON_TYPES[k] for k in kinds}
    if "number" in types:
        types.discard("integer")
    return types


def _schema_types(prop):
    types = prop.get("type")
    types = set(types) if isinstance(types, list) else {types}
    if "number" in types:
        types.discard("integer")
    return types


def test_node_fields_match_the_compiler(schema):
    node = schema["definitions"]["node"]
    props = node["properties"]
    assert set(props) == compiler_schema.ALL_NODE_FIELDS
    assert node["additionalProperties"] is False
    assert node["required"] == ["type"]
    assert props["type"]["enum"] == list(NODE_TYPES) == list(compiler_schema.TYPE_FIELDS)
    fields = dict(compiler_schema.COMMON_FIELDS)
    for type_fields in compiler_schema.TYPE_FIELDS.values():
        fields.update(type_fields)
    for name, spec in fields.items():
        assert _schema_types(props[name]) == _python_kinds(spec), name
    rules = {r["if"]["properties"]["type"]["const"]: r["then"] for r in node["allOf"] if "type" in r.get("if", {}).get("properties", {})}
    assert set(rules) == set(NODE_TYPES)
    for node_type, then in rules.items():
        assert tuple(then.get("required", ())) == tuple(compiler_schema.REQUIRED[node_type]), node_type
        own = set(compiler_schema.TYPE_FIELDS[node_type])
        others = set().union(*[set(f) for t, f in compiler_schema.TYPE_FIELDS.items() if t != node_type])
        assert set(then.get("properties", {})) == others - own, node_type


def test_runbook_and_variable_fields_match_the_compiler(schema):
    runbook = schema["properties"]["runbook"]
    assert set(runbook["properties"]) == set(compiler_schema.RUNBOOK_FIELDS)
    assert runbook["additionalProperties"] is False
    for name, spec in compiler_schema.RUNBOOK_FIELDS.items():
        assert _schema_types(runbook["properties"][name]) == _python_kinds(spec), name
    variable = schema["definitions"]["variable"]
    assert set(variable["properties"]) == set(var_specs.SPEC_KEYS)
    assert variable["properties"]["type"]["enum"] == list(var_specs.TYPES)
    assert variable["additionalProperties"] is False
    assert schema["properties"]["variables"]["propertyNames"]["pattern"] == var_specs.NAME_RE.pattern
    assert schema["propertyNames"]["pattern"] == compiler_schema.NODE_ID_RE.pattern


# -- pieces of the wizard ----------------------------------------------------------------------
def test_parse_depends_on():
    import click

    known = ["build", "test"]
    assert parse_depends_on("-", known) == []
    assert parse_depends_on("none", known) == []
    assert parse_depends_on("build", known) == ["build"]
    assert parse_depends_on(" build , test:failure,build", known) == ["build", "test:failure"]
    assert parse_depends_on("test : done", known) == ["test:done"]
    assert parse_depends_on("^", known) == ["^"]
    for bad in ("ghost", "build:maybe", "build:"):
        with pytest.raises(click.BadParameter):
            parse_depends_on(bad, known)
    with pytest.raises(click.BadParameter):
        parse_depends_on("*", [])


def test_rendered_values_round_trip_through_toml():
    values = {
        "s": 'quote " backslash \\ tab \t newline \n del \x7f é',
        "i": 3,
        "f": 0.5,
        "b": True,
        "l": ["a", 1, False],
        "d": {"key with space": 1, "k": {"n": [1.5]}},
    }
    for key, value in values.items():
        assert tomli.loads("v = %s" % toml_value(value))["v"] == value, key


def test_rendered_runbook_validates_and_passes_the_schema(validator):
    nodes = [
        NodeDraft("gate", "Manual", {"description": "line one\nline two", "depends_on": [], "prompt_after": "Go?"}),
        NodeDraft("odd.id-1", "Command", {"command_name": "echo 'hi' \"there\"", "depends_on": ["gate"], "critical": True}),
        NodeDraft("note", "Function", {"plugin": "python", "function": "sleep", "function_params": {"seconds": 0.1}, "depends_on": ["odd.id-1:failure"]}),
    ]
    text = render_nodes('Title "quoted"', "ops", "desc", nodes)
    assert check_text(text) == []
    data = _plain(tomli.loads(text))
    assert not schema_errors(validator, data)
    assert data["odd.id-1"]["depends_on"] == ["gate"]
    assert data["gate"]["description"] == "line one\nline two\n"


# -- the wizard on a real terminal --------------------------------------------------------------


def _spawn(tmp_path, *args):
    env = dict(os.environ, HOME=str(tmp_path), TERM="dumb", NO_COLOR="1", USER="tester")
    child = pexpect.spawn(
        str(PLAYBOOK), ["create"] + list(args), cwd=str(tmp_path), env=env, encoding="utf-8", timeout=30
    )
    return child


def _answer(child, pattern, text):
    child.expect(pattern)
    child.sendline(text)


def _validate(*files, cwd=None):
    return subprocess.run(
        [str(PLAYBOOK), "validate"] + [str(f) for f in files], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_wizard_writes_a_runbook_that_validates(tmp_path):
    out = tmp_path / "release.playbook.toml"
    child = _spawn(tmp_path, "--output", str(out))
    _answer(child, r"Title \[My runbook\]", "Release the app")
    _answer(child, r"Author \[tester\]", "")
    _answer(child, "Description", "Ship a new version")
    # a Manual gate with no dependency, critical
    _answer(child, r"Add a node\? \[m\]anual/\[c\]ommand/\[f\]unction/\[d\]one", "m")
    _answer(child, "Node id", "approve")
    _answer(child, "Name", "Go/no-go")
    _answer(child, "Description", "Check the dashboards")
    _answer(child, r"Depends on \[-\]", "")
    _answer(child, r"Critical .*\[y/N\]", "y")
    _answer(child, r"Question to approve the step \[Continue\?\]", "Ready to ship?")
    # a Command: a duplicate id and a bad condition are asked again
    _answer(child, r"Add a node\?", "c")
    _answer(child, "Node id", "approve")
    child.expect("already a node 'approve'")
    _answer(child, "Node id", "deploy")
    _answer(child, "Name", "")
    _answer(child, "Description", "")
    _answer(child, "Command to run", "echo deploying")
    _answer(child, r"Depends on \[approve\]", "approve:maybe")
    child.expect("invalid condition 'maybe'")
    _answer(child, r"Depends on \[approve\]", "ghost")
    child.expect("unknown node 'ghost'")
    _answer(child, r"Depends on \[approve\]", "")
    _answer(child, "Critical", "n")
    # a Command that does not compile (undeclared variable) is shown and asked again
    _answer(child, r"Add a node\?", "c")
    _answer(child, "Node id", "rollback")
    _answer(child, "Name", "")
    _answer(child, "Description", "")
    _answer(child, "Command to run", "echo {{ NOPE }}")
    _answer(child, r"Depends on \[deploy\]", "deploy:failure")
    _answer(child, "Critical", "")
    child.expect("does not validate")
    child.expect("undeclared variable NOPE")
    _answer(child, r"Node id \[rollback\]", "")
    _answer(child, "Name", "")
    _answer(child, "Description", "")
    _answer(child, r"Command to run \[echo \{\{ NOPE \}\}\]", "echo rolling back")
    _answer(child, r"Depends on \[deploy\]", "deploy:failure")
    _answer(child, "Critical", "")
    # a Function with a typed parameter (a wrong value is asked again)
    _answer(child, r"Add a node\?", "f")
    _answer(child, "Node id", "announce")
    _answer(child, "Name", "")
    _answer(child, "Description", "")
    _answer(child, r"Plugin .*\[python\]", "")
    _answer(child, "Function", "sleep")
    _answer(child, r"seconds \(float, required\)", "soon")
    child.expect("not a number")
    _answer(child, r"seconds \(float, required\)", "0.25")
    _answer(child, r"Depends on \[rollback\]", "deploy:success, rollback:success")
    _answer(child, "Critical", "")
    _answer(child, r"Add a node\? .*\[d\]", "")
    child.expect("wrote ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before

    result = _validate(out)
    assert result.returncode == 0, result.stderr
    data = tomli.loads(out.read_text("utf-8"))
    assert data["runbook"]["title"] == "Release the app"
    assert data["runbook"]["author"] == "tester"
    assert list(data) == ["runbook", "approve", "deploy", "rollback", "announce"]
    assert data["approve"] == {
        "type": "Manual",
        "name": "Go/no-go",
        "description": "Check the dashboards",
        "depends_on": [],
        "critical": True,
        "prompt_after": "Ready to ship?",
    }
    assert data["deploy"] == {"type": "Command", "command_name": "echo deploying", "depends_on": ["approve"]}
    assert data["rollback"]["command_name"] == "echo rolling back"
    assert data["rollback"]["depends_on"] == ["deploy:failure"]
    assert data["announce"] == {
        "type": "Function",
        "plugin": "python",
        "function": "sleep",
        "function_params": {"seconds": 0.25},
        "depends_on": ["deploy:success", "rollback:success"],
    }


def test_wizard_without_nodes_writes_the_commented_example(tmp_path):
    child = _spawn(tmp_path, "--title", "Scaffold", "--author", "ops", "--description", "d")
    _answer(child, r"File \[scaffold.playbook.toml\]", "")
    _answer(child, r"Add a node\?", "d")
    child.expect("commented example")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    out = tmp_path / "scaffold.playbook.toml"
    assert "# A Manual node" in out.read_text("utf-8")
    assert _validate(out).returncode == 0


def test_wizard_asks_for_another_file_name_when_the_default_exists(tmp_path):
    (tmp_path / "taken.playbook.toml").write_text("keep me", "utf-8")
    child = _spawn(tmp_path, "--title", "Taken", "--author", "ops", "--description", "d")
    _answer(child, r"File \[taken.playbook.toml\]", "")
    child.expect("exists")
    _answer(child, "File", "other.playbook.toml")
    _answer(child, r"Add a node\?", "c")
    _answer(child, "Node id", "only")
    _answer(child, "Name", "")
    _answer(child, "Description", "")
    _answer(child, "Command to run", "true")
    _answer(child, "Depends on", "")
    _answer(child, "Critical", "")
    _answer(child, r"Add a node\?", "d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (tmp_path / "taken.playbook.toml").read_text("utf-8") == "keep me"
    assert tomli.loads((tmp_path / "other.playbook.toml").read_text("utf-8"))["only"]["depends_on"] == []


@pytest.mark.parametrize("where", ["Title", "Node id", "Command to run", "Depends on", "Critical"])
def test_eof_at_a_prompt_writes_nothing_and_prints_no_traceback(tmp_path, where):
    out = tmp_path / "eof.playbook.toml"
    child = _spawn(tmp_path, "--output", str(out))
    script = [
        ("Title", "t"),
        ("Author", ""),
        ("Description", ""),
        (r"Add a node\?", "c"),
        ("Node id", "a"),
        ("Name", ""),
        ("Description", ""),
        ("Command to run", "true"),
        ("Depends on", ""),
        ("Critical", ""),
    ]
    for pattern, text in script:
        if pattern == where:
            child.expect(pattern)
            child.sendeof()
            break
        _answer(child, pattern, text)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3  # aborted (the README's table), as Ctrl-C elsewhere
    assert "aborted: nothing was written" in child.before
    assert "Traceback" not in child.before
    assert not out.exists()


def test_existing_output_needs_force_before_any_question(tmp_path):
    out = tmp_path / "x.playbook.toml"
    out.write_text("keep", "utf-8")
    child = _spawn(tmp_path, "--output", str(out))
    child.expect("exists; use --force")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert out.read_text("utf-8") == "keep"


def test_without_a_terminal_create_writes_the_scaffold(tmp_path):
    run = lambda *a: subprocess.run(  # noqa: E731
        [str(PLAYBOOK), "create"] + list(a), cwd=str(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    result = run("--title", "No tty", "--author", "ci")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "no-tty.playbook.toml"
    assert tomli.loads(out.read_text("utf-8"))["runbook"]["author"] == "ci"
    assert _validate(out).returncode == 0
    assert run("--title", "No tty").returncode == 2  # exists
    assert run("--title", "No tty", "--force").returncode == 0


# -- pre-commit --------------------------------------------------------------------------------
def test_pre_commit_hook_definition():
    text = (REPO / ".pre-commit-hooks.yaml").read_text("utf-8")
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        hooks = yaml.safe_load(text)
        assert isinstance(hooks, list) and len(hooks) == 1
        hook = hooks[0]
        assert hook["id"] == "playbook-validate"
        assert hook["entry"] == "playbook validate"
        assert hook["language"] == "python"
        assert re.search(hook["files"], "ops/deploy.playbook.toml")
        assert not re.search(hook["files"], "pyproject.toml")
    body = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert body[0] == "- id: playbook-validate"
    keys = dict(line.strip().lstrip("- ").split(": ", 1) for line in body)
    assert keys["entry"] == "playbook validate"
    assert keys["language"] == "python"
    assert keys["files"] == r"\.playbook\.toml$"
    for line in body[1:]:
        assert line.startswith("  ") and not line.startswith("   "), line


def test_pre_commit_style_invocation_with_several_files(tmp_path):
    good = sorted((REPO / "examples").glob("*.playbook.toml"))
    result = _validate(*good)
    assert result.returncode == 0, result.stderr
    for path in good:
        assert re.search(r"%s: valid" % re.escape(path.name), result.stdout), result.stdout
    bad = tmp_path / "broken.playbook.toml"
    bad.write_text('[runbook]\ntitle = "x"\n\n[a]\ntype = "Shell"\n', "utf-8")
    result = _validate(good[0], bad)
    assert result.returncode == 2
    assert "broken.playbook.toml" in result.stderr


# -- shell completion --------------------------------------------------------------------------
@pytest.mark.parametrize("shell,marker", [
    ("bash", "complete -o filenames -F _playbook_completion playbook"),
    ("zsh", "bashcompinit"),
    ("fish", "complete -c playbook -f -n '__fish_use_subcommand' -a"),
])
def test_completion_scripts(shell, marker):
    env = dict(os.environ, _PLAYBOOK_COMPLETE="%s_source" % shell)
    result = subprocess.run([str(PLAYBOOK)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout
    for command in ("validate", "run", "resume", "fleet", "approval", "test"):
        assert command in result.stdout
    checker = shutil.which(shell)
    if checker and shell in ("zsh", "fish"):  # the script parses in that shell
        check = subprocess.run([checker, "-n"], input=result.stdout, capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr


def test_the_documented_completion_lines_are_the_ones_that_work():
    doc = (REPO / "docs" / "editor-support.md").read_text("utf-8")
    assert 'eval "$(_PLAYBOOK_COMPLETE=bash_source playbook)"' in doc
    assert 'eval "$(_PLAYBOOK_COMPLETE=zsh_source playbook)"' in doc
    assert "_PLAYBOOK_COMPLETE=fish_source playbook > ~/.config/fish/completions/playbook.fish" in doc
    assert "#:schema" in doc and '[rule.schema]' in doc and 'include = ["**/*.playbook.toml"]' in doc


def _bash_complete(tmp_path, *words):
    """What real bash completes for `playbook WORDS…` (the last word being typed) with the
    script `_PLAYBOOK_COMPLETE=bash_source playbook` prints."""
    script = subprocess.run([str(PLAYBOOK)], env=dict(os.environ, _PLAYBOOK_COMPLETE="bash_source"), capture_output=True,
                            text=True, timeout=60, check=True).stdout
    (tmp_path / "complete.bash").write_text(script)
    line = 'source complete.bash; COMP_WORDS=(playbook %s); COMP_CWORD=%d; _playbook_completion; printf "%%s\\n" "${COMPREPLY[@]}"' % (
        " ".join("'%s'" % w for w in words), len(words))
    done = subprocess.run(["bash", "-c", line], cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_bash_completion_completes_command_names_options_and_files(tmp_path):
    assert _bash_complete(tmp_path, "r") == {"run", "resume", "report"}
    assert {"--var", "--vars-file", "--state-path", "--auto-approve", "--events-file"} <= _bash_complete(tmp_path, "run", "--")
    assert _bash_complete(tmp_path, "validate", "--che") == {"--check-vars"}
    assert _bash_complete(tmp_path, "approval", "") == {"request", "sign"}
    (tmp_path / "deploy.playbook.toml").write_text("")
    assert "deploy.playbook.toml" in _bash_complete(tmp_path, "validate", "dep")
