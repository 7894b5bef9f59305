"""runtime/variables.py: specs, coercion and checks, sources and their priority, secrets."""

import sys
from pathlib import Path

import pytest

from playbook.runtime import variables as V
from playbook.runtime.variables import Sources, VariableError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import finish, pb, spawn, write_runbook


# -- coercion --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, raw, expected",
    [
        ("bool", "true", True),
        ("bool", "TRUE", True),
        ("bool", "false", False),
        ("bool", "1", True),
        ("bool", "0", False),
        ("bool", "yes", True),
        ("bool", "no", False),
        ("bool", "on", True),
        ("bool", "off", False),
        ("bool", " Yes ", True),
        ("bool", True, True),
        ("bool", False, False),
        ("int", "42", 42),
        ("int", "-7", -7),
        ("int", " 12 ", 12),
        ("int", "1_000", 1000),
        ("int", 5, 5),
        ("int", 3.0, 3),
        ("float", "1.5", 1.5),
        ("float", "2", 2.0),
        ("float", "1e3", 1000.0),
        ("float", 3, 3.0),
        ("str", "text", "text"),
        ("str", 5, "5"),
        ("str", "", ""),
        ("list", '["a", 1]', ["a", 1]),
        ("list", "[]", []),
        ("list", ["x"], ["x"]),
        ("dict", '{"k": 2}', {"k": 2}),
        ("dict", {"a": 1}, {"a": 1}),
    ],
)
def test_coerce(kind, raw, expected):
    value = V.coerce({"type": kind}, raw)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "kind, raw, message",
    [
        ("bool", "maybe", "'maybe' is not a boolean (use true/false, yes/no, on/off or 1/0)"),
        ("bool", "", "is not a boolean"),
        ("int", "4.5", "'4.5' is not an integer"),
        ("int", "abc", "'abc' is not an integer"),
        ("int", 4.5, "4.5 is not an integer"),
        ("int", True, "expected an integer, got a boolean"),
        ("int", "", "is not an integer"),
        ("float", "abc", "'abc' is not a number"),
        ("float", "nan", "'nan' is not a finite number"),
        ("float", "inf", "'inf' is not a finite number"),
        ("float", "1e400", "'1e400' is not a finite number"),
        ("float", 10**400, "%d is not a finite number" % 10**400),
        ("float", float("nan"), "nan is not a finite number"),
        ("float", float("-inf"), "-inf is not a finite number"),
        ("int", float("inf"), "inf is not an integer"),
        ("float", True, "expected a number, got a boolean"),
        ("str", True, "expected text, got bool"),
        ("str", [1], "expected text, got list"),
        ("list", "a,b", "'a,b' is not a JSON array"),
        ("list", '{"a": 1}', "expected a list"),
        ("dict", "[1]", "expected a dict"),
        ("dict", "nope", "'nope' is not a JSON object"),
    ],
)
def test_coerce_errors(kind, raw, message):
    with pytest.raises(VariableError) as info:
        V.coerce({"type": kind}, raw)
    assert message in str(info.value)


# -- checks ----------------------------------------------------------------------------------
def spec(raw, name="X"):
    parsed, errors = V.parse_spec(name, raw)
    assert not errors, [str(e) for e in errors]
    return parsed


def test_shorthand_spec_takes_type_from_value():
    assert spec(3) == {"required": False, "secret": False, "declared": True, "type": "int", "default": 3}
    assert spec(True)["type"] == "bool"
    assert spec(["a"])["type"] == "list"
    assert spec({"default": {"a": 1}})["type"] == "dict"  # a table is always a spec
    assert spec("x")["type"] == "str"
    assert spec({"description": "no default"})["type"] == "str"


def test_choices_are_coerced_to_the_type():
    assert spec({"type": "int", "choices": ["1", 2]})["choices"] == [1, 2]


