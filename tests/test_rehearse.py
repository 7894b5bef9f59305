"""`playbook test` (compiler/rehearse.py): scenarios rehearsed through the real engine without
running anything.

- the examples' scenarios (examples/deploy.scenarios.toml at full coverage, and scenarios for
  the checklist and plugins examples), and every shape of the 1.x compatibility corpus;
- a failing scenario's readable diff; unknown steps, variables and answers at file:line:col;
  an unanswered question and an unused answer named;
- a property: for random DAGs with random outcomes and answers, the rehearsed path is the path
  of a real run (real engine, `executors.run_command` running `exit N`, SQLite in tmp), step
  for step, row for row;
- nothing executes: commands that would create files create none, a plugin function runs only
  when it declares itself rehearse_safe, no state database is written;
- --generate re-read and passing, --coverage numbers and --min-coverage, --junit, --json, -k,
  --state-path, secrets masked, approval policies, the JSON Schema.
Speed is not asserted here (benchmarks/rehearse_speed.py prints it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playbook.compiler import rehearse, source
from playbook.compiler.plan import compile_source
from playbook.runtime import executors, plugins, state, tomlfile
from playbook.runtime.errors import UsageError, guard

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DEPLOY = EXAMPLES / "deploy.playbook.toml"
DEPLOY_SCENARIOS = EXAMPLES / "deploy.scenarios.toml"
SCHEMA = REPO / "schema" / "scenarios.schema.json"

# The valid runbooks of the 1.x corpus (tests/test_compat.py: VALID).
COMPAT_VALID = [
    "conditional_dependencies.playbook.toml",
    "conditional_deployment.playbook.toml",
    "plugin-auto.playbook.toml",
    "plugin.playbook.toml",
    "simple_bash_commands.playbook.toml",
    "variables-deploy.playbook.toml",
    "probes/probe-abort.playbook.toml",
    "probes/probe-crit.playbook.toml",
    "probes/probe-extra.playbook.toml",
    "probes/probe-markup.playbook.toml",
    "probes/probe-misc.playbook.toml",
    "probes/probe-sigint.playbook.toml",
    "probes/probe-skipfail.playbook.toml",
]


def run_main(argv: List[Any], capsys: Any) -> tuple:
    """(exit code, stdout, stderr) of `playbook test ARGV`, as the console script's guard gives them."""
    code = guard(lambda: rehearse.main([str(a) for a in argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(path: Path, text: str) -> Path:
    path.write_text(text, "utf-8")
    return path


def rehearse_text(runbook: Path, scenarios: str, tmp_path: Path) -> rehearse.Suite:
    return rehearse.rehearse(str(runbook), str(write(tmp_path / "s.scenarios.toml", scenarios)))


def assert_all_pass(suite: rehearse.Suite) -> None:
    failures = [
        "\n".join(rehearse.result_lines(r, suite.scenarios.locate, suite.scenarios.display))
        for r in suite.results if not r.passed
    ]
    assert not failures, "\n".join(failures)


# -- the examples -----------------------------------------------------------------------------------
def test_deploy_example_scenarios_pass_at_full_coverage(tmp_path, capsys):
    coverage_file = tmp_path / "coverage.json"
    code, out, err = run_main([DEPLOY, "--coverage", coverage_file, "--min-coverage", "100"], capsys)
    assert code == 0, out + err
    lines = out.splitlines()
    assert sum(1 for line in lines if line.startswith("PASS  ")) == 12
    assert "coverage: 100.0% (22 of 22) over 12 scenarios" in out
    assert lines[-1].startswith("12 passed, 0 failed in ")
    report = json.loads(coverage_file.read_text())
    assert report["percent"] == 100.0
    assert report["edges"] == {"total": 4, "covered": 4, "never": []}
    assert report["when"]["never"] == [] and report["rejections"]["never"] == []


def test_rehearse_file_summary_for_compile_test():
    summary = rehearse.rehearse_file(str(DEPLOY))
    assert (summary["total"], summary["passed"], summary["failed"]) == (12, 12, 0)
    assert summary["scenarios_sha256"] == hashlib.sha256(DEPLOY_SCENARIOS.read_bytes()).hexdigest()
    assert summary["runbook_sha256"] == hashlib.sha256(DEPLOY.read_bytes()).hexdigest()
    assert [r["name"] for r in summary["results"]][0] == "prod: the happy path, approved at the terminal"


CHECKLIST_SCENARIOS = """
[[scenario]]
name = "every box ticked"
answers = { announce = "approve", backup_verified = "approve", run_vacuum = "approve", close_window = "approve" }

[scenario.expect]
status = "succeeded"
ran = ["announce", "check_replication", "backup_verified", "run_vacuum", "close_window"]
approvals = ["announce", "backup_verified", "run_vacuum", "close_window"]
questions.run_vacuum = "Start the maintenance now?"
questions.backup_verified = "Backup and restore test verified?"
commands.check_replication = "echo 'replica-1 lag: 0.2s' && echo 'replica-2 lag: 0.1s'"

[[scenario]]
name = "the backup is not verified: a critical step is asked again or the run aborts"
answers.announce = "approve"
answers.backup_verified = ["reject", "retry", "reject", "abort"]

[scenario.expect]
status = "aborted"
exit_code = 3
ran = ["announce", "check_replication", "backup_verified"]
failed = ["backup_verified"]
steps.backup_verified = { attempts = 2 }
approvals = [{ step = "announce" }, { step = "backup_verified", decision = "rejected" }, { step = "backup_verified", decision = "rejected" }]

[[scenario]]
name = "the maintenance is declined before it starts: skipped"
answers = { announce = "approve", backup_verified = "approve", run_vacuum = ["reject", "skip"], close_window = "approve" }

[scenario.expect]
status = "succeeded"
ran = ["announce", "check_replication", "backup_verified", "close_window"]
skipped = ["run_vacuum"]
steps.run_vacuum = { status = "skipped", attempts = 0, reason = "skipped by the operator before it ran" }

[[scenario]]
name = "in CI with --auto-approve"
interactive = false
auto_approve = true

[scenario.expect]
status = "succeeded"
approvals = ["announce", "backup_verified", "run_vacuum", "close_window"]
"""


def test_checklist_example(tmp_path):
    suite = rehearse_text(EXAMPLES / "checklist.playbook.toml", CHECKLIST_SCENARIOS, tmp_path)
    assert_all_pass(suite)
    assert len(suite.results) == 4


def test_a_critical_step_is_never_skipped_in_a_scenario(tmp_path, capsys):
    scenarios = write(tmp_path / "c.toml", '[[scenario]]\nname = "x"\nanswers.backup_verified = ["reject", "skip"]\n')
    code, _, err = run_main([EXAMPLES / "checklist.playbook.toml", "--scenarios", scenarios], capsys)
    assert code == 2
    assert "c.toml:3:1: error: answers.backup_verified[1]: backup_verified is critical, so skip is never offered" in err


PLUGINS_SCENARIOS = """
[[scenario]]
name = "throw fails on purpose (it is rehearse_safe, so it runs), recover runs"
vars = { PAUSE = 10 }
answers.fail_on_purpose = "follow"

[scenario.expect]
status = "failed"
ran = ["hello", "pause", "fail_on_purpose", "recover", "done"]
failed = ["fail_on_purpose"]
params.pause = { seconds = 10.0 }
params.hello = { message = "Starting the plugin demo for demo-app" }
outputs.hello = { output = "Notification sent: Starting the plugin demo for demo-app", status = "succeeded" }
outputs.done = { output = { pattern = "Notification sent: Plugin demo for demo-app finished" } }

[[scenario]]
name = "what if throw did not throw"
outcomes.fail_on_purpose = { return = "fine" }
outcomes.hello = { error = "Slack is down" }
answers.hello = "skip"

[scenario.expect]
status = "succeeded"
ran = ["hello", "pause", "fail_on_purpose", "done"]
skipped = ["hello", "recover"]
outputs.fail_on_purpose = { output = "fine" }
"""


def test_plugins_example(tmp_path):
    began = time.monotonic()
    suite = rehearse_text(EXAMPLES / "plugins.playbook.toml", PLUGINS_SCENARIOS, tmp_path)
    assert_all_pass(suite)
    assert time.monotonic() - began < 5  # python.sleep (10 s) is not rehearse_safe: it never ran
    assert suite.results[0].steps["pause"].output is None


# -- the 1.x corpus ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", COMPAT_VALID)
def test_compat_runbook_generated_scenarios_pass(compat_dir, name):
    """Every shape of the corpus: --generate's scenarios, re-read, all pass at the coverage it reports."""
    plan, display, _ = rehearse.compile_runbook(str(compat_dir / name))
    rehearsal = rehearse.Rehearsal(plan, display)
    try:
        results, notes, report = rehearse.generate(plan, rehearsal)
    finally:
        rehearsal.close()
    text = rehearse.generated_toml(plan, display, results, notes, report)
    loaded = rehearse.load_scenarios(None, plan, text=text, display="generated.toml")
    again = rehearse.Rehearsal(plan, display)
    rerun = [again.run(s) for s in loaded.scenarios]
    again.close()
    assert all(r.passed for r in rerun), [rehearse.result_lines(r, loaded.locate, "generated.toml") for r in rerun]
    assert rehearse.coverage(plan, rerun)["percent"] == report["percent"]


COMPAT_SCENARIOS = {
    "conditional_dependencies.playbook.toml": """
[[scenario]]
name = "make deploy fails: rollback and cleanup_failure run; notify still runs"
outcomes.deploy = { exit_code = 2, stderr = "make: *** [deploy] Error 2" }
answers = { deploy = "follow", notify = "approve" }
[scenario.expect]
status = "failed"
ran = ["build", "test", "deploy", "rollback", "cleanup_failure", "notify"]
skipped = ["cleanup_success"]
steps.cleanup_success = { reason = "condition not met: needs deploy succeeded" }

[[scenario]]
name = "make deploy fails and the operator skips it: the failure branch does not run (as in 1.x)"
outcomes.deploy = 2
answers = { deploy = "skip", notify = "approve" }
[scenario.expect]
status = "succeeded"
ran = ["build", "test", "deploy", "notify"]
skipped = ["deploy", "rollback", "cleanup_success", "cleanup_failure"]
""",
    "conditional_deployment.playbook.toml": """
[[scenario]]
name = "prod"
vars = { ENVIRONMENT = "prod" }
answers = { production_approval = "approve", notify_success = "approve" }
[scenario.expect]
ran = ["build_application", "run_tests", "security_scan", "production_approval", "deploy_production", "health_check", "notify_success"]
# a value that does not end its word is quoted: the command gets exactly "prod"
commands.health_check = "curl -f https://'prod'.myapp.com/health"

[[scenario]]
name = "staging without tests; the health check fails; ENABLE_ROLLBACK"
vars = { ENVIRONMENT = "staging", SKIP_TESTS = true }
outcomes.health_check = 22
answers = { health_check = "follow", notify_failure = "approve" }
[scenario.expect]
status = "failed"
ran = ["build_application", "deploy_staging", "health_check", "rollback_deployment", "notify_failure"]
commands.rollback_deployment = "rollback.sh staging"
""",
    "probes/probe-skipfail.playbook.toml": """
[[scenario]]
name = "deploy exits 3 and is skipped: plain and probe_when run (as in 1.x)"
outcomes.deploy = 3
answers.deploy = "skip"
[scenario.expect]
status = "succeeded"
ran = ["deploy", "plain", "probe_when"]
skipped = ["deploy", "on_fail", "on_ok"]
outputs.deploy = { status = "skipped", exit_code = 3 }
""",
    "probes/probe-crit.playbook.toml": """
[[scenario]]
name = "gate rejected then approved; boom is critical: retry or abort only"
answers.gate = ["reject", "retry", "approve"]
answers.boom = ["retry", "abort"]
outcomes.boom = 2
[scenario.expect]
status = "aborted"
reason = "aborted by operator@rehearsal at boom"
steps.boom = { status = "failed", attempts = 2, exit_code = 2 }
pending = ["after"]
""",
    "probes/probe-misc.playbook.toml": """
[[scenario]]
name = "skip = true, alternatives, *, ^ and a timeout"
outcomes.t = { duration = 5 }
answers.t = "skip"
[scenario.expect]
status = "succeeded"
ran = ["b", "c", "d", "e", "t"]
skipped = ["a", "t"]
steps.a = { reason = "disabled (skip = true)" }
steps.t = { status = "skipped", attempts = 1 }
commands.e = "echo 'e: $HOME ~ ${NOPE_UNSET} $$'"
""",
    "probes/probe-extra.playbook.toml": """
[[scenario]]
name = "three automatic retries"
outcomes.a = [1, 1, 1, 0]
[scenario.expect]
status = "succeeded"
steps.a = { status = "succeeded", attempts = 4 }
""",
    "probes/probe-abort.playbook.toml": """
[[scenario]]
name = "no flag: retry then abort"
outcomes.flaky = { exit_code = 1, stderr = "no flag\\n" }
answers.flaky = ["retry", "abort"]
[scenario.expect]
status = "aborted"
exit_code = 3
ran = ["first", "flaky"]
pending = ["last"]
outputs.flaky = { stderr = "no flag\\n" }
""",
    "plugin-auto.playbook.toml": """
[[scenario]]
name = "notify runs (safe), sleep does not"
[scenario.expect]
status = "succeeded"
outputs.start_notification = { output = "Notification sent: 🚀 Starting automated Python plugin demo for demo-app" }
params.demonstrate_sleep = { seconds = 1.0 }
""",
    "plugin.playbook.toml": """
[[scenario]]
name = "the 1.x session: throw fails 3 times, then skipped"
vars = { SLEEP_DURATION = 1 }
answers = { show_info = "approve", demonstrate_error_handling = "approve", completion_notification = ["retry", "retry", "skip"], final_checkpoint = "approve" }
[scenario.expect]
status = "succeeded"
steps.completion_notification = { status = "skipped", attempts = 3 }
""",
    "variables-deploy.playbook.toml": """
[[scenario]]
name = "production values"
vars = { ENVIRONMENT = "prod", VERSION = "1.2.3" }
answers.pre_deploy_check = "approve"
[scenario.expect]
status = "succeeded"
commands.deploy_application = { pattern = "docker run .* deploy --app=myapp --version=1\\\\.2\\\\.3 --env=prod --timeout=300" }
commands.health_check = "curl -f https://'myapp'-'prod'.company.com/health || exit 1"
questions.pre_deploy_check = "Ready to deploy myapp 1.2.3 to prod? This will affect the prod environment."
""",
    "simple_bash_commands.playbook.toml": """
[[scenario]]
name = "a #! script"
[scenario.expect]
commands.run_bash_commands = { pattern = "#!/bin/bash\\nset -e\\n(?s:.*)" }
""",
    "probes/probe-markup.playbook.toml": """
[[scenario]]
name = "output with [/] is data"
outcomes.a = { stdout = "a [/] b\\n" }
[scenario.expect]
outputs.a = { stdout = "a [/] b\\n" }
""",
    "probes/probe-sigint.playbook.toml": """
[[scenario]]
name = "sleep 30 takes no time in a rehearsal"
outcomes.slow = { duration = 30 }
[scenario.expect]
status = "succeeded"
ran = ["one", "slow", "three"]
""",
}


@pytest.mark.parametrize("name", sorted(COMPAT_SCENARIOS))
def test_compat_runbook_shapes(compat_dir, tmp_path, name):
    suite = rehearse_text(compat_dir / name, COMPAT_SCENARIOS[name], tmp_path)
    assert_all_pass(suite)


def test_every_compat_runbook_has_hand_written_scenarios():
    assert sorted(COMPAT_SCENARIOS) == sorted(COMPAT_VALID)


# -- diffs and errors -------------------------------------------------------------------------------
WRONG = """\
[[scenario]]
name = "a right one"
vars = { ENVIRONMENT = "dev" }

[[scenario]]
name = "wrong command"
vars = { ENVIRONMENT = "staging" }
outcomes.build_app = { stdout = "myapp-1.4.2.tar.gz\\n" }

[scenario.expect]
status = "succeeded"
ran = ["build_app", "run_tests", "security_scan", "deploy_application", "health_check", "notify_success"]
commands.deploy_application = "echo deploying myapp-1.4.2.tar.gz to prod && sleep 0.2 && echo rollout complete"
"""


def test_a_wrong_expected_command_reports_a_readable_diff(tmp_path, capsys):
    scenarios = write(tmp_path / "wrong.toml", WRONG)
    code, out, _ = run_main([DEPLOY, "--scenarios", scenarios], capsys)
    assert code == 1
    shown = rehearse.source_mod.relative_display(str(scenarios))
    lines = out.splitlines()
    start = lines.index("FAIL  wrong command  (%s:5)" % shown)
    assert lines[0].startswith("PASS  a right one")
    assert lines[start + 1:start + 13] == [
        "      %s:12:1: expect.ran" % shown,
        "        (- expected, + actual)",
        "          build_app",
        "          run_tests",
        "        - security_scan",
        "          deploy_application",
        "          health_check",
        "          notify_success",
        "      %s:13:1: expect.commands.deploy_application" % shown,
        "        expected: echo deploying myapp-1.4.2.tar.gz to prod && sleep 0.2 && echo rollout complete",
        "        actual:   echo deploying myapp-1.4.2.tar.gz to staging && sleep 0.2 && echo rollout complete",
        "                                                       ^ from here",
    ]
    assert lines[-1].startswith("1 passed, 1 failed in ")


BAD_NAMES = """\
[[scenario]]
name = "names"
vars = { ENVIRONMNT = "prod" }
outcomes.helth_check = 1
answers.approve_production = "aprove"

[scenario.expect]
ran = ["build_app", "deploy"]
"""


def test_unknown_step_variable_and_answer_are_file_line_col_errors(tmp_path, capsys):
    scenarios = write(tmp_path / "bad.toml", BAD_NAMES)
    code, out, err = run_main([DEPLOY, "--scenarios", scenarios], capsys)
    assert code == 2 and out == ""
    shown = rehearse.source_mod.relative_display(str(scenarios))
    assert err.splitlines() == [
        "%s:3:10: error: unknown variable 'ENVIRONMNT': the runbook does not declare it" % shown,
        "  hint: did you mean 'ENVIRONMENT'?",
        "%s:4:1: error: unknown step 'helth_check': the runbook has no step of that name" % shown,
        "  hint: did you mean 'health_check'?",
        "%s:5:1: error: answers.approve_production: unknown answer 'aprove'" % shown,
        "  hint: did you mean 'approve'?",
        "%s:8:1: error: unknown step 'deploy': the runbook has no step of that name" % shown,
        "  hint: the runbook's steps: build_app, run_tests, security_scan, approve_production, deploy_application, "
        "health_check, rollback, notify_success, notify_failure",
        "error: %s has 4 errors; no scenario was rehearsed" % shown,
    ]


def test_bad_values_and_missing_variables_are_located(tmp_path):
    text = '[[scenario]]\nname = "a"\n\n[[scenario]]\nname = "b"\nvars = { ENVIRONMENT = "qa", DEPLOY_TIMEOUT = 5 }\n'
    with pytest.raises(rehearse.ScenarioError) as caught:
        rehearse.rehearse(str(DEPLOY), str(write(tmp_path / "v.toml", text)))
    shown = [(d.line, d.col, d.message) for d in caught.value.diagnostics]
    assert shown == [
        (1, 1, "scenario 'a': missing required variable ENVIRONMENT"),
        (6, 10, "vars.ENVIRONMENT: 'qa' is not one of the allowed values: 'dev', 'staging', 'prod'"),
        (6, 30, "vars.DEPLOY_TIMEOUT: 5 is below the minimum 10"),
    ]
    assert isinstance(caught.value, UsageError)


def test_every_scenario_key_is_checked(tmp_path):
    text = """\
[defaults]
vars = { ENVIRONMENT = "prod" }
who = "al@ice"

[[scenario]]
name = "dup"

[[scenario]]
name = "dup"
outcomes.approve_production = 1
outcomes.notify_success = 3
outcomes.build_app = "timeuot"
answers.build_app = "follow"
approve = ["approve_production"]
colour = "red"

[scenario.expect]
status = "done"
commands.notify_success = "x"
questions.build_app = "x"
env.build_app = { X = { pattern = "(?=x)" } }
steps.build_app = { status = "ok" }
approvals = [{ step = "build_app", decision = "maybe" }]
"""
    with pytest.raises(rehearse.ScenarioError) as caught:
        rehearse.rehearse(str(DEPLOY), str(write(tmp_path / "k.toml", text)))
    messages = [(d.line, d.message) for d in caught.value.diagnostics]
    expected = [
        (3, "who must be a user name (without @host)"),
        (9, "two scenarios are named 'dup' (the other is scenario 1)"),
        (10, "approve_production is a Manual step: it takes answers, not outcomes"),
        (11, "outcomes.notify_success: a Function step's outcome is \"success\", \"failure\", { return = … } or { error = \"…\" }"),
        (12, "outcomes.build_app: unknown outcome 'timeuot'"),
        (13, "answers.build_app: nothing handles the failure of build_app, so the menu never offers follow"),
        (14, "approve applies to a run without a terminal: add interactive = false (or answer the question in answers)"),
        (15, "unknown key 'colour' in a [[scenario]]"),
        (18, "expect.status: unknown run status 'done'"),
        (19, "expect.commands.notify_success: notify_success is a Function step; only Command steps have commands"),
        (20, "expect.questions.build_app: build_app asks no question"),
        (22, "expect.steps.build_app.status: unknown step status 'ok'"),
        (23, "unknown decision 'maybe'"),
    ]
    for item in expected:
        assert item in messages, "%r not in %r" % (item, messages)
    assert any(line == 21 and message.startswith("expect.env.build_app.X: the pattern uses a lookahead") for line, message in messages), messages


def test_a_question_without_an_answer_fails_naming_it(tmp_path, capsys):
    scenarios = write(tmp_path / "q.toml", '[[scenario]]\nname = "forgot"\nanswers.announce = "approve"\n')
    code, out, _ = run_main([EXAMPLES / "checklist.playbook.toml", "--scenarios", scenarios], capsys)
    assert code == 1
    assert ("      error: no answer for the question of backup_verified: 'Backup and restore test verified?'; "
            "give answers.backup_verified (approve or reject)") in out.splitlines()


def test_an_answer_the_menu_does_not_offer_fails(tmp_path):
    # deploy_application is critical only in prod (a template): the menu is what decides
    text = """\
[[scenario]]
name = "skip a critical deploy"
vars = { ENVIRONMENT = "prod" }
outcomes.deploy_application = 1
answers = { approve_production = "approve", deploy_application = "skip" }
"""
    suite = rehearse_text(DEPLOY, text, tmp_path)
    assert suite.results[0].problem == (
        "answers.deploy_application: 'skip' is not offered at 'deploy_application failed. What now?' (offered: retry, abort)"
    )


def test_answers_and_outcomes_never_used_fail_the_scenario(tmp_path):
    text = """\
[[scenario]]
name = "dev has no approval and no rollback"
vars = { ENVIRONMENT = "dev" }
outcomes.rollback = 1
outcomes.run_tests = [0, 1]
answers.approve_production = "approve"
"""
    result = rehearse_text(DEPLOY, text, tmp_path).results[0]
    assert not result.passed
    assert [m.lines[0] for m in result.unused] == [
        "answers.approve_production: the answer was never asked for (0 of 1 answers used): approve",
        "outcomes.rollback: never used: rollback did not run",
        "outcomes.run_tests: run_tests ran 1 time; only 1 of its 2 outcomes were used",
    ]


# -- the property: a rehearsal is a real run, step for step -----------------------------------------
@st.composite
def runbooks(draw: Any) -> tuple:
    """(runbook text, scenario, exit codes): a random DAG of Command and Manual steps with
    conditional edges, `when`, retries, critical steps and questions; random answers."""
    count = draw(st.integers(2, 6))
    parts = ['[runbook]\ntitle = "property"\n']
    codes: Dict[str, int] = {}
    kinds: Dict[str, str] = {}
    for i in range(count):
        node = "n%d" % i
        kind = draw(st.sampled_from(["Command", "Command", "Command", "Manual"]))
        kinds[node] = kind
        deps = []
        if i:
            for j in draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)):
                deps.append("n%d%s" % (j, draw(st.sampled_from(["", "", ":success", ":failure", ":done"]))))
        lines = ["[%s]" % node, 'type = "%s"' % kind, "depends_on = %s" % json.dumps(deps)]
        if i and draw(st.integers(0, 3)) == 0:
            function = draw(st.sampled_from(["has_failed", "has_succeeded", "is_skipped", "has_run"]))
            negate = draw(st.sampled_from(["", "not "]))
            lines.append('when = "{{ %s%s(\'n%d\') }}"' % (negate, function, draw(st.integers(0, i - 1))))
        if draw(st.integers(0, 4)) == 0:
            lines.append("critical = true")
        if kind == "Command":
            codes[node] = draw(st.sampled_from([0, 0, 0, 1, 3]))
            lines.append('command_name = "echo out-%s; exit %d"' % (node, codes[node]))
            if draw(st.integers(0, 3)) == 0:
                lines.append("retries = %d" % draw(st.integers(1, 2)))
            if draw(st.integers(0, 4)) == 0:
                lines.append('prompt_after = "Accept %s?"' % node)
        else:
            lines.append('prompt_after = "Approve %s?"' % node)
        parts.append("\n".join(lines) + "\n")
    interactive = draw(st.booleans())
    answers: Dict[str, List[str]] = {}
    approve: List[str] = []
    if interactive and draw(st.integers(0, 3)) == 0:
        # answers written as lists, right or wrong: a wrong one is the same problem in both runs
        for node, kind in kinds.items():
            words = ["approve", "approve", "reject", "retry", "follow", "abort"] if kind == "Manual" else [
                "retry", "follow", "skip", "abort", "approve", "reject"]
            answers[node] = draw(st.lists(st.sampled_from(words), max_size=3))
    elif not interactive:
        approve = draw(st.lists(st.sampled_from(sorted(kinds)), unique=True))
    scenario = rehearse.Scenario(
        name="random", index=0, interactive=interactive, answers={k: v for k, v in answers.items() if v},
        approve=[n for n in approve if kinds[n] == "Manual"], auto_approve=not interactive and draw(st.booleans()),
        max_retries=draw(st.integers(1, 3)),
        outcomes={n: [rehearse.Outcome(exit_code=c, stdout="out-%s\n" % n)] for n, c in codes.items()},
    )
    # otherwise the operator picks among what is offered, by these numbers (the same in both runs)
    picks = draw(st.lists(st.integers(0, 11), min_size=12, max_size=12))
    return "\n".join(parts), scenario, picks


def operator(picks: List[int]) -> Any:
    """An operator answering from `picks`: a question approved or rejected, a menu's choice; once
    they are used up, approve and follow / skip / abort (so every run ends)."""
    left = list(picks)

    def answer(step: str, kind: str, text: str, offered: List[str]) -> str:
        if not left:
            return "approve" if kind == "question" else next(w for w in ("follow", "skip", "abort") if w in offered)
        number = left.pop(0)
        if kind == "question":
            return "reject" if number % 3 == 0 else "approve"
        return offered[number % len(offered)]

    return answer


ATTEMPT_FIELDS = ("node_id", "attempt", "status", "skip_reason", "decision", "decided_by", "exit_code", "stdout", "stderr", "error")


def _path_of(result: rehearse.Result, store: state.Store) -> dict:
    return {
        "run": (result.status, result.exit_code, result.reason, result.problem),
        "started": result.started,
        "steps": {k: (v.status, v.reason, v.exit_code, v.stdout, v.attempts) for k, v in result.steps.items()},
        "asked": [(a.step, a.kind, a.text, a.answer, a.offered) for a in result.asked],
        "approvals": result.approvals,
        "rows": [tuple(row[f] for f in ATTEMPT_FIELDS) for row in store.attempts(result.run_id)],
        "decisions": [(r["node_id"], r["decision"], r["who"], r["how"]) for r in store.approvals(result.run_id)],
    }


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(runbooks())
def test_property_a_rehearsal_takes_the_path_of_a_real_run(drawn):
    text, scenario, picks = drawn
    plan = compile_source(source.parse(text, "property.playbook.toml"), None, bake=False).plan
    rehearsal = rehearse.Rehearsal(plan, "property.playbook.toml")
    rehearsed = rehearsal.run(scenario, explore=operator(picks))
    with tempfile.TemporaryDirectory() as directory:
        real_store = state.Store(os.path.join(directory, "state.db"))
        real = rehearse.Rehearsal(plan, "property.playbook.toml", store=real_store)
        ran = real.run(scenario, execute=executors.run_command, store=real_store, explore=operator(picks))
        assert _path_of(rehearsed, rehearsal.store) == _path_of(ran, real_store)
        # the real run really ran: its commands printed their lines
        for step, calls in ran.calls.items():
            assert ran.steps[step].stdout in (None, "out-%s\n" % step), calls
        real.close()
    rehearsal.close()


# -- nothing executes -------------------------------------------------------------------------------
SPY_PLUGIN = '''
from pathlib import Path
from playbook.runtime.plugins import FunctionSignature, ParameterDef, Plugin, PluginMetadata

CALLS = []


class SpyPlugin(Plugin):
    def get_metadata(self):
        return PluginMetadata(name="spy", functions={
            "write": FunctionSignature(name="write", parameters={"path": ParameterDef(type="str", required=True)}),
            "double": FunctionSignature(name="double", parameters={"x": ParameterDef(type="int", required=True)},
                                        rehearse_safe=True),
        })

    def initialize(self, config):
        CALLS.append(("initialize", config))

    def execute(self, function_name, params):
        CALLS.append((function_name, params))
        if function_name == "write":
            Path(params["path"]).write_text("the plugin ran")
            return "wrote"
        return params["x"] * 2
'''

TOUCHING = """\
[runbook]
title = "every step would leave a file"
shell = "/bin/sh"

[variables]
TARGET = { required = true }
TOKEN = { required = true, secret = true }

[a]
type = "Command"
command_name = "touch {{ TARGET }}/a"
depends_on = []

[b]
type = "Command"
command_name = "touch {{ TARGET }}/b && echo {{ TOKEN }} > {{ TARGET }}/token"
prompt_before = "Touch b in {{ TARGET }}?"
depends_on = []

[c]
type = "Command"
command_name = \"\"\"#!/bin/sh
touch "$1" {{ TARGET | tojson }}/c
\"\"\"
depends_on = []

[d]
type = "Command"
command_name = 'touch "$F"'
env = { F = "{{ TARGET }}/d" }
cwd = "{{ TARGET }}"
interactive = true
depends_on = []

[e]
type = "Command"
command_name = "touch {{ TARGET }}/e"
depends_on = ["a:failure"]

[f]
type = "Function"
plugin = "spy"
function = "write"
function_params = { path = "{{ TARGET }}/f" }
depends_on = []

[g]
type = "Function"
plugin = "python"
function = "sleep"
function_params = { seconds = 600 }
depends_on = []

[h]
type = "Function"
plugin = "spy"
function = "double"
function_params = { x = "21" }
depends_on = []
"""

TOUCHING_SCENARIOS = """\
[defaults]
vars = {{ TARGET = "{target}", TOKEN = "s3cret-t0ken" }}

[[scenario]]
name = "every step"
answers.b = "approve"

[scenario.expect]
status = "succeeded"
ran = ["a", "b", "c", "d", "f", "g", "h"]
skipped = ["e"]
commands.a = "touch '{target}'/a"
commands.b = {{ pattern = "touch '{target}'/b && echo \\"\\\\$PLAYBOOK_SECRET_1\\" > .*" }}
env.b = {{ PLAYBOOK_SECRET_1 = "s3cret-t0ken" }}
env.d = {{ F = "{target}/d" }}
cwd.d = "{target}"
params.f = {{ path = "{target}/f" }}
outputs.h = {{ output = 42 }}

[[scenario]]
name = "a fails: its failure path runs too"
outcomes.a = 1
answers = {{ a = "follow", b = "approve" }}

[scenario.expect]
ran = ["a", "b", "c", "d", "e", "f", "g", "h"]
"""


def test_rehearsing_never_executes_anything(tmp_path, monkeypatch):
    target = tmp_path / "target"
    target.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PLAYBOOK_DB_PATH", raising=False)
    monkeypatch.chdir(work)
    modules = tmp_path / "modules"
    modules.mkdir()
    write(modules / "spy_plugin.py", SPY_PLUGIN)
    monkeypatch.syspath_prepend(str(modules))
    registry = plugins.Registry(entry_points={"spy": "spy_plugin:SpyPlugin"})
    runbook = write(tmp_path / "touching.playbook.toml", TOUCHING)
    plan = compile_source(source.read(str(runbook)), None, bake=False, registry=registry).plan
    rehearsal = rehearse.Rehearsal(plan, "touching.playbook.toml", registry=registry, runbook_dir=str(tmp_path))
    loaded = rehearse.load_scenarios(None, plan, text=TOUCHING_SCENARIOS.format(target=target), display="touching.scenarios.toml")
    began = time.monotonic()
    results = [rehearsal.run(s) for s in loaded.scenarios]
    rehearsal.close()
    assert all(r.passed for r in results), [rehearse.result_lines(r, loaded.locate, "x") for r in results]
    assert time.monotonic() - began < 10  # python.sleep(600) never ran
    assert list(target.iterdir()) == []  # no command ran, and the unsafe plugin function did not
    import spy_plugin  # type: ignore[import-not-found]

    assert [call[0] for call in spy_plugin.CALLS] == ["initialize", "double", "double"]  # only the safe one
    assert list(home.iterdir()) == [] and list(work.iterdir()) == []  # no state database, nothing else
    # the secret is masked in what the rehearsal reports
    report = json.dumps(results[0].to_json(loaded.locate))
    assert "s3cret-t0ken" not in report


def test_the_command_line_writes_no_state_database(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PLAYBOOK_DB_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, _ = run_main([DEPLOY, "-k", "happy path"], capsys)
    assert code == 0, out
    assert list(home.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_state_path_records_the_rehearsed_runs_for_debugging(tmp_path, capsys):
    database = tmp_path / "debug.db"
    code, out, _ = run_main([DEPLOY, "-k", "prod:", "--state-path", database], capsys)
    assert code == 0, out
    with state.Store(database) as store:
        runs = store.runs()
        assert len(runs) == 5 and {r["status"] for r in runs} == {"succeeded", "failed", "aborted"}
        assert store.get_run(runs[-1]["id"])["software"] == rehearse.SOFTWARE
    with sqlite3.connect(str(database)) as con:
        assert con.execute("SELECT COUNT(*) FROM attempts WHERE node_id = 'rollback' AND status != 'skipped'").fetchone()[0] == 1


def test_a_memory_store_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with state.Store(state.MEMORY) as store:
        run_id = store.create_run("t", None, "h", "{}", {})
        store.lock_run(run_id).release()
        assert store.path == state.MEMORY
    assert list(tmp_path.iterdir()) == []


# -- generate ---------------------------------------------------------------------------------------
def test_generated_scenarios_reread_and_pass(tmp_path, capsys):
    target = tmp_path / "deploy.scenarios.toml"
    code, out, _ = run_main([DEPLOY, "--generate", "-o", target], capsys)
    assert code == 0
    assert out.startswith("wrote %s: 6 scenarios, coverage 100.0%% (22 of 22)" % target)
    text = target.read_text()
    assert text.count("[[scenario]]") == 6
    assert 'name = "happy path (ENVIRONMENT=prod)"' in text
    assert 'outcomes.health_check = 1\nanswers.approve_production = "approve"\nanswers.health_check = "follow"' in text
    code, out, _ = run_main([DEPLOY, "--scenarios", target, "--min-coverage", "100"], capsys)
    assert code == 0, out
    assert out.count("PASS  ") == 6
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(tomlfile.loads(text))) == []
    # it never overwrites
    code, _, err = run_main([DEPLOY, "--generate", "-o", target], capsys)
    assert code == 2 and "exists; nothing was written" in err


def test_generate_keeps_the_count_within_max_scenarios(tmp_path):
    plan, display, _ = rehearse.compile_runbook(str(DEPLOY))
    rehearsal = rehearse.Rehearsal(plan, display)
    results, notes, report = rehearse.generate(plan, rehearsal, max_scenarios=2)
    rehearsal.close()
    assert len(results) == 2
    assert notes[-1] == "stopped at --max-scenarios 2; coverage %.1f%%" % report["percent"]


def test_generate_for_a_wide_runbook_keeps_one_scenario_per_new_path(tmp_path):
    parts = ['[runbook]\ntitle = "wide"\n[root]\ntype = "Command"\ncommand_name = "true"\ndepends_on = []\n']
    for i in range(30):
        parts.append('[s%d]\ntype = "Command"\ncommand_name = "true"\ndepends_on = ["root"]\n' % i)
        parts.append('[h%d]\ntype = "Command"\ncommand_name = "true"\ndepends_on = ["s%d:failure"]\n' % (i, i))
    runbook = write(tmp_path / "wide.playbook.toml", "".join(parts))
    plan, display, _ = rehearse.compile_runbook(str(runbook))
    rehearsal = rehearse.Rehearsal(plan, display)
    results, notes, report = rehearse.generate(plan, rehearsal, max_scenarios=10)
    rehearsal.close()
    assert len(results) == 10  # happy path + 9 failures, then the budget stops it and says so
    assert report["covered"] < report["total"] and "stopped at --max-scenarios 10" in notes[-1]
    # more than 60 steps: after the first, each scenario says what differs from the first
    text = rehearse.generated_toml(plan, display, results, notes, report)
    second = text.split("[[scenario]]")[2]
    assert 'ran = { includes = ["h0"], excludes = [] }' in second and 'steps.s0 = { status = "failed" }' in second
    assert "skipped = " not in second
    loaded = rehearse.load_scenarios(None, plan, text=text, display="wide.scenarios.toml")
    again = rehearse.Rehearsal(plan, display)
    assert all(again.run(s).passed for s in loaded.scenarios)
    again.close()


# -- reports ----------------------------------------------------------------------------------------
PARTIAL = """\
[[scenario]]
name = "dev only"
vars = { ENVIRONMENT = "dev" }

[[scenario]]
name = "dev, the health check fails"
vars = { ENVIRONMENT = "dev" }
outcomes.health_check = 1
answers.health_check = "follow"
"""


def test_coverage_numbers_and_min_coverage(tmp_path, capsys):
    scenarios = write(tmp_path / "partial.toml", PARTIAL)
    coverage_file = tmp_path / "cov.json"
    code, out, _ = run_main([DEPLOY, "--scenarios", scenarios, "--coverage", coverage_file, "--min-coverage", "80"], capsys)
    assert code == 1
    report = json.loads(coverage_file.read_text())
    assert report["steps"] == {"total": 9, "covered": 7, "never": ["security_scan", "approve_production"]}
    assert report["edges"] == {"total": 4, "covered": 4, "never": []}
    assert report["when"]["never"] == [
        "run_tests: when false", "security_scan: when true", "approve_production: when true", "deploy_application: when false",
    ]
    assert report["rejections"] == {"total": 1, "covered": 0, "never": ["approve_production"]}
    assert (report["covered"], report["total"], report["percent"]) == (15, 22, 68.2)
    assert "coverage: 68.2% (15 of 22) over 2 scenarios" in out
    assert "    steps                               7 of 9     never ran: security_scan, approve_production" not in out  # (format below)
    assert re.search(r"^  steps +7 of 9 +never ran: security_scan, approve_production$", out, re.M)
    assert "coverage 68.2% is below --min-coverage 80%" in out
    code, out, _ = run_main([DEPLOY, "--scenarios", scenarios, "--min-coverage", "60"], capsys)
    assert code == 0, out


def test_junit_report_has_one_testcase_per_scenario(tmp_path, capsys):
    scenarios = write(tmp_path / "wrong.toml", WRONG)
    junit = tmp_path / "junit.xml"
    code, _, _ = run_main([DEPLOY, "--scenarios", scenarios, "--junit", junit], capsys)
    assert code == 1
    root = ET.parse(str(junit)).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["a right one", "wrong command"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "2 expectations not met"
    assert "expected: echo deploying myapp-1.4.2.tar.gz to prod" in (failure.text or "")
    properties = {p.get("name"): p.get("value") for p in root.findall("./testsuite/properties/property")}
    assert properties["scenarios_sha256"] == hashlib.sha256(scenarios.read_bytes()).hexdigest()


def test_json_output_and_k(tmp_path, capsys):
    code, out, _ = run_main([DEPLOY, "--json", "-k", "IN CI", "--coverage"], capsys)
    assert code == 0
    document = json.loads(out)
    assert [r["name"] for r in document["results"]] == [
        "prod in CI: no terminal, approved with --approve",
        "prod in CI without an approval: the run waits",
        "dev in CI: the health check fails, the failure path is followed",
    ]
    assert document["results"][1]["status"] == "waiting" and document["results"][1]["exit_code"] == 3
    assert document["coverage"]["scenarios"] == 3 and document["passed"] == 3
    code, _, err = run_main([DEPLOY, "-k", "no such scenario"], capsys)
    assert code == 2 and "no scenario of examples/deploy.scenarios.toml matches -k no such scenario" in err.replace(str(REPO) + "/", "")


def test_usage_errors(tmp_path, capsys):
    assert run_main([DEPLOY, "--min-coverage", "120"], capsys)[0] == 2
    assert run_main([DEPLOY, "--generate", "--junit", "x.xml"], capsys)[0] == 2
    assert run_main([DEPLOY, "--bogus"], capsys)[0] == 2
    code, _, err = run_main([tmp_path / "none.playbook.toml"], capsys)
    assert code == 2 and "cannot read runbook" in err
    lonely = write(tmp_path / "lonely.playbook.toml", '[runbook]\ntitle = "x"\n[a]\ntype = "Command"\ncommand_name = "true"\n')
    code, _, err = run_main([lonely], capsys)
    assert code == 2 and "lonely.scenarios.toml does not exist" in err and "--generate" in err
    assert rehearse.main(["--help"]) == 0


# -- secrets and approval policies ------------------------------------------------------------------
POLICY = """\
[runbook]
title = "four eyes"

[variables]
TOKEN = { required = true, secret = true }

[change]
type = "Manual"
prompt_after = "Change with token {{ TOKEN }}?"
approvers = ["alice", "bob", "carol"]
approvals = 2
depends_on = []

[apply]
type = "Command"
command_name = "apply --token {{ TOKEN }}"
"""


def test_policies_secrets_and_out_of_band_approvals(tmp_path):
    runbook = write(tmp_path / "policy.playbook.toml", POLICY)
    text = """\
[defaults]
vars = { TOKEN = "hunter2" }

[[scenario]]
name = "alice at the terminal, bob out of band"
who = "alice"
approved_by.change = ["bob"]
answers.change = "approve"

[scenario.expect]
status = "succeeded"
questions.change = "Change with token ***?"
commands.apply = 'apply --token "$PLAYBOOK_SECRET_1"'
env.apply = { PLAYBOOK_SECRET_1 = "hunter2" }

[[scenario]]
name = "alice alone: the run waits for a second person"
who = "alice"
answers.change = "approve"

[scenario.expect]
status = "waiting"
approvals = [{ step = "change", decision = "approved" }, { step = "change", decision = "waiting" }]

[[scenario]]
name = "mallory is no approver: nobody asks her"
who = "mallory"

[scenario.expect]
status = "waiting"
env.apply = { PLAYBOOK_SECRET_1 = "wrong" }
"""
    suite = rehearse_text(runbook, text, tmp_path)
    assert [r.passed for r in suite.results] == [True, True, False]
    lines = "\n".join(rehearse.result_lines(suite.results[2], suite.scenarios.locate, "s"))
    assert "hunter2" not in lines and "apply never ran" in lines
    # --generate meets the policy: an approver at the terminal, the others out of band
    generated = tmp_path / "generated.toml"
    assert rehearse.main([str(runbook), "--generate", "-o", str(generated)]) == 0
    text = generated.read_text()
    assert 'vars = { TOKEN = "stand-in-token" }\nwho = "alice"\napproved_by.change = ["bob"]\nanswers.change = "approve"' in text
    assert 'apply = "apply --token \\"$PLAYBOOK_SECRET_1\\""' in text
    assert rehearse.rehearse(str(runbook), str(generated)).failed == 0


def test_rehearse_safe_is_declared_by_the_function():
    signatures = plugins.PythonPlugin().get_metadata().functions
    assert {name: sig.rehearse_safe for name, sig in signatures.items()} == {"notify": True, "sleep": False, "throw": True}
    assert plugins.FunctionSignature(name="x").rehearse_safe is False


def test_schema_accepts_the_example_and_refuses_mistakes():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    example = tomlfile.plain(tomlfile.loads(DEPLOY_SCENARIOS.read_text()))
    assert list(validator.iter_errors(example)) == []
    assert list(validator.iter_errors({"scenario": [{"name": "x", "answers": {"a": "aprove"}}]}))
    assert list(validator.iter_errors({"scenario": [{"name": "x", "colour": 1}]}))
    assert list(validator.iter_errors({"scenario": [{"name": "x", "expect": {"status": "done"}}]}))


# -- compile --test: a bundle that says it was rehearsed ------------------------------------------
def test_compile_test_records_the_rehearsal_in_the_manifest_and_inspect_shows_it(tmp_path, playbook):
    bundle = tmp_path / "deploy.pyz"
    r = playbook("compile", DEPLOY, "--test", "-o", bundle, "--no-bytecode", "--json")
    assert r.returncode == 0, r.text
    digest = hashlib.sha256(DEPLOY_SCENARIOS.read_bytes()).hexdigest()
    rehearsal = json.loads(r.stdout)["manifest"]["rehearsal"]
    assert rehearsal == {"scenarios_file": "deploy.scenarios.toml", "scenarios_sha256": digest, "passed": 12}
    shown = playbook("inspect", exe=bundle)
    assert shown.returncode == 0, shown.text
    assert "  rehearsed:    12 scenarios passed before the build (deploy.scenarios.toml, sha256 %s)" % digest in shown.stdout


def test_compile_without_test_says_the_bundle_was_not_rehearsed(tmp_path, playbook):
    bundle = tmp_path / "deploy.pyz"
    assert playbook("compile", DEPLOY, "-o", bundle, "--no-bytecode").returncode == 0
    shown = playbook("inspect", exe=bundle)
    assert "  rehearsed:    no (built without --test)" in shown.stdout, shown.text


def test_compile_test_with_a_failing_scenario_writes_nothing_and_shows_the_diff(tmp_path, playbook):
    scenarios = tmp_path / "wrong.scenarios.toml"
    text = DEPLOY_SCENARIOS.read_text("utf-8").replace(
        'commands.rollback = "echo rolling back myapp in prod', 'commands.rollback = "echo rolling back yourapp in prod', 1)
    assert "yourapp" in text
    scenarios.write_text(text, "utf-8")
    bundle = tmp_path / "deploy.pyz"
    r = playbook("compile", DEPLOY, "--test", "--scenarios", scenarios, "-o", bundle, "--no-bytecode")
    assert r.returncode == 1, r.text
    assert "FAIL  prod: the health check fails, the rollback runs" in r.stderr
    assert "yourapp" in r.stderr and "myapp in prod" in r.stderr  # the expected and the actual command
    assert "1 of 12 scenarios failed" in r.stderr and "nothing was written" in r.stderr
    assert not bundle.exists()


def test_compile_scenarios_goes_with_test(tmp_path, playbook):
    r = playbook("compile", DEPLOY, "--scenarios", DEPLOY_SCENARIOS, "-o", tmp_path / "d.pyz")
    assert r.returncode == 2 and "--scenarios goes with --test" in r.stderr, r.text
    assert not (tmp_path / "d.pyz").exists()


def test_compile_test_without_a_scenarios_file_is_invalid_input(tmp_path, playbook):
    runbook = tmp_path / "lone.playbook.toml"
    runbook.write_text(DEPLOY.read_text("utf-8"), "utf-8")
    r = playbook("compile", runbook, "--test", "-o", tmp_path / "d.pyz", "--no-bytecode")
    assert r.returncode == 2, r.text
    assert "lone.scenarios.toml" in r.stderr
    assert not (tmp_path / "d.pyz").exists()
