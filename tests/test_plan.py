"""compiler/plan.py and runtime/plan.py: name checks at compile time, baking, folding, templates
kept for run time, secrets, and a deterministic, versioned plan document."""

import hashlib
import json
from pathlib import Path

import pytest

from playbook.compiler import source
from playbook.compiler.plan import compile_file, compile_source
from playbook.compiler.source import CompileError
from playbook.runtime import conditions
from playbook.runtime.engine import StepResult
from playbook.runtime.plan import PLAN_VERSION, Plan, PlanError
from playbook.runtime.variables import Sources

HERE = Path(__file__).resolve().parent
GOOD = HERE / "fixtures" / "good"
EXAMPLES = HERE.parent / "examples"


def compile_text(text, var=(), bake=True, name="p.toml", **gather):
    return compile_source(source.parse(text, name), Sources.gather(list(var), **gather), bake=bake)


def compile_fixture(name, var=(), bake=True):
    return compile_file(str(GOOD / name), Sources.gather(list(var)), bake=bake, display=name)


def diagnostics(text, var=()):
    with pytest.raises(CompileError) as info:
        compile_text(text, var)
    return info.value.diagnostics


NOVARS = '[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "echo X is {{ X }}"\n'


# -- names used by templates -----------------------------------------------------------------------
def test_undeclared_variable_is_an_error_with_file_and_line():
    (diag,) = diagnostics(NOVARS)
    assert diag.severity == "error"
    assert diag.format().startswith("p.toml:6:1: error: undeclared variable X used in a.command_name")
    assert "--var X=" in diag.hint


def test_undeclared_variable_lists_where_it_is_used():
    text = (
        '[runbook]\ntitle = "{{ ZONE }}"\n\n[a]\ntype = "Command"\ncommand_name = "echo {{ ZONE }}"\n'
        'description = "in {{ ZONE }}"\n'
    )
    errors = [d for d in diagnostics(text) if d.severity == "error"]
    assert len(errors) == 1
    head, _, places = errors[0].message.partition(" used in ")
    assert head == "undeclared variable ZONE"
    assert sorted(places.split(", ")) == ["a.command_name", "a.description", "runbook.title"]


@pytest.mark.parametrize(
    "how",
    [
        {"var": ["X=hello"]},
        {"environ": {"PB_X": "hello"}, "vars_env": "PB_"},
    ],
)
def test_undeclared_but_supplied_variable_is_a_warning_and_baked(how):
    compiled = compile_text(NOVARS, **how)
    (warning,) = compiled.warnings
    assert warning.severity == "warning"
    assert warning.message == "variable X is not declared in [variables] but was supplied; used in a.command_name"
    assert warning.line == 6
    assert compiled.plan.values == {"X": "hello"}
    assert compiled.plan.nodes[0].command == "echo X is hello"


def test_undeclared_but_supplied_in_a_vars_file(tmp_path):
    vars_file = tmp_path / "x.vars.toml"
    vars_file.write_text('X = "from file"\n')
    compiled = compile_text(NOVARS, vars_file=str(vars_file))
    assert compiled.plan.nodes[0].command == "echo X is 'from file'"


def test_undeclared_but_supplied_variable_without_baking_is_in_the_plan_specs():
    compiled = compile_text(NOVARS, ["X=hello"], bake=False)
    spec = compiled.plan.variables["X"]
    assert spec["declared"] is False
    assert spec["required"] is True
    assert compiled.plan.nodes[0].templates == ("command",)


def test_supplied_but_unused_variable_is_a_warning():
    compiled = compile_text('[runbook]\ntitle = "t"\n', ["EXTRA=1"])
    assert [w.message for w in compiled.warnings] == ["variable EXTRA was supplied but the runbook does not use it"]


def test_unknown_function_in_when():
    text = '[runbook]\ntitle = "t"\n\n[a]\ntype = "Manual"\nwhen = "{{ undefined_fn() }}"\n'
    (diag,) = diagnostics(text)
    assert diag.message == "unknown function undefined_fn() in a.when"
    assert diag.line == 6