@pytest.mark.parametrize(
    "raw_spec, value, message",
    [
        ({"choices": ["dev", "prod"]}, "qa", "'qa' is not one of the allowed values: 'dev', 'prod'"),
        ({"type": "int", "min": 1, "max": 10}, 0, "0 is below the minimum 1"),
        ({"type": "int", "min": 1, "max": 10}, 11, "11 is above the maximum 10"),
        ({"type": "float", "max": 0.5}, 0.75, "0.75 is above the maximum 0.5"),
        ({"pattern": "[a-z]+"}, "Web", "'Web' does not match the pattern [a-z]+"),
        ({"pattern": "[a-z]+"}, "web1", "does not match"),
    ],
)
def test_check_rejects(raw_spec, value, message):
    with pytest.raises(VariableError) as info:
        V.check("X", spec(raw_spec), value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "raw_spec, value",
    [
        ({"choices": ["dev", "prod"]}, "prod"),
        ({"type": "int", "min": 1, "max": 10}, 1),
        ({"type": "int", "min": 1, "max": 10}, 10),
        ({"pattern": "[a-z]+"}, "web"),
    ],
)
def test_check_accepts(raw_spec, value):
    assert V.check("X", spec(raw_spec), value) == value


@pytest.mark.parametrize(
    "raw_spec, key, message",
    [
        ({"type": "decimal"}, "type", "unknown type 'decimal' for variable X (expected one of str, int, float, bool, list, dict)"),
        ({"default": "qa", "choices": ["dev"]}, "default", "default of variable X: 'qa' is not one of the allowed values"),
        ({"min": 1}, "min", "min applies to int and float variables, but X is str"),
        ({"type": "bool", "max": 1}, "max", "max applies to int and float variables, but X is bool"),
        ({"type": "int", "min": "1"}, "min", "min of variable X must be a number"),
        ({"pattern": "(["}, "pattern", "pattern of variable X is not a valid regular expression"),
        ({"type": "int", "pattern": "1+"}, "pattern", "pattern applies to str variables, but X is int"),
        ({"choices": []}, "choices", "choices of variable X must be a non-empty list"),
        ({"type": "int", "choices": ["a"]}, "choices", "choices of variable X: 'a' is not an integer"),
        ({"required": "yes"}, "required", "required of variable X must be true or false"),
        ({"secret": 1}, "secret", "secret of variable X must be true or false"),
        ({"defualt": 1}, "defualt", "unknown key 'defualt' in variable X"),
        ({"type": "int", "default": 20, "max": 10}, "default", "default of variable X: 20 is above the maximum 10"),
    ],
)
def test_spec_errors_name_the_key(raw_spec, key, message):
    _, errors = V.parse_spec("X", raw_spec)
    assert any(e.key == key and message in str(e) for e in errors), [(e.key, str(e)) for e in errors]


def test_invalid_variable_name():
    _, errors = V.parse_spec("my-var", "x")
    assert [str(e) for e in errors] == ["variable name 'my-var' is not a valid identifier"]


