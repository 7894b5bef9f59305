"""runtime/engine.py in-process, case by case through the README's Runbooks section.

Plans come from TOML text through the real compiler; the state is a real SQLite file read back
with its own connection; Function nodes call the real built-in `python` plugin. Faked: the process
runner (scripted results per command), the retry sleep (recorded) and the operator (a scripted UI
that raises EOFError when it has no answer left). See tests/engine_fakes.py.

Where today's engine differs from the README's Runbooks section the test states the design and is marked
xfail(strict=True) with the difference as its reason.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import threading

import pytest

from engine_fakes import WHO, FakeRunner, Run, ScriptedUI, command, function, manual, result, variables
from playbook.runtime import engine, executors, state

NOT_HANDLED = "%s failed and nothing handles its failure"
ALL_ENDED = "failed: %s (every step reached its end)"
NO_ANSWER = "no answer at the prompt (end of input)"


@pytest.fixture
def runbook(tmp_path):
    """`runbook(body, var=(), header="")` → a Run of `[runbook] title = "engine"` + header, then body."""
    made = []

    def make(body, var=(), header=""):
        run = Run(tmp_path / ("run%d" % len(made)), body, var, header)
        made.append(run)
        return run

    yield make
    for run in made:
        run.close()


def batch():
    """No terminal: CI, cron, `ssh host cmd`."""
    return ScriptedUI(interactive=False)


CHAIN = command("a", depends_on=[]) + command("b", depends_on=["a"]) + command("c")


def test_fake_runner_takes_the_arguments_of_run_command():
    real = inspect.signature(executors.run_command).parameters
    fake = inspect.signature(FakeRunner.__call__).parameters
    assert [(p.name, p.default) for p in real.values()] == [(p.name, p.default) for p in list(fake.values())[1:]]


# -- dependencies ---------------------------------------------------------------------------------
def test_plain_chain_runs_in_order_and_the_run_succeeds(runbook):
    run = runbook(CHAIN)
    ui = batch()
    assert run.go(ui) == ("succeeded", 0, None)
    assert run.runner.commands == ["run a", "run b", "run c"]  # c: no depends_on = the node before
    assert run.statuses() == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert run.rows() == [
        ("a", 1, "succeeded", None, None, None),
        ("b", 1, "succeeded", None, None, None),
        ("c", 1, "succeeded", None, None, None),
    ]
    assert [(kind, data["node"].id) for kind, data in ui.events if kind in ("node_started", "node_finished")] == [
        ("node_started", "a"), ("node_finished", "a"),
        ("node_started", "b"), ("node_finished", "b"),
        ("node_started", "c"), ("node_finished", "c"),
    ]


def test_plain_dependency_is_satisfied_by_a_skipped_node(runbook):
    run = runbook(command("a", depends_on=[], skip=True) + command("b", depends_on=["a"]) + command("c"))
    assert run.go(batch()) == ("succeeded", 0, None)
    assert run.runner.commands == ["run b", "run c"]
    assert run.rows("a") == [("a", 1, "skipped", "disabled (skip = true)", None, None)]
    assert run.statuses() == {"a": "skipped", "b": "succeeded", "c": "succeeded"}


HANDLED_A = (
    command("a", depends_on=[])
    + command("b", depends_on=["a"])
    + command("c", depends_on=["b"])
    + command("h", depends_on=["a:failure"])
)


def test_failed_upstream_skips_plain_dependents_with_the_reason(runbook):
    run = runbook(HANDLED_A)
    run.runner.on("run a", result(2, stderr="boom\n"))
    assert run.go(batch()) == ("failed", 1, ALL_ENDED % "a")
    assert run.statuses() == {"a": "failed", "b": "skipped", "c": "succeeded", "h": "succeeded"}
    assert run.rows() == [
        ("a", 1, "failed", None, "follow-failure", "automatic"),
        ("b", 1, "skipped", "upstream a failed", None, None),
        # README: "X is satisfied when X succeeded or was skipped" -- whatever the skip's reason,
        # so c (after b) runs although b only skipped because a failed.
        ("c", 1, "succeeded", None, None, None),
        ("h", 1, "succeeded", None, None, None),
    ]
    assert run.runner.commands == ["run a", "run c", "run h"]


def test_several_failed_upstreams_are_all_named(runbook):
    run = runbook(
        command("a", depends_on=[])
        + command("b", depends_on=[])
        + command("both", depends_on=["a", "b"])
        + command("h", depends_on=["a:done", "b:done"])
    )
    run.runner.on("run a", 1).on("run b", 1)
    assert run.go(batch()) == ("failed", 1, ALL_ENDED % "a, b")
    assert run.rows("both") == [("both", 1, "skipped", "upstream a, b failed", None, None)]
    assert run.statuses()["h"] == "succeeded"


def test_a_when_takes_over_from_plain_entries_which_then_only_order(runbook):
    run = runbook(
        command("a", depends_on=[])
        + command("cleanup", depends_on=["a"], when="has_failed('a')")
        + command("report", depends_on=["a"], when="true")
    )
    run.runner.on("run a", 1)
    assert run.go(batch()) == ("failed", 1, ALL_ENDED % "a")
    assert run.runner.commands == ["run a", "run cleanup", "run report"]
    assert run.rows("a") == [("a", 1, "failed", None, "follow-failure", "automatic")]


ALTERNATIVES = (
    command("deploy", depends_on=[])
    + command("rollback", depends_on=["deploy:failure"])
    + command("notify", depends_on=["deploy:success", "rollback:success"])
    + command("celebrate", depends_on=["deploy:success"])
    + command("audit", depends_on=["deploy:done"])
)


def test_conditional_entries_are_alternatives_after_a_failure(runbook):
    run = runbook(ALTERNATIVES)
    run.runner.on("run deploy", 1)
    assert run.go(batch()) == ("failed", 1, ALL_ENDED % "deploy")
    assert run.runner.commands == ["run deploy", "run rollback", "run notify", "run audit"]
    assert run.rows("celebrate") == [("celebrate", 1, "skipped", "condition not met: needs deploy succeeded", None, None)]


def test_conditional_entries_are_alternatives_after_a_success(runbook):
    run = runbook(ALTERNATIVES)
    assert run.go(batch()) == ("succeeded", 0, None)
    assert run.runner.commands == ["run deploy", "run notify", "run celebrate", "run audit"]
    assert run.rows("rollback") == [("rollback", 1, "skipped", "condition not met: needs deploy failed", None, None)]


def test_no_alternative_holding_skips_with_every_condition_in_the_reason(runbook):
    run = runbook(
        command("a", depends_on=[])
        + command("b", depends_on=[], skip=True)
        + command("fix", depends_on=["a:failure", "b:done"])
    )
    assert run.go(batch()) == ("succeeded", 0, None)
    assert run.rows("fix") == [
        ("fix", 1, "skipped", "condition not met: needs a failed or b ran (succeeded or failed)", None, None)
    ]


def test_a_failed_plain_entry_beside_a_holding_condition_still_skips(runbook):
    run = runbook(
        command("a", depends_on=[])
        + command("b", depends_on=[])
        + command("c", depends_on=["a", "b:failure"])
        + command("h", depends_on=["a:failure"])
    )
    run.runner.on("run a", 1).on("run b", 1)
    assert run.go(batch()) == ("failed", 1, ALL_ENDED % "a, b")
    assert run.rows("c") == [("c", 1, "skipped", "upstream a failed", None, None)]


# -- when -----------------------------------------------------------------------------------------
def when_runbook(expression):
    return (
        variables(ENV="dev", LIMIT={"type": "int", "default": 3})
        + command("ok", depends_on=[])
        + command("bad", depends_on=[])
        + command("off", depends_on=[], skip=True)
        + command("on_bad", depends_on=[], when="has_failed('bad')")
        + command("target", depends_on=[], when=expression)
    )


def when_run(runbook, expression, var=()):
    run = runbook(when_runbook(expression), var=var)
    run.runner.on("run ok", result(0, stdout="green\n")).on("run bad", result(3, stderr="boom"))
    assert run.go(batch()) == ("failed", 1, ALL_ENDED % "bad")
    return run


@pytest.mark.parametrize(
    "expression",
    [
        "has_succeeded('ok')",
        "has_failed('bad')",
        "has_run('ok') and has_run('bad')",
        "is_skipped('off')",
        "previous_node('ok').stdout.strip() == 'green'",
        "previous_node('ok').status == 'succeeded' and previous_node('ok').exit_code == 0",
        "previous_node('bad').exit_code == 3 and previous_node('bad').stderr == 'boom'",
        "previous_node('off').status == 'skipped' and previous_node('off').exit_code is none",
        "ENV == 'prod' and has_succeeded('ok')",
        "LIMIT > 5 and has_succeeded('ok')",
    ],
)
def test_when_true_runs_the_node(runbook, expression):
    run = when_run(runbook, expression, var=["ENV=prod", "LIMIT=10"])
    assert run.statuses()["target"] == "succeeded"
    assert "run target" in run.runner.commands


@pytest.mark.parametrize(
    "expression",
    [
        "has_succeeded('bad')",
        "has_failed('ok')",
        "has_run('off')",
        "is_skipped('ok')",
        "previous_node('ok').stdout.strip() == 'red'",
        "ENV == 'prod' and has_succeeded('ok')",  # ENV is dev
        "LIMIT > 5 and has_succeeded('ok')",  # LIMIT is 3, an int
    ],
)
def test_when_false_skips_the_node_with_the_expression_as_reason(runbook, expression):
    run = when_run(runbook, expression)
    assert "run target" not in run.runner.commands
    assert run.rows("target") == [("target", 1, "skipped", "condition: %s is false" % expression, None, None)]


@pytest.mark.parametrize(
    "expression, error",
    [
        ("previous_node('off').exit_code > 1", "TypeError: '>' not supported between instances of 'NoneType' and 'int'"),
        ("previous_node('ok').stdout", "the condition gave the text 'green\\n', not true or false"),
        # (an unknown field of previous_node() is refused at validate time; these fail when run)
        ("has_succeeded('ok') and previous_node('ok').stdout.nope == 1", "'str object' has no attribute 'nope'"),
        (
            "previous_node('ok').stdout.__class__",
            "not allowed in a runbook template: access to attribute '__class__' of 'str' object is unsafe.",
        ),
    ],
)
def test_when_that_cannot_be_evaluated_never_runs_the_node(runbook, expression, error):
    run = runbook(when_runbook(expression))
    run.runner.on("run ok", result(0, stdout="green\n")).on("run bad", result(3, stderr="boom"))
    assert run.go(batch()) == ("failed", 1, ALL_ENDED % "bad")
    assert "run target" not in run.runner.commands
    reason = "condition could not be evaluated (%s): %s" % (error, expression)
    assert run.rows("target") == [("target", 1, "skipped", reason, None, None)]


def test_nodes_named_in_a_when_are_ordering_edges(runbook):
    run = runbook(command("early", depends_on=[], when="has_succeeded('late')") + command("late", depends_on=[]))
    assert run.go(batch()) == ("succeeded", 0, None)
    assert run.runner.commands == ["run late", "run early"]


def test_a_when_folded_at_compile_time_records_its_reason(runbook):
    body = variables(ENV="dev") + command("prod_only", depends_on=[], when="ENV == 'prod'") + command("after")
    run = runbook(body, var=["ENV=staging"])
    assert run.go(batch()) == ("succeeded", 0, None)
    assert run.runner.commands == ["run after"]
    reason = "condition: ENV == 'prod' is false (ENV='staging')"
    assert run.rows("prod_only") == [("prod_only", 1, "skipped", reason, None, None)]


def test_values_prompted_through_the_ui_reach_the_when(runbook):
    run = runbook(
        variables(TARGET={"required": True, "choices": ["prod", "test"]})
        + command("go", depends_on=[], command_name="run go {{ TARGET }}", when="TARGET == 'prod'")
    )
    ui = ScriptedUI("prod")
    assert run.go(ui) == ("succeeded", 0, None)
    assert ui.asked == [("variable", "TARGET")]
    assert run.runner.commands == ["run go prod"]


# -- skip = true ----------------------------------------------------------------------------------
def test_skip_true_never_runs_never_asks_and_records_disabled(runbook):
    run = runbook(
        manual("gate", depends_on=[], description="not today", skip=True)
        + command("a", skip=True, prompt_before="Really?")
        + command("b")
    )
    ui = ScriptedUI()  # a terminal without answers: any question would be EOF
    assert run.go(ui) == ("succeeded", 0, None)
    assert ui.asked == []
    assert run.runner.commands == ["run b"]
    assert run.rows() == [
        ("gate", 1, "skipped", "disabled (skip = true)", None, None),
        ("a", 1, "skipped", "disabled (skip = true)", None, None),
        ("b", 1, "succeeded", None, None, None),
    ]
    assert [(data["node"].id, data["reason"]) for data in ui.of("node_skipped")] == [
        ("gate", "disabled (skip = true)"),
        ("a", "disabled (skip = true)"),
    ]


# -- automatic retries and --max-retries ----------------------------------------------------------
def test_retries_wait_retry_delay_between_attempts(runbook):
    run = runbook(command("flaky", depends_on=[], retries=2, retry_delay=7))
    run.runner.on("run flaky", 1, 1, result(0, stdout="finally\n"))
    ui = batch()
    assert run.go(ui) == ("succeeded", 0, None)
    assert run.sleeps == [7, 7]
    assert run.rows(columns="attempt, status, exit_code, stdout") == [
        (1, "failed", 1, ""),
        (2, "failed", 1, ""),
        (3, "succeeded", 0, "finally\n"),
    ]
    assert [(d["attempt"], d["delay"]) for d in ui.of("node_retrying")] == [(1, 7), (2, 7)]


def test_retries_used_up_then_the_failure_is_handled_like_any_other(runbook):
    run = runbook(command("flaky", depends_on=[], retries=1) + command("next"))
    run.runner.on("run flaky", 4, 5)
    assert run.go(batch()) == ("failed", 1, NOT_HANDLED % "flaky")
    assert run.sleeps == []  # no retry_delay: no wait at all
    assert run.rows(columns="node_id, attempt, status, exit_code") == [("flaky", 1, "failed", 4), ("flaky", 2, "failed", 5)]


def test_max_retries_caps_the_operators_retries(runbook):
    run = runbook(CHAIN)
    run.runner.on("run a", 1, 1)
    ui = ScriptedUI("r", "a")
    assert run.go(ui, engine.Options(max_retries=2)) == ("aborted", 3, "aborted by %s at a" % WHO)
    assert ui.menus() == [["r", "s", "a"], ["s", "a"]]
    assert run.runner.commands == ["run a", "run a"]
    assert run.rows("a") == [("a", 1, "failed", None, "retry", WHO), ("a", 2, "failed", None, "abort", WHO)]


def test_max_retries_counts_the_automatic_attempts_too(runbook):
    run = runbook(command("a", depends_on=[], retries=2) + command("b", depends_on=["a"]) + command("c"))
    run.runner.on("run a", 1, 1, 1)
    ui = ScriptedUI("a")
    assert run.go(ui, engine.Options(max_retries=3)) == ("aborted", 3, "aborted by %s at a" % WHO)
    assert ui.menus() == [["s", "a"]]
    assert len(run.rows("a")) == 3


# -- failure: handled or not, with or without a terminal -------------------------------------------
def test_unhandled_failure_without_a_terminal_stops_the_run(runbook):
    run = runbook(CHAIN)
    run.runner.on("run b", result(2, stdout="half\n", stderr="disk full\n"))
    assert run.go(batch()) == ("failed", 1, NOT_HANDLED % "b")
    assert run.runner.commands == ["run a", "run b"]
    assert run.statuses() == {"a": "succeeded", "b": "failed", "c": "pending"}
    assert run.rows(columns="node_id, status, decision, exit_code, stdout, stderr") == [
        ("a", "succeeded", None, 0, "", ""),
        ("b", "failed", None, 2, "half\n", "disk full\n"),
    ]


def test_handled_failure_without_a_terminal_follows_its_path(runbook):
    run = runbook(HANDLED_A)
    run.runner.on("run a", 1)
    ui = batch()
    assert run.go(ui) == ("failed", 1, ALL_ENDED % "a")
    assert run.rows("a") == [("a", 1, "failed", None, "follow-failure", "automatic")]
    assert {"text": "a failed; following its failure path"} in ui.of("message")


HANDLED_OR_NOT = {"unhandled": "", "handled": command("h", depends_on=["a:failure"])}


@pytest.mark.parametrize(
    "handled, critical, offered",
    [
        ("unhandled", False, ["r", "s", "a"]),
        ("handled", False, ["r", "f", "s", "a"]),
        ("unhandled", True, ["r", "a"]),
        ("handled", True, ["r", "f", "a"]),
    ],
)
def test_failure_menu_offers_follow_only_when_handled_and_skip_only_when_not_critical(runbook, handled, critical, offered):
    run = runbook(command("a", depends_on=[], critical=critical) + command("b") + HANDLED_OR_NOT[handled])
    run.runner.on("run a", 1)
    ui = ScriptedUI("a")
    assert run.go(ui) == ("aborted", 3, "aborted by %s at a" % WHO)
    assert ui.asked == [("choose", "a", "a failed. What now?", offered)]
    assert run.rows("a") == [("a", 1, "failed", None, "abort", WHO)]
    assert ("decision", "a", WHO, "a: abort") in run.events()
    assert run.runner.commands == ["run a"]


@pytest.mark.parametrize("env, offered", [("prod", ["r", "a"]), ("test", ["r", "s", "a"])])
def test_critical_may_depend_on_a_variable(runbook, env, offered):
    run = runbook(
        variables(ENV={"required": True}) + command("a", depends_on=[], critical="{{ ENV == 'prod' }}") + command("b")
    )
    run.runner.on("run a", 1)
    ui = ScriptedUI(env, "a")  # ENV is asked for at the start, as on a terminal
    assert run.go(ui) == ("aborted", 3, "aborted by %s at a" % WHO)
    assert ui.menus() == [offered]


def test_operator_retry_runs_the_node_again(runbook):
    run = runbook(CHAIN)
    run.runner.on("run a", 1, 0)
    ui = ScriptedUI("r")
    assert run.go(ui) == ("succeeded", 0, None)
    assert run.runner.commands == ["run a", "run a", "run b", "run c"]
    assert run.rows("a") == [("a", 1, "failed", None, "retry", WHO), ("a", 2, "succeeded", None, None, None)]
    assert ("decision", "a", WHO, "a: retry") in run.events()


def test_operator_follows_the_failure_path(runbook):
    run = runbook(HANDLED_A)
    run.runner.on("run a", 1)
    ui = ScriptedUI("f")
    assert run.go(ui) == ("failed", 1, ALL_ENDED % "a")
    assert run.rows("a") == [("a", 1, "failed", None, "follow-failure", WHO)]
    assert run.rows("b") == [("b", 1, "skipped", "upstream a failed", None, None)]
    assert run.statuses()["h"] == "succeeded"


def test_operator_skip_after_a_failure_lets_plain_dependents_run(runbook):
    run = runbook(HANDLED_A)
    run.runner.on("run a", 1)
    ui = ScriptedUI("s")
    assert run.go(ui) == ("succeeded", 0, None)
    assert run.rows("a", columns="attempt, status, skip_reason, decision, decided_by, exit_code") == [
        (1, "failed", None, "skip", WHO, 1),
        (2, "skipped", "skipped by the operator after it failed", "skip", WHO, None),
    ]
    assert run.runner.commands == ["run a", "run b", "run c"]
    assert run.rows("h") == [("h", 1, "skipped", "condition not met: needs a failed", None, None)]
    assert run.engine.results["a"].reason == "operator"


def test_end_of_input_at_the_failure_menu_aborts(runbook):
    run = runbook(CHAIN)
    run.runner.on("run a", 1)
    ui = ScriptedUI()
    assert run.go(ui) == ("aborted", 3, NO_ANSWER)
    assert run.rows("a") == [("a", 1, "failed", None, "abort", WHO)]
    assert run.runner.commands == ["run a"]


def test_function_nodes_call_the_plugin_and_fail_with_its_message(runbook):
    run = runbook(
        function("hello", "notify", depends_on=[], message="deploy starts")
        + function("boom", "throw", message="quota exceeded")
        + function("cleanup", "notify", depends_on=["boom:failure"], message="cleaning up")
    )
    ui = batch()
    assert run.go(ui) == ("failed", 1, ALL_ENDED % "boom")
    assert run.rows(columns="node_id, status, output, error, decision") == [
        ("hello", "succeeded", '"Notification sent: deploy starts"', None, None),
        ("boom", "failed", None, "quota exceeded", "follow-failure"),
        ("cleanup", "succeeded", '"Notification sent: cleaning up"', None, None),
    ]
    assert run.runner.calls == []


def test_command_fields_reach_the_runner(runbook):
    own = command("own", shell="/bin/sh", timeout=12, env={"STAGE": "blue"}, cwd="/srv", interactive=True)
    run = runbook(command("plain", depends_on=[]) + own, header='shell = "/bin/bash"')
    assert run.go(batch(), engine.Options(default_timeout=99)) == ("succeeded", 0, None)
    assert run.runner.calls == [
        dict(command="run plain", shell="/bin/bash", env=None, cwd=None, timeout=99, interactive=False),
        dict(command="run own", shell="/bin/sh", env={"STAGE": "blue"}, cwd="/srv", timeout=12, interactive=True),
    ]


def test_secrets_are_masked_in_events_and_in_the_store_even_split_across_reads(runbook):
    run = runbook(CHAIN)

    def leaky(emit):
        emit("stdout", "token=s3c")
        emit("stdout", "ret ok\n")
        return result(1, stdout="token=s3cret ok\n", stderr="bad s3cret\n")

    run.runner.on("run a", leaky)
    ui = batch()
    assert run.go(ui, secrets=["s3cret"]) == ("failed", 1, NOT_HANDLED % "a")
    assert "".join(d["text"] for d in ui.of("node_output")) == "token=*** ok\n"
    assert run.rows("a", columns="stdout, stderr") == [("token=*** ok\n", "bad ***\n")]


SECRET_QUESTIONS = (
    variables(TOKEN={"secret": True})
    + manual("gate", depends_on=[], description="Rotate {{ TOKEN }}", prompt_after="Rotated {{ TOKEN }}?")
    + command("a", command_name="deploy --token {{ TOKEN }}", prompt_before="Deploy with {{ TOKEN }}?")
)


def test_secrets_are_masked_in_descriptions_and_commands_shown(runbook):
    run = runbook(SECRET_QUESTIONS, var=["TOKEN=s3cret"])
    ui = ScriptedUI(True, True)
    assert run.go(ui, secrets=["s3cret"]) == ("succeeded", 0, None)
    assert [d["description"] for d in ui.of("manual")] == ["Rotate ***"]
    # the command's text (the argv of sh -c, which ps shows) refers to the secret; the value
    # reaches the command through its environment alone
    assert [d["command"] for d in ui.of("node_started")] == [None, 'deploy --token "$PLAYBOOK_SECRET_1"']
    assert run.runner.commands == ['deploy --token "$PLAYBOOK_SECRET_1"']
    assert run.runner.calls[0]["env"] == {"PLAYBOOK_SECRET_1": "s3cret"}


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "no-terminal"])
def test_secrets_are_masked_in_questions_and_the_audit_trail(runbook, terminal):
    run = runbook(SECRET_QUESTIONS, var=["TOKEN=s3cret"])
    ui = ScriptedUI(True, True, interactive=terminal)
    status, code, reason = run.go(ui, secrets=["s3cret"])
    assert [entry[2] for entry in ui.asked] == (["Rotated ***?", "Deploy with ***?"] if terminal else [])
    assert "s3cret" not in repr(run.events())
    assert "s3cret" not in str(reason)


def test_secrets_are_masked_in_skip_reasons(runbook):
    run = runbook(variables(TOKEN={"secret": True}) + command("a", depends_on=[], when="TOKEN"), var=["TOKEN=s3cret"])
    ui = batch()
    assert run.go(ui, secrets=["s3cret"]) == ("succeeded", 0, None)
    reason = "condition could not be evaluated (the condition gave the text '***', not true or false): TOKEN"
    assert run.rows("a") == [("a", 1, "skipped", reason, None, None)]
    assert [d["reason"] for d in ui.of("node_skipped")] == [reason]


# -- approvals ------------------------------------------------------------------------------------
def gate(**fields):
    """A Manual gate (ENV in its description), `deploy` after it, and more nodes when given."""
    return (
        variables(ENV="staging")
        + manual("gate", depends_on=[], description="Check the {{ ENV }} dashboards", **fields)
        + command("deploy", depends_on=["gate"])
    )


GATE = gate()
GATE_HANDLED = GATE + command("page", depends_on=["gate:failure"])


def test_manual_node_shows_its_description_and_records_the_approval(runbook):
    run = runbook(GATE, var=["ENV=prod"])
    ui = ScriptedUI(True)
    assert run.go(ui) == ("succeeded", 0, None)
    assert [d["description"] for d in ui.of("manual")] == ["Check the prod dashboards"]
    assert ui.asked == [("confirm", "gate", "Continue?")]
    assert run.rows("gate") == [("gate", 1, "succeeded", None, "approved", WHO)]
    assert run.events("approval") == [("approval", "gate", WHO, "gate: approved: Continue?")]
    assert run.runner.commands == ["run deploy"]


def test_manual_node_asks_its_prompt_after(runbook):
    run = runbook(gate(prompt_after="Dashboards green in {{ ENV }}?"))
    ui = ScriptedUI(True)
    assert run.go(ui) == ("succeeded", 0, None)
    assert ui.asked == [("confirm", "gate", "Dashboards green in staging?")]


def test_rejected_manual_node_may_be_asked_again(runbook):
    run = runbook(GATE)
    ui = ScriptedUI(False, "r", True)
    assert run.go(ui) == ("succeeded", 0, None)
    assert [entry[0] for entry in ui.asked] == ["confirm", "choose", "confirm"]
    assert ui.asked[1][2] == "gate was rejected. What now?"
    assert run.rows("gate", columns="attempt, status, decision, decided_by, error") == [
        (1, "failed", "retry", WHO, "rejected by %s" % WHO),
        (2, "succeeded", "approved", WHO, None),
    ]
    assert [e[3] for e in run.events("approval")] == ["gate: rejected: Continue?", "gate: approved: Continue?"]


@pytest.mark.parametrize(
    "body, offered", [(GATE, ["r", "a"]), (GATE_HANDLED, ["r", "f", "a"])], ids=["unhandled", "handled"]
)
def test_a_rejected_manual_node_can_never_be_skipped(runbook, body, offered):
    run = runbook(body)
    ui = ScriptedUI(False, "a")
    assert run.go(ui) == ("aborted", 3, "aborted by %s at gate" % WHO)
    assert ui.menus() == [offered]


def test_a_rejected_critical_manual_node_may_be_asked_again_or_aborted(runbook):
    run = runbook(gate(critical=True))
    ui = ScriptedUI(False, "a")
    assert run.go(ui) == ("aborted", 3, "aborted by %s at gate" % WHO)
    assert ui.menus() == [["r", "a"]]


def test_a_rejected_manual_node_never_lets_its_plain_dependents_run(runbook):
    run = runbook(GATE_HANDLED)
    ui = ScriptedUI(False, "f")
    assert run.go(ui) == ("failed", 1, ALL_ENDED % "gate")
    assert run.rows() == [
        ("gate", 1, "failed", None, "follow-rejection", WHO),
        ("deploy", 1, "skipped", "upstream gate was rejected", None, None),
        ("page", 1, "succeeded", None, None, None),
    ]
    assert run.runner.commands == ["run page"]


def test_rejected_then_aborted_keeps_the_rejection_in_the_audit_trail(runbook):
    run = runbook(GATE)
    ui = ScriptedUI(False, "a")
    assert run.go(ui) == ("aborted", 3, "aborted by %s at gate" % WHO)
    rejected = ("failed", "abort", WHO, "rejected by %s" % WHO)
    assert run.rows("gate", columns="status, decision, decided_by, error") == [rejected]
    assert [e[3] for e in run.events()] == ["gate: rejected: Continue?", "gate: abort"]
    assert run.runner.commands == []


def test_end_of_input_at_a_manual_question_aborts_without_running_anything(runbook):
    run = runbook(GATE)
    assert run.go(ScriptedUI()) == ("aborted", 3, NO_ANSWER)
    assert run.rows("gate", columns="status, decision, error") == [("interrupted", None, "no answer at the prompt")]
    assert run.runner.commands == []
    assert run.statuses() == {"gate": "pending", "deploy": "pending"}


BEFORE = command("a", depends_on=[], prompt_before="Start a?") + command("b")


def test_prompt_before_approved_runs_the_step(runbook):
    run = runbook(BEFORE)
    ui = ScriptedUI(True)
    assert run.go(ui) == ("succeeded", 0, None)
    assert ui.asked == [("confirm", "a", "Start a?")]
    assert run.runner.commands == ["run a", "run b"]
    assert run.events("approval") == [("approval", "a", WHO, "a: approved: Start a?")]


def test_prompt_before_declined_then_skip_never_runs_the_step(runbook):
    run = runbook(BEFORE)
    ui = ScriptedUI(False, "s")
    assert run.go(ui) == ("succeeded", 0, None)
    assert ui.asked[1] == ("choose", "a", "a was not started. What now?", ["s", "a"])
    assert run.runner.commands == ["run b"]
    assert run.rows("a") == [("a", 1, "skipped", "skipped by the operator before it ran", "skip", WHO)]


def test_prompt_before_declined_then_abort(runbook):
    run = runbook(BEFORE)
    ui = ScriptedUI(False, "a")
    assert run.go(ui) == ("aborted", 3, "aborted by %s before a" % WHO)
    assert run.runner.commands == []
    assert run.rows() == []
    assert run.events("approval") == [("approval", "a", WHO, "a: rejected: Start a?")]


def test_prompt_before_declined_on_a_critical_step_offers_only_abort(runbook):
    run = runbook(command("a", depends_on=[], prompt_before="Start a?", critical=True) + command("b"))
    ui = ScriptedUI(False, "a")
    assert run.go(ui) == ("aborted", 3, "aborted by %s before a" % WHO)
    assert ui.menus() == [["a"]]


@pytest.mark.parametrize("answers", [(), (False,)], ids=["at-the-question", "at-the-menu"])
def test_end_of_input_around_prompt_before_aborts(runbook, answers):
    run = runbook(BEFORE)
    assert run.go(ScriptedUI(*answers)) == ("aborted", 3, NO_ANSWER)
    assert run.runner.commands == []


AFTER = command("a", depends_on=[], prompt_after="Output looks right?") + command("b")


def test_prompt_after_approved_records_the_decision_on_the_attempt(runbook):
    run = runbook(AFTER)
    ui = ScriptedUI(True)
    assert run.go(ui) == ("succeeded", 0, None)
    assert run.rows("a") == [("a", 1, "succeeded", None, "approved", WHO)]
    assert run.runner.commands == ["run a", "run b"]


def test_prompt_after_rejected_then_retried_runs_the_step_again(runbook):
    run = runbook(AFTER)
    ui = ScriptedUI(False, "r", True)
    assert run.go(ui) == ("succeeded", 0, None)
    assert ui.asked[1] == ("choose", "a", "a was rejected. What now?", ["r", "a"])
    assert run.runner.commands == ["run a", "run a", "run b"]
    assert run.rows("a", columns="attempt, status, decision, decided_by, error") == [
        (1, "failed", "retry", WHO, "rejected by %s" % WHO),
        (2, "succeeded", "approved", WHO, None),
    ]


EVERY_QUESTION = (
    manual("gate", depends_on=[], description="Look")
    + command("before", prompt_before="Start?")
    + command("after", prompt_after="Fine?")
)


def test_auto_approve_without_a_terminal_approves_every_question_and_says_so(runbook):
    run = runbook(EVERY_QUESTION)
    assert run.go(batch(), engine.Options(auto_approve=True)) == ("succeeded", 0, None)
    assert run.runner.commands == ["run before", "run after"]
    # recorded as given by the operator who gave the flag (a person, who counts once), how: auto-approve
    assert run.rows() == [
        ("gate", 1, "succeeded", None, "auto-approved", WHO),
        ("before", 1, "succeeded", None, None, None),
        ("after", 1, "succeeded", None, "auto-approved", WHO),
    ]
    assert run.events("approval") == [
        ("approval", "gate", WHO, "gate: auto-approved: Continue?"),
        ("approval", "before", WHO, "before: auto-approved: Start?"),
        ("approval", "after", WHO, "after: auto-approved: Fine?"),
    ]
    assert {(row["who"], row["how"]) for row in run.store.approvals(run.run_id)} == {(WHO, "auto-approve")}


def test_auto_approve_does_not_answer_for_an_operator_at_a_terminal(runbook):
    run = runbook(EVERY_QUESTION)
    ui = ScriptedUI(True, True, True)
    assert run.go(ui, engine.Options(auto_approve=True)) == ("succeeded", 0, None)
    assert [entry[:3] for entry in ui.asked] == [
        ("confirm", "gate", "Continue?"),
        ("confirm", "before", "Start?"),
        ("confirm", "after", "Fine?"),
    ]
    assert [row[4:] for row in run.rows()] == [("approved", WHO), (None, None), ("approved", WHO)]


QUESTION_FIRST = {
    "manual": GATE,
    "prompt_before": command("a", depends_on=[], prompt_before="Start a?") + command("deploy"),
    "prompt_after": command("a", depends_on=[], prompt_after="Output looks right?") + command("deploy"),
}


@pytest.mark.parametrize("kind", sorted(QUESTION_FIRST))
def test_an_approval_without_a_terminal_stops_before_anything_depends_on_it(runbook, kind):
    run = runbook(QUESTION_FIRST[kind])
    status, code, reason = run.go(batch())
    assert code == 3
    assert "--auto-approve" in reason
    assert "run deploy" not in run.runner.commands
    assert run.statuses()["deploy"] == "pending"
    asking = "gate" if kind == "manual" else "a"
    assert [event[:3] for event in run.events("approval-needed")] == [("approval-needed", asking, None)]


@pytest.mark.parametrize("kind", sorted(QUESTION_FIRST))
def test_an_approval_without_a_terminal_leaves_the_run_waiting(runbook, kind):
    run = runbook(QUESTION_FIRST[kind])
    status, code, _ = run.go(batch())
    assert (status, code) == ("waiting", 3)


# -- parallel -------------------------------------------------------------------------------------
PARALLEL = "".join(command(name, depends_on=[]) for name in "abcd") + command("join", depends_on=list("abcd"))


def meet(barrier, exit_code=0):
    """An outcome that returns only once `barrier.parties` commands are running at the same time
    (a run one by one breaks the barrier after its timeout: BrokenBarrierError)."""

    def outcome(emit):
        barrier.wait()
        return exit_code

    return outcome


def test_parallel_runs_independent_nodes_at_the_same_time_up_to_the_limit(runbook):
    run = runbook(PARALLEL)
    pair = threading.Barrier(2, timeout=10)
    for name in "abcd":
        run.runner.on("run %s" % name, meet(pair))
    assert run.go(batch(), engine.Options(parallel=2)) == ("succeeded", 0, None)
    assert run.runner.most_in_flight == 2
    assert sorted(run.runner.commands[:4]) == ["run a", "run b", "run c", "run d"]
    assert run.runner.commands[4] == "run join"
    assert set(run.statuses().values()) == {"succeeded"}
    assert len(run.rows()) == 5


def test_parallel_runs_a_node_that_is_alone_in_the_main_thread_and_the_others_in_workers(runbook):
    """Under --parallel, a step that is the only one that can run (nothing in flight, nothing else
    ready: a chain) runs in the main thread, as with --parallel 1; steps ready together run in
    worker threads at the same time; a failure of a lone step is handled as before."""
    run = runbook(
        command("a", depends_on=[]) + command("b", depends_on=["a"])
        + command("c", depends_on=["b"]) + command("d", depends_on=["b"]) + command("e", depends_on=["c", "d"])
    )
    threads = {}
    pair = threading.Barrier(2, timeout=10)

    def where(name, barrier=None):
        def outcome(on_output):
            threads[name] = threading.current_thread()
            if barrier is not None:
                barrier.wait()
            return 3 if name == "e" else 0
        return outcome

    for name in "abe":
        run.runner.on("run %s" % name, where(name))
    for name in "cd":
        run.runner.on("run %s" % name, where(name, pair))
    assert run.go(batch(), engine.Options(parallel=4)) == ("failed", 1, NOT_HANDLED % "e")
    main = threading.main_thread()
    assert (threads["a"], threads["b"], threads["e"]) == (main, main, main)
    assert threads["c"] is not main and threads["d"] is not main and threads["c"] is not threads["d"]
    assert run.runner.most_in_flight == 2
    assert run.rows(columns="node_id, attempt, status") == [
        ("a", 1, "succeeded"), ("b", 1, "succeeded"), ("c", 1, "succeeded"), ("d", 1, "succeeded"), ("e", 1, "failed")]


def test_parallel_failure_without_a_terminal_lets_the_nodes_in_flight_finish(runbook):
    run = runbook(command("a", depends_on=[]) + command("b", depends_on=[]) + command("join", depends_on=["a", "b"]))
    pair = threading.Barrier(2, timeout=10)
    run.runner.on("run a", meet(pair, exit_code=1)).on("run b", meet(pair))
    assert run.go(batch(), engine.Options(parallel=2)) == ("failed", 1, NOT_HANDLED % "a")
    assert sorted(run.rows(columns="node_id, status")) == [("a", "failed"), ("b", "succeeded")]
    assert sorted(run.runner.commands) == ["run a", "run b"]


def test_parallel_asks_only_once_nothing_else_is_in_flight(runbook):
    run = runbook(
        command("b", depends_on=[]) + manual("gate", depends_on=[]) + command("c", depends_on=[])
    )
    ui = ScriptedUI(True)
    seen = []
    # b's result is settled by the engine's own thread: still pending if gate were asked while b ran
    ui.on_question = lambda: seen.append((run.runner.in_flight, run.engine.results["b"].status))
    assert run.go(ui, engine.Options(parallel=3)) == ("succeeded", 0, None)
    assert seen == [(0, "succeeded")]
    assert run.runner.commands == ["run b", "run c"]  # c waits behind the question (execution order)


def test_parallel_failures_that_finish_together_are_each_asked_about(runbook, monkeypatch):
    run = runbook(
        command("f1", depends_on=[])
        + command("f2", depends_on=[])
        + command("off", depends_on=[], skip=True)
        + command("after", depends_on=["f1", "f2"])
    )
    run.runner.on("run f1", 1).on("run f2", 1)
    submitted = []

    class RecordingPool(concurrent.futures.ThreadPoolExecutor):
        def submit(self, *args, **kwargs):
            future = super().submit(*args, **kwargs)
            submitted.append(future)
            return future

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", RecordingPool)

    def both_done_before_the_engine_waits(kind, data):
        if kind == "node_skipped":  # `off`, skipped by the engine's thread right after f1 and f2 start
            assert len(submitted) == 2
            concurrent.futures.wait(submitted, timeout=10)

    ui = ScriptedUI("s", "s")
    ui.on_event = both_done_before_the_engine_waits
    seen = []
    ui.on_question = lambda: seen.append(run.runner.in_flight)
    assert run.go(ui, engine.Options(parallel=3)) == ("succeeded", 0, None)
    assert sorted(entry[1] for entry in ui.asked) == ["f1", "f2"]
    assert seen == [0, 0]
    assert run.runner.commands[-1] == "run after"


# -- resume ---------------------------------------------------------------------------------------
def test_resume_keeps_succeeded_nodes_and_runs_the_failed_one_again(runbook):
    run = runbook(CHAIN)
    run.runner.on("run b", 1, 0)
    assert run.go(batch()) == ("failed", 1, NOT_HANDLED % "b")
    assert run.go(batch(), resume=True) == ("succeeded", 0, None)
    assert run.runner.commands == ["run a", "run b", "run b", "run c"]
    assert run.rows(columns="node_id, attempt, status") == [
        ("a", 1, "succeeded"),
        ("b", 1, "failed"),
        ("b", 2, "succeeded"),
        ("c", 1, "succeeded"),
    ]
    assert run.statuses() == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}


def test_resume_keeps_an_operator_skip(runbook):
    run = runbook(CHAIN)
    run.runner.on("run a", 1).on("run b", 1, 0)
    ui = ScriptedUI("s", "a")
    assert run.go(ui) == ("aborted", 3, "aborted by %s at b" % WHO)
    assert run.go(batch(), resume=True) == ("succeeded", 0, None)
    assert run.runner.commands == ["run a", "run b", "run b", "run c"]
    assert run.statuses() == {"a": "skipped", "b": "succeeded", "c": "succeeded"}
    assert run.rows("a", columns="attempt, status, decision") == [(1, "failed", "skip"), (2, "skipped", "skip")]


def test_resume_keeps_a_followed_failure_and_evaluates_condition_skips_again(runbook):
    run = runbook(HANDLED_A + command("z", depends_on=["h"]))
    run.runner.on("run a", 1).on("run z", 1, 0)
    assert run.go(batch()) == ("failed", 1, NOT_HANDLED % "z")
    assert run.go(batch(), resume=True) == ("failed", 1, ALL_ENDED % "a")
    assert run.runner.commands == ["run a", "run c", "run h", "run z", "run z"]
    assert run.rows("a") == [("a", 1, "failed", None, "follow-failure", "automatic")]
    assert run.rows("b") == [
        ("b", 1, "skipped", "upstream a failed", None, None),
        ("b", 2, "skipped", "upstream a failed", None, None),
    ]


def test_resume_after_a_missing_approval_asks_without_running_the_step_again(runbook):
    run = runbook(AFTER)
    status, code, _ = run.go(batch())
    assert code == 3
    assert run.rows("a", columns="attempt, status, decision, error") == [
        (1, "interrupted", "approval-missing", "approval needed: Output looks right?")
    ]
    ui = ScriptedUI(True)
    assert run.go(ui, resume=True) == ("succeeded", 0, None)
    assert ui.asked == [("confirm", "a", "Output looks right?")]
    assert run.runner.commands == ["run a", "run b"]
    assert run.rows("a", columns="attempt, status, decision, decided_by") == [(1, "succeeded", "approved", WHO)]
    assert {"text": "a finished earlier; its approval is still needed"} in ui.of("message")


def test_resume_asks_a_manual_question_again_after_end_of_input(runbook):
    run = runbook(GATE)
    assert run.go(ScriptedUI()) == ("aborted", 3, NO_ANSWER)
    ui = ScriptedUI(True)
    assert run.go(ui, resume=True) == ("succeeded", 0, None)
    assert run.rows("gate", columns="attempt, status, decision") == [(1, "interrupted", None), (2, "succeeded", "approved")]
    assert run.runner.commands == ["run deploy"]


@pytest.mark.parametrize(
    "outcome",
    [
        pytest.param(lambda emit: result(None, interrupted=True, error="interrupted"), id="runner-reports-it"),
        pytest.param(lambda emit: (_ for _ in ()).throw(KeyboardInterrupt()), id="ctrl-c-in-the-runner"),
    ],
)
def test_a_signal_during_a_step_records_it_interrupted_and_resume_reports_it(runbook, outcome):
    run = runbook(CHAIN)
    run.runner.on("run b", outcome)
    eng = run.session(batch())
    with pytest.raises(engine.Interrupted):
        eng.run()
    assert run.rows(columns="node_id, status") == [("a", "succeeded"), ("b", "interrupted")]
    eng, interrupted = run.session(batch(), resume=True)
    assert interrupted == ["b"]
    assert eng.results["a"].status == "succeeded"
    assert eng.results["b"].status == "pending"


# -- when node_started is shown ---------------------------------------------------------------------
@pytest.mark.parametrize("recorder", ["database", "lock file"])
def test_node_started_is_shown_once_its_command_started_and_before_anything_else_of_it(runbook, tmp_path, recorder):
    """A Command's node_started event comes after its process is recorded (so the line is written
    while the command runs, not before it starts) and still before its output and its end; each
    attempt is announced exactly once, also when its command cannot start. A session records
    the process in the run's lock file (no transaction), where the store's readers find it."""
    missing = str(tmp_path / "no-such-directory")
    run = runbook(
        command("echo", depends_on=[], command_name="echo hello")
        + command("flaky", depends_on=["echo"], command_name="exit 3", retries=1)
        + command("nowhere", depends_on=["flaky:failure"], command_name="true", cwd=missing)
        + command("after", depends_on=["nowhere:failure"], command_name="true")
    )
    run.runner = executors.run_command
    lock = run.store.lock_run(run.run_id)
    if recorder == "lock file":
        run.record_process = lock.record_process
    ui = batch()
    seen = []

    def on_event(kind, data):
        if kind == "node_started":
            (row,) = [a for a in run.store.attempts(run.run_id, data["node"].id) if a["attempt"] == data["attempt"]]
            in_db = run.rows(data["node"].id, columns="pgid")[-1][0]
            assert in_db == (row["pgid"] if recorder == "database" else None)
            seen.append((data["node"].id, data["attempt"], (row["attempt"], row["status"], row["pgid"])))

    ui.on_event = on_event
    with lock:
        assert run.go(ui)[0] == "failed"
    started = [row for row in seen if row[0] != "nowhere"]
    assert [(node_id, attempt) for node_id, attempt, _ in seen] == [
        ("echo", 1), ("flaky", 1), ("flaky", 2), ("nowhere", 1), ("after", 1)]
    for node_id, attempt, (row_attempt, status, pgid) in started:
        assert (row_attempt, status) == (attempt, "running")
        assert isinstance(pgid, int) and pgid > 1, "%s was announced before its process was recorded" % node_id
    assert seen[3][2][:2] == (1, "running") and seen[3][2][2] is None  # never started: no process
    kinds = [(kind, data["node"].id) for kind, data in ui.events if kind.startswith("node_")]
    assert kinds[:3] == [("node_started", "echo"), ("node_output", "echo"), ("node_finished", "echo")]
    assert kinds.index(("node_started", "nowhere")) < kinds.index(("node_finished", "nowhere"))
    assert ui.of("node_output")[0]["text"] == "hello\n"


# -- what is shown is written ----------------------------------------------------------------------
MIXED = (
    command("a", depends_on=[])
    + command("b", depends_on=["a"])
    + function("f", "notify", depends_on=["b"], message="hi")
    + command("skipped", depends_on=["f"], when="false")
    + command("c", depends_on=["skipped"])
    + manual("gate", depends_on=["c"], prompt_after="Fine?")
    + command("approved", depends_on=["gate"], prompt_after="Good?")
    + command("d", depends_on=["approved"])
    + command("bad", depends_on=["d"], command_name="fail")
    + command("e", depends_on=["bad:failure"])
    + command("side1", depends_on=["e"])
    + command("side2", depends_on=["e"])
    + command("last", depends_on=["side1", "side2"])
)


@pytest.mark.parametrize("parallel", [1, 4])
def test_every_end_and_start_shown_is_already_committed(runbook, parallel):
    """A step's success in a chain is written with the next step's row (one transaction), so it
    is shown later than it ends: never before it is committed. At every node_finished and
    node_started event another connection must already read what the event says, whatever
    comes next (a step, a Function, a skip, a question, a failure, parallel steps, the end)."""
    run = runbook(MIXED)
    run.runner.on("fail", 1)
    ui = ScriptedUI(True, True, "f", interactive=True)  # gate's question, approved's question, follow bad's failure
    checked = []

    def on_event(kind, data):
        if kind in ("node_finished", "node_started"):
            node_id = data["node"].id
            rows = run.rows(node_id, columns="attempt, status")
            assert rows, "%s: %s shown before its row was committed" % (node_id, kind)
            want = (data["attempt"], data["status"] if kind == "node_finished" else "running")
            if node_id == "gate" and kind == "node_finished":
                want = (want[0], rows[-1][1])  # a Manual step's row is written after its question
            assert rows[-1] == want, "%s: %s shown, but the database has %r" % (node_id, kind, rows[-1])
            checked.append((kind, node_id))

    ui.on_event = on_event
    assert run.go(ui, engine.Options(parallel=parallel)) == ("failed", 1, ALL_ENDED % "bad")
    assert [question[:2] for question in ui.asked] == [("confirm", "gate"), ("confirm", "approved"), ("choose", "bad")]
    finished = [node_id for kind, node_id in checked if kind == "node_finished"]
    assert sorted(finished) == sorted(["a", "b", "f", "c", "gate", "approved", "d", "bad", "e", "side1", "side2", "last"])
    assert ("node_finished", "a") in checked and checked.index(("node_finished", "a")) < checked.index(("node_started", "b"))
    assert [row[2] for row in run.rows()].count("running") == 0


def test_a_success_is_written_even_when_the_next_steps_row_cannot_be(runbook, monkeypatch):
    """The held success and the next row go in one transaction; if that fails (a full disk, a
    lock held too long), the success is written on its own and the error stops the run."""
    run = runbook(CHAIN)
    real = run.store.start_attempt
    failures = []

    def start_attempt(run_id, node_id, attempt, finished=None):
        if node_id == "b":
            failures.append(finished)
            raise state.StateError("database or disk is full")
        return real(run_id, node_id, attempt, finished=finished)

    monkeypatch.setattr(run.store, "start_attempt", start_attempt)
    ui = batch()
    with pytest.raises(state.StateError):
        run.go(ui)
    assert failures and failures[0] is not None  # a's success went with b's row
    assert run.rows() == [("a", 1, "succeeded", None, None, None)]
    assert [(kind, data["node"].id) for kind, data in ui.events if kind.startswith("node_")] == [
        ("node_started", "a"), ("node_finished", "a")]


def test_one_commit_per_step_end_and_next_start_in_a_chain(runbook, monkeypatch):
    """What the held success buys: in a chain, a step's end and the next step's start are one
    transaction (the engine calls finish_attempt only for the last step)."""
    run = runbook("".join(command("n%d" % i, depends_on=["n%d" % (i - 1)] if i else []) for i in range(5)))
    calls = []
    for name in ("start_attempt", "finish_attempt"):
        real = getattr(run.store, name)
        monkeypatch.setattr(run.store, name, lambda *a, _real=real, _name=name, **k: calls.append((_name, bool(k.get("finished")))) or _real(*a, **k))
    assert run.go(batch())[0] == "succeeded"
    assert calls == [("start_attempt", False)] + [("start_attempt", True)] * 4 + [("finish_attempt", False)]