def test_unknown_function_in_a_command_template():
    text = '[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "echo {{ shout(1) }}"\n'
    (diag,) = diagnostics(text)
    assert diag.message == "unknown function shout() in a.command_name"


def test_jinja_globals_are_not_variables():
    text = '[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "{% for i in range(3) %}echo {{ i }};{% endfor %}"\n'
    assert compile_text(text).plan.nodes[0].command == "echo 0;echo 1;echo 2;"


def test_jinja_in_toml_comments_is_ignored():
    compiled = compile_fixture("jinja-in-comment.playbook.toml")
    assert compiled.warnings == []
    assert compiled.plan.nodes[0].command == "echo Y is {{ Y }}"


def test_every_template_field_is_checked():
    text = (
        '[runbook]\ntitle = "t"\n\n[a]\ntype = "Function"\nplugin = "python"\nfunction = "notify"\n'
        'function_params = { message = "{{ A }}" }\nplugin_config = { x = "{{ B }}" }\nprompt_before = "{{ C }}"\n'
        'name = "{{ D }}"\n\n[b]\ntype = "Command"\ncommand_name = "true"\nenv = { K = "{{ E }}" }\ncwd = "{{ F }}"\n'
    )
    messages = sorted(d.message for d in diagnostics(text))
    assert [m.split(" used in ")[0] for m in messages] == ["undeclared variable %s" % n for n in "ABCDEF"]


# -- baking, folding, templates kept ---------------------------------------------------------------
def test_baked_variables_are_rendered():
    compiled = compile_fixture("typed-values.playbook.toml", ["REPLICAS=3", "APP=api", "ZONES=[\"x\", \"y\"]"])
    plan = compiled.plan
    assert plan.values == {"APP": "api", "REPLICAS": 3, "ZONES": ["x", "y"]}
    scale = plan.by_id["scale"]
    assert scale.command == "echo scale api to 3 in x,y"
    assert scale.timeout == 90
    assert scale.templates == ()
    assert plan.by_id["nap"].function_params == {"seconds": 3}
    assert plan.title == "Typed values for api"
    # baked variables are no longer to be resolved on the host
    assert "REPLICAS" not in plan.variables and "RATIO" in plan.variables


def test_templates_are_kept_for_run_time_variables():
    plan = compile_fixture("typed-values.playbook.toml", ["APP=api"]).plan
    scale = plan.by_id["scale"]
    assert scale.command == "echo scale {{ APP }} to {{ REPLICAS }} in {{ ZONES | join(',') }}"
    assert set(scale.templates) == {"command", "timeout"}
    assert plan.by_id["nap"].templates == ("function_params",)
    assert plan.runbook["title"] == "Typed values for api"


def test_title_kept_as_template_is_listed():
    plan = compile_fixture("typed-values.playbook.toml").plan
    assert plan.runbook["title"] == "Typed values for {{ APP }}"
    assert plan.runbook["templates"] == ["title"]


def test_condition_folding_marks_node_skipped_with_the_value():
    plan = compile_fixture("conditions.playbook.toml", ["ENVIRONMENT=dev"]).plan
    prod_only = plan.by_id["prod_only"]
    assert prod_only.when_value is False
    assert prod_only.skip_reason == "condition: ENVIRONMENT == 'prod' is false (ENVIRONMENT='dev')"
    assert conditions.decide(prod_only, {"report": StepResult(status="succeeded")}, plan.values) == (
        "skip",
        "condition: ENVIRONMENT == 'prod' is false (ENVIRONMENT='dev')",
    )
    assert conditions.in_words(prod_only).startswith("never runs: condition: ENVIRONMENT == 'prod' is false")


def test_condition_folding_true():
    plan = compile_fixture("conditions.playbook.toml", ["ENVIRONMENT=prod"]).plan
    verify = plan.by_id["verify"]
    assert verify.when_value is True
    assert verify.skip_reason is None
    assert "(true with the given variables)" in conditions.in_words(verify)