# -- sources and priority ----------------------------------------------------------------------
class FakePrompt:
    """A prompt callable that answers from a dict and records what it was asked."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def __call__(self, name, spec):
        self.asked.append(name)
        return self.answers[name]


def test_priority_var_over_file_over_env_over_prompt_over_default(tmp_path):
    vars_file = tmp_path / "prod.vars.toml"
    vars_file.write_text('A = 2\nB = 2\nC = 2\n')
    environ = {"PB_A": "3", "PB_B": "3", "PB_C": "3", "PB_D": "3", "OTHER_E": "99"}
    sources = Sources.gather(["A=1"], str(vars_file), "PB_", environ=environ)
    # every variable is required (with a default) so that a prompt would be offered
    specs = {name: spec({"type": "int", "required": True, "default": 6}) for name in "ABCDEF"}
    prompt = FakePrompt({"E": "5", "F": ""})
    values = V.resolve(specs, sources, prompt=prompt)
    assert values == {"A": 1, "B": 2, "C": 2, "D": 3, "E": 5, "F": 6}
    assert prompt.asked == ["E", "F"]  # never asked about a supplied variable
    assert sources.lookup("A") == ("1", "--var")
    assert sources.lookup("B")[1] == "--vars-file %s" % vars_file
    assert sources.lookup("D") == ("3", "environment PB_D")
    assert sources.lookup("E") is None


def test_default_is_used_without_a_prompt():
    specs = {"N": spec({"type": "int", "default": 4})}
    assert V.resolve(specs, Sources()) == {"N": 4}


def test_values_are_coerced_and_checked():
    specs = {"N": spec({"type": "int", "max": 5}), "ON": spec({"type": "bool"}), "L": spec({"type": "list"})}
    values = V.resolve(specs, Sources(cli={"N": "3", "ON": "yes", "L": '["a"]'}))
    assert values == {"N": 3, "ON": True, "L": ["a"]}
    with pytest.raises(VariableError) as info:
        V.resolve(specs, Sources(cli={"N": "9", "ON": "perhaps", "L": "[]"}))
    message = str(info.value)
    assert "N (from --var): 9 is above the maximum 5" in message
    assert "ON (from --var): 'perhaps' is not a boolean" in message


def test_missing_variables_are_all_listed_with_description_and_choices():
    specs = {
        "ENVIRONMENT": spec({"required": True, "choices": ["dev", "prod"], "description": "Target environment"}),
        "TICKET": spec({"description": "Change ticket"}),
        "COUNT": spec({"type": "int"}),
        "OPTIONAL": spec({"default": "x"}),
    }
    with pytest.raises(VariableError) as info:
        V.resolve(specs, Sources(), prompt=None)
    message = str(info.value)
    assert message.startswith("missing required variables (give them with --var NAME=VALUE, --vars-file or --vars-env):")
    assert "  ENVIRONMENT — Target environment (one of: dev, prod)" in message.splitlines()
    assert "  TICKET — Change ticket" in message.splitlines()
    assert "  COUNT (int)" in message.splitlines()
    assert "OPTIONAL" not in message


def test_prompt_retries_until_valid_when_it_can_show_errors():
    shown = []

    def prompt(name, spec):
        return answers.pop(0)

    prompt.error = shown.append
    answers = ["lots", "70", "7"]
    specs = {"N": spec({"type": "int", "max": 10})}
    assert V.resolve(specs, Sources(), prompt=prompt) == {"N": 7}
    assert shown == ["N: 'lots' is not an integer", "N: 70 is above the maximum 10"]


def test_fixed_values_cannot_be_changed_at_run_time():
    specs = {"ENV": spec({"choices": ["dev", "prod"]})}
    with pytest.raises(VariableError) as info:
        V.resolve(specs, Sources(cli={"ENV": "prod"}), fixed={"ENV": "dev"})
    assert "ENV was fixed to 'dev' when the runbook was compiled; --var cannot change it" in str(info.value)
    assert V.resolve(specs, Sources(cli={"ENV": "dev"}), fixed={"ENV": "dev"}) == {"ENV": "dev"}


def test_required_false_without_default_may_be_absent():
    specs = {"REGION": spec({"required": False}), "TICKET": spec({"description": "Change ticket"})}
    assert specs["REGION"]["optional"] is True and "optional" not in specs["TICKET"]
    prompt = FakePrompt({"TICKET": "CHG-1"})
    assert V.resolve(specs, Sources(), prompt=prompt) == {"TICKET": "CHG-1"}  # REGION stays undefined
    assert prompt.asked == ["TICKET"]  # never asked about a variable that may be absent
    assert V.resolve(specs, Sources(cli={"REGION": "us", "TICKET": "x"})) == {"REGION": "us", "TICKET": "x"}
    with pytest.raises(VariableError) as info:
        V.resolve(specs, Sources())
    assert "TICKET" in str(info.value) and "REGION" not in str(info.value)
    assert not V.needs_value(specs["REGION"]) and V.needs_value(specs["TICKET"])
    assert "optional" not in spec({"required": False, "default": "eu"})


def test_given_values_are_checked_before_anyone_is_prompted():
    specs = {
        "API_TOKEN": spec({"required": True, "secret": True}),
        "ENV": spec({"choices": ["dev", "prod"]}),
        "N": spec({"type": "int"}),
    }
    prompt = FakePrompt({"API_TOKEN": "hunter2"})
    with pytest.raises(VariableError) as info:
        V.resolve(specs, Sources(cli={"ENV": "qa", "N": "many"}), prompt=prompt)
    assert prompt.asked == []
    assert str(info.value).splitlines() == [
        "ENV (from --var): 'qa' is not one of the allowed values: 'dev', 'prod'",
        "N (from --var): 'many' is not an integer",
    ]
    # without a prompt, the missing ones are listed with the bad ones, at once
    with pytest.raises(VariableError) as info:
        V.resolve(specs, Sources(cli={"ENV": "qa", "N": "1"}))
    assert "ENV (from --var): 'qa'" in str(info.value)
    assert "  API_TOKEN" in str(info.value).splitlines()


def test_origins_say_where_each_value_comes_from():
    specs = {
        "A": spec({"default": "x"}),
        "B": spec({"default": "y"}),
        "C": spec({"required": True}),
        "D": spec({"required": False}),
        "E": spec({"required": True}),
        "F": spec({"default": "z"}),
    }
    sources = Sources(cli={"A": "given"}, env={"B": "env"}, env_prefix="PB_")
    values = {"A": "given", "B": "env", "C": "typed", "F": "z", "G": 1}
    assert V.origins(specs, sources, values, fixed={"G": 1}) == {
        "A": "--var",
        "B": "environment PB_B",
        "C": "prompt",
        "D": "may be absent",
        "E": "needed when run",
        "F": "default",
        "G": "compiled in",
    }
    with_defaults = sources.with_defaults(dict(specs, S=spec({"secret": True, "default": "s"})))
    assert with_defaults.lookup("F") == ("z", "default")
    assert with_defaults.lookup("A") == ("given", "--var")
    assert with_defaults.lookup("S") is None and with_defaults.lookup("C") is None
    assert with_defaults.names() == {"A", "B"}


# -- secrets -----------------------------------------------------------------------------------
def test_show_and_masked_hide_secrets():
    secret = spec({"secret": True})
    plain = spec("x")
    assert V.show(secret, "hunter2") == "***"
    assert V.show(plain, "web") == "'web'"
    assert V.show(spec(1), 3) == "3"
    assert V.masked({"T": secret, "A": plain}, {"T": "hunter2", "A": "web"}) == {"T": "***", "A": "web"}


def test_secret_outside_choices_is_masked_in_the_error():
    specs = {"T": spec({"secret": True, "choices": ["alpha-token", "beta-token"]})}
    with pytest.raises(VariableError) as info:
        V.resolve(specs, Sources(cli={"T": "hunter2-leaked"}))
    assert "hunter2-leaked" not in str(info.value)
    assert "alpha-token" not in str(info.value)


def test_secret_of_the_wrong_type_is_masked_in_the_error():
    specs = {"PIN": spec({"secret": True, "type": "int"})}
    with pytest.raises(VariableError) as info:
        V.resolve(specs, Sources(cli={"PIN": "hunter2-leaked"}))
    assert "PIN" in str(info.value)
    assert "hunter2-leaked" not in str(info.value)


# -- command line, files, environment ----------------------------------------------------------
def test_parse_assignments():
    assert V.parse_assignments(["A=1", "B=", "C=x=y", " D =spaced"]) == {"A": "1", "B": "", "C": "x=y", "D": "spaced"}
    assert V.parse_assignments(["A=1", "A=2"]) == {"A": "2"}
    assert V.parse_assignments(None) == {}


@pytest.mark.parametrize("pair", ["NOEQUALS", "=value", "1ST=x", "A B=c", "my-var=1"])
def test_parse_assignments_errors(pair):
    with pytest.raises(VariableError) as info:
        V.parse_assignments([pair])
    assert str(info.value) == "--var %r: expected NAME=VALUE with NAME a valid identifier" % pair


def test_compat_production_vars_file(compat_dir):
    data = V.load_vars_file(str(compat_dir / "variables-production.vars.toml"))
    assert data["APP_NAME"] == "myapp"
    assert data["ENVIRONMENT"] == "prod"
    assert data["TIMEOUT"] == 300
    assert data["SKIP_TESTS"] is False
    assert data["SERVICES"] == ["api", "web", "worker", "scheduler"]


def test_broken_vars_file_names_the_file(tmp_path):
    path = tmp_path / "broken.vars.toml"
    path.write_text('APP = "unterminated\n')
    with pytest.raises(VariableError) as info:
        V.load_vars_file(str(path))
    assert str(info.value).startswith("--vars-file %s: " % path)


def test_missing_vars_file(tmp_path):
    with pytest.raises(VariableError) as info:
        V.load_vars_file(str(tmp_path / "nope.toml"))
    assert "No such file" in str(info.value)


def test_vars_file_with_a_variables_table(tmp_path):
    path = tmp_path / "wrapped.vars.toml"
    path.write_text('[variables]\nAPP = "web"\n')
    assert V.load_vars_file(str(path)) == {"APP": "web"}


def test_vars_file_with_invalid_name(tmp_path):
    path = tmp_path / "bad.vars.toml"
    path.write_text('"my-var" = 1\n')
    with pytest.raises(VariableError) as info:
        V.load_vars_file(str(path))
    assert "'my-var' is not a valid variable name" in str(info.value)


def test_from_env_uses_only_the_prefix():
    environ = {"PB_APP": "web", "PB_": "empty name", "APP": "other", "PB_bad-name": "x"}
    assert V.from_env("PB_", environ) == {"APP": "web"}
    assert V.from_env(None, environ) == {}


# -- on real processes -------------------------------------------------------------------------
OPTIONAL_REGION = """
    [variables]
    REGION = { required = false, description = "Region; eu unless given" }

    [show]
    type = "Command"
    command_name = "echo region={{ REGION | default('eu') }}{% if REGION is defined %} given{% endif %} >> side.log"