def test_condition_folding_with_typed_values():
    plan = compile_fixture("typed-values.playbook.toml", ["CANARY=yes", "RATIO=0.05"]).plan
    canary = plan.by_id["canary"]
    assert canary.when_value is False
    assert canary.skip_reason == "condition: CANARY and RATIO > 0.1 is false (CANARY=true, RATIO=0.05)"


BAKED_PARAM = """[runbook]
title = "t"

[variables]
S = { description = "seconds, as text" }
T = { description = "timeout, as text" }

[nap]
type = "Function"
plugin = "python"
function = "sleep"
function_params = { seconds = "{{ S }}" }

[wait]
type = "Command"
command_name = "true"
timeout = "{{ T }}"
"""


def test_baked_timeout_that_is_not_a_number_is_a_compile_error():
    (err,) = diagnostics(BAKED_PARAM, ["S=2", "T=soon"])
    assert err.line == 17
    assert "'soon' is not a number" in err.message


def test_baked_timeout_and_params_are_rendered():
    plan = compile_text(BAKED_PARAM, ["S=2", "T=5"]).plan
    assert plan.by_id["wait"].timeout == 5
    assert plan.by_id["wait"].templates == ()
    assert plan.by_id["nap"].templates == ()
    assert float(plan.by_id["nap"].function_params["seconds"]) == 2.0


def test_baked_function_param_of_the_wrong_type_is_a_compile_error():
    errors = [d for d in diagnostics(BAKED_PARAM, ["S=abc", "T=5"]) if d.severity == "error"]
    assert any("parameter 'seconds'" in e.message and "'abc' is not a number" in e.message for e in errors)


def test_condition_with_node_functions_is_not_folded():
    text = (
        '[runbook]\ntitle = "t"\n\n[variables]\nENV = "dev"\n\n[a]\ntype = "Manual"\n\n[b]\ntype = "Manual"\n'
        "when = \"ENV == 'prod' and has_succeeded('a')\"\n"
    )
    node = compile_text(text, ["ENV=dev"]).plan.by_id["b"]
    assert node.when_value is None
    assert node.skip_reason is None


def test_condition_without_supplied_values_is_not_folded():
    node = compile_fixture("conditions.playbook.toml").plan.by_id["prod_only"]
    assert node.when_value is None and node.skip_reason is None


def test_invalid_supplied_value_is_an_error_at_the_variable():
    errors = [d for d in diagnostics(GOOD.joinpath("conditions.playbook.toml").read_text(), ["ENVIRONMENT=qa"])]
    (err,) = errors
    assert err.message == "variable ENVIRONMENT (from --var): 'qa' is not one of the allowed values: 'dev', 'prod'"
    assert err.line == 6  # the ENVIRONMENT line of [variables]


# -- secrets ---------------------------------------------------------------------------------------
SECRET = "s3cr3t-Value-42"


def test_secret_is_never_baked():
    compiled = compile_fixture("secrets.playbook.toml", ["API_TOKEN=" + SECRET, "REGION=us-east-2"])
    plan = compiled.plan
    assert "API_TOKEN" not in plan.values
    assert plan.variables["API_TOKEN"]["secret"] is True
    assert SECRET.encode() not in plan.dumps()
    call = plan.by_id["call_api"]
    assert "command" in call.templates
    assert call.when_value is None
    assert any("secret variable API_TOKEN is not baked" in w.message for w in compiled.warnings)
    assert not any(SECRET in w.format() for w in compiled.warnings)


def test_secret_outside_choices_is_masked_at_compile_time():
    text = '[runbook]\ntitle = "t"\n\n[variables]\nT = { secret = true, choices = ["alpha-token"] }\n'
    (err,) = diagnostics(text, ["T=" + SECRET])
    assert SECRET not in err.format()
    assert "alpha-token" not in err.format()


def test_secret_of_the_wrong_type_is_masked_at_compile_time():
    text = '[runbook]\ntitle = "t"\n\n[variables]\nPIN = { secret = true, type = "int" }\n'
    (err,) = diagnostics(text, ["PIN=" + SECRET])
    assert "PIN" in err.message
    assert SECRET not in err.format()


# -- the document ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, var",
    [
        (GOOD / "typed-values.playbook.toml", ["CANARY=on"]),
        (GOOD / "conditions.playbook.toml", ["ENVIRONMENT=dev"]),
        (GOOD / "dependency-sugar.playbook.toml", []),
        (EXAMPLES / "deploy.playbook.toml", ["ENVIRONMENT=staging"]),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else None,
)
def test_plan_is_deterministic(path, var):
    first = compile_file(str(path), Sources.gather(var), bake=True).plan.dumps()
    second = compile_file(str(path), Sources.gather(var), bake=True).plan.dumps()
    assert first == second
    assert json.loads(first)["plan_version"] == PLAN_VERSION


def test_plan_json_round_trip():
    plan = compile_fixture("conditions.playbook.toml", ["ENVIRONMENT=dev"]).plan
    again = Plan.loads(plan.dumps())
    assert again.dumps() == plan.dumps()
    assert [n.id for n in again.nodes] == [n.id for n in plan.nodes]


def test_plan_records_the_source_hash():
    path = GOOD / "conditions.playbook.toml"
    plan = compile_file(str(path)).plan
    assert plan.source == {
        "name": "conditions.playbook.toml",
        "sha256": hashlib.sha256(path.read_text(encoding="utf-8").encode("utf-8")).hexdigest(),
    }


def test_plan_version_is_checked():
    data = json.loads(compile_fixture("conditions.playbook.toml").plan.dumps())
    data["plan_version"] = PLAN_VERSION + 1
    with pytest.raises(PlanError) as info:
        Plan.from_json(data)
    assert "plan version %d is not supported" % (PLAN_VERSION + 1) in str(info.value)
    with pytest.raises(PlanError):
        Plan.loads(b"not json")
    with pytest.raises(PlanError):
        Plan.from_json({"nodes": []})


def test_plan_nodes_are_in_execution_order_with_edges():
    plan = compile_fixture("conditions.playbook.toml").plan
    assert [n.id for n in plan.nodes] == ["deploy", "rollback", "verify", "report", "prod_only"]
    data = json.loads(plan.dumps())
    verify = next(n for n in data["nodes"] if n["id"] == "verify")
    assert verify["deps"] == [["deploy", "success"], ["rollback", "success"]]
    assert verify["when"] == "ENVIRONMENT == 'prod'"
    deploy = next(n for n in data["nodes"] if n["id"] == "deploy")
    assert deploy["handled"] is True


def test_an_empty_when_is_a_diagnostic_not_a_crash():
    """Found by the property test: `when = ""` once escaped as a TemplateError from the check of
    previous_node() fields."""
    with pytest.raises(CompileError) as caught:
        compile_source(source.parse('[runbook]\ntitle = "t"\n\n[a]\ntype = "Manual"\nwhen = ""\n', "w.toml"))
    assert "invalid template in a.when" in str(caught.value.diagnostics[0].format())


def test_nodes_deps_and_step_results_hold_no_instance_dict():
    """A plan holds one Node per step (10,000 in a large runbook): slots, not a __dict__ each,
    with the dataclass behaviour unchanged (copy, equality of Deps, frozen Deps, defaults)."""
    from playbook.runtime.plan import Dep, Node

    node = Node("deploy", "Command", [Dep("build"), Dep("check", "success")], command="make")
    for value in (node, node.deps[0], StepResult()):
        assert not hasattr(value, "__dict__")
    with pytest.raises(AttributeError):
        node.colour = "red"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        node.deps[0].node = "other"  # type: ignore[misc]
    copy = node.copy(command="make install")
    assert (copy.command, node.command, copy.deps, copy.retries, copy.templates) == ("make install", "make", node.deps, 0, ())
    assert Dep("build") == Dep("build") and len({Dep("build"), Dep("build")}) == 1 and repr(Dep("check", "success")) == "Dep('check:success')"
    assert Node.from_json(node.to_json()).to_json() == node.to_json()
    assert StepResult(status="failed").attempt_fields()["exit_code"] is None