"""


def test_run_with_a_variable_that_may_be_absent(tmp_path):
    rb = write_runbook(tmp_path, OPTIONAL_REGION)
    dbp = tmp_path / "state.db"
    absent = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert absent.returncode == 0, absent.text
    given = pb(tmp_path, "run", rb, "--state-path", dbp, "--var", "REGION=us")
    assert given.returncode == 0, given.text
    assert (tmp_path / "side.log").read_text().splitlines() == ["region=eu", "region=us given"]
    plan = pb(tmp_path, "plan", rb)
    assert plan.returncode == 0, plan.text
    assert "Not given (may be absent): REGION" in plan.out.splitlines()
    assert "$ echo region='eu' >> side.log" in plan.out  # rendered: REGION stays undefined


def test_an_undeclared_name_is_still_an_error(tmp_path):
    rb = write_runbook(tmp_path, OPTIONAL_REGION.replace("REGION is defined", "REGOIN is defined"))
    result = pb(tmp_path, "validate", rb)
    assert result.returncode == 2
    assert "undeclared variable REGOIN used in show.command_name" in result.err


def test_pty_bad_var_is_reported_before_any_prompt(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        API_TOKEN = { required = true, secret = true }
        ENV = { choices = ["dev", "prod"] }

        [a]
        type = "Command"
        command_name = "echo {{ ENV }} {{ API_TOKEN }} >> side.log"
    """)
    child = spawn(tmp_path, "run", rb, "--var", "ENV=qa", "--state-path", tmp_path / "state.db")
    code, out = finish(child)
    assert code == 2, out
    assert "ENV (from --var): 'qa' is not one of the allowed values: 'dev', 'prod'" in out
    assert "Value for" not in out  # nobody was asked for the token
    assert not (tmp_path / "side.log").exists()
