"""The runtime without a terminal: real `playbook` processes, stdin /dev/null, real SQLite files.

the README's Runbooks section is the contract: dependencies, skip reasons, failures handled or not,
approvals needing --auto-approve, resume, exit codes, secrets, output as plain text.
"""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import (
    EXAMPLES,
    attempts,
    compat,
    counts,
    db_bytes,
    events,
    final,
    json_lines,
    pb,
    run_row,
    runs,
    status_of,
    write_runbook,
)

from playbook.runtime.state import whoami

DEPLOY = EXAMPLES / "deploy.playbook.toml"


# -- the deployment example -----------------------------------------------------------------------
def test_deploy_example_succeeds_with_auto_approve(tmp_path):
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", DEPLOY, "--var", "ENVIRONMENT=prod", "--auto-approve", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "Traceback" not in r.text
    run = run_row(dbp)
    assert run["status"] == "succeeded"
    assert run["exit_code"] == 0
    st = status_of(dbp)
    for node in ("build_app", "run_tests", "security_scan", "approve_production", "deploy_application",
                 "health_check", "notify_success"):
        assert st[node] == "succeeded", (node, st)
    assert st["rollback"] == "skipped"
    assert st["notify_failure"] == "skipped"
    approval = final(dbp)["approve_production"]
    assert approval["decision"] == "auto-approved"
    assert approval["decided_by"] == whoami()  # the operator who gave --auto-approve


def test_deploy_example_broken_health_check_takes_rollback_branch(tmp_path):
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", DEPLOY, "--var", "ENVIRONMENT=prod", "--var", "BREAK_HEALTH_CHECK=true",
           "--auto-approve", "--state-path", dbp)
    assert r.returncode == 1, r.text
    assert "Traceback" not in r.text
    run = run_row(dbp)
    assert run["status"] == "failed"
    rows = final(dbp)
    assert rows["health_check"]["status"] == "failed"
    assert rows["rollback"]["status"] == "succeeded"
    assert rows["notify_failure"]["status"] == "succeeded"
    assert rows["notify_success"]["status"] == "skipped"
    assert "previous version restored" in rows["rollback"]["stdout"]


# -- the 1.x corpus -------------------------------------------------------------------------------
def _stubs(tmp_path, fail_make_target):
    """`make` and `cleanup.sh` stubs on PATH that log their arguments; make fails for one target."""
    bindir = tmp_path / "stubs"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    (bindir / "make").write_text(
        "#!/bin/sh\necho \"make $*\" >> '%s'\necho \"make $*\"\n"
        "if [ \"$1\" = '%s' ]; then echo 'make: *** [%s] Error 2' >&2; exit 2; fi\nexit 0\n"
        % (log, fail_make_target, fail_make_target)
    )
    (bindir / "cleanup.sh").write_text("#!/bin/sh\necho \"cleanup.sh $*\" >> '%s'\necho cleaned $*\n" % log)
    for f in bindir.iterdir():
        f.chmod(0o755)
    return bindir, log


def test_compat_conditional_dependencies_takes_rollback_branch(tmp_path):
    source = compat("conditional_dependencies.playbook.toml")
    bindir, log = _stubs(tmp_path, "deploy")
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", source, "--auto-approve", "--state-path", dbp, path_first=bindir)
    assert "Traceback" not in r.text
    st = status_of(dbp)
    assert st["build"] == "succeeded" and st["test"] == "succeeded", st
    assert st["deploy"] == "failed", st
    assert st["rollback"] == "succeeded", st
    assert st["cleanup_failure"] == "succeeded", st
    assert st["cleanup_success"] == "skipped", st
    calls = log.read_text().splitlines()
    assert "make rollback" in calls
    assert "cleanup.sh --mode=failure" in calls
    assert "cleanup.sh --mode=success" not in calls
    # deploy ended failed: the run is failed (exit 1), but every step reached its end
    assert st["notify"] == "succeeded", st
    assert r.returncode == 1, r.text
    assert run_row(dbp)["status"] == "failed"


SEED_EXAMPLE = Path(__file__).resolve().parent / "fixtures" / "good" / "seed_complete_example.playbook.toml"


def _seed_stubs(tmp_path, curl_fails):
    """npm, deploy.sh, rollback.sh and curl stubs that log their arguments; curl may fail."""
    bindir = tmp_path / "stubs"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    for name in ("npm", "deploy.sh", "rollback.sh", "curl"):
        fail = "exit 22" if (name == "curl" and curl_fails) else "exit 0"
        (bindir / name).write_text("#!/bin/sh\necho \"%s $*\" >> '%s'\n%s\n" % (name, log, fail))
        (bindir / name).chmod(0o755)
    return bindir, log


@pytest.mark.parametrize("curl_fails", [False, True])
def test_seed_complete_example_takes_its_rollback_branch_when_the_health_check_fails(tmp_path, curl_fails):
    bindir, log = _seed_stubs(tmp_path, curl_fails)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", SEED_EXAMPLE, "--var", "ENVIRONMENT=staging", "--state-path", dbp, path_first=bindir)
    assert "Traceback" not in r.text
    st = status_of(dbp)
    assert st["build_app"] == st["run_tests"] == st["deploy_application"] == "succeeded", st
    assert st["security_scan"] == "skipped", st  # staging: the scan is for prod only
    calls = log.read_text().splitlines()
    if curl_fails:
        assert st["health_check"] == "failed"
        assert st["rollback_on_failure"] == "succeeded" and "rollback.sh staging" in calls
        assert st["notify_failure"] == "succeeded" and st["notify_success"] == "skipped", st
        assert r.returncode == 1, r.text
    else:
        assert st["health_check"] == "succeeded" and st["notify_success"] == "succeeded", st
        assert st["rollback_on_failure"] == "skipped" and not any(c.startswith("rollback.sh") for c in calls)
        assert r.returncode == 0, r.text


def test_compat_conditional_dependencies_all_succeed(tmp_path):
    source = compat("conditional_dependencies.playbook.toml")
    bindir, log = _stubs(tmp_path, "nothing-fails")
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", source, "--auto-approve", "--state-path", dbp, path_first=bindir)
    assert r.returncode == 0, r.text
    st = status_of(dbp)
    assert st == {
        "build": "succeeded",
        "test": "succeeded",
        "deploy": "succeeded",
        "rollback": "skipped",
        "cleanup_success": "succeeded",
        "cleanup_failure": "skipped",
        "notify": "succeeded",
    }


def test_probe_skipfail_without_terminal_follows_failure_path(tmp_path):
    source = compat("probes/probe-skipfail.playbook.toml")
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", source, "--state-path", dbp)
    assert "Traceback" not in r.text
    rows = final(dbp)
    assert rows["deploy"]["status"] == "failed"
    assert rows["deploy"]["exit_code"] == 3
    assert rows["deploy"]["decision"] == "follow-failure"
    assert rows["on_fail"]["status"] == "succeeded"
    assert rows["on_ok"]["status"] == "skipped"
    assert rows["plain"]["status"] == "skipped"
    assert "upstream deploy failed" in rows["plain"]["skip_reason"]
    # probe_when has a `when`: it takes over (deploy failed, so is_skipped('deploy') is false)
    assert rows["probe_when"]["status"] == "skipped"
    assert "upstream" not in rows["probe_when"]["skip_reason"]
    assert "condition" in rows["probe_when"]["skip_reason"]
    assert r.returncode == 1
    assert run_row(dbp)["status"] == "failed"


def test_probe_misc_skip_alternatives_quoting_and_timeout(tmp_path):
    source = compat("probes/probe-misc.playbook.toml")
    dbp = tmp_path / "state.db"
    started = time.monotonic()
    r = pb(tmp_path, "run", source, "--state-path", dbp)
    elapsed = time.monotonic() - started
    assert "Traceback" not in r.text
    rows = final(dbp)
    assert rows["a"]["status"] == "skipped"
    assert "disabled" in rows["a"]["skip_reason"]
    assert rows["b"]["status"] == "succeeded"  # implicit dependency on a skipped node is satisfied
    assert rows["c"]["status"] == "succeeded"  # conditional entries are alternatives: b:success holds
    assert rows["d"]["status"] == "succeeded"
    assert rows["e"]["status"] == "succeeded"
    # the shell expands, quoting rules intact: nothing inside single quotes is expanded
    assert rows["e"]["stdout"].strip() == "e: $HOME ~ ${NOPE_UNSET} $$"
    assert rows["t"]["status"] == "failed"
    assert "timed out" in (rows["t"]["error"] or "")
    assert elapsed < 4.5, "sleep 5 with timeout 1 must be stopped early (took %.1fs)" % elapsed
    assert r.returncode == 1


def test_probe_markup_output_does_not_crash(tmp_path):
    source = compat("probes/probe-markup.playbook.toml")
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", source, "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "a [/] b" in r.out
    assert final(dbp)["a"]["stdout"] == "a [/] b\n"


# -- approvals ------------------------------------------------------------------------------------
MANUAL = """
[prep]
type = "Command"
command_name = "echo prep >> side.log"

[gate]
type = "Manual"
description = "Check the dashboards."
prompt_after = "Proceed with the change?"

[after]
type = "Command"
command_name = "echo after >> side.log"
"""


def test_manual_node_without_auto_approve_stops_then_resume_with_auto_approve(tmp_path):
    rb = write_runbook(tmp_path, MANUAL)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 3, r.text
    assert "--auto-approve" in r.text
    assert "resume" in r.text
    run = run_row(dbp)
    assert run["status"] == "waiting"  # for an approval: `approve`, --approve or --auto-approve
    assert run["exit_code"] == 3
    assert "approve with: playbook approve 1 gate --state-path %s" % dbp in r.text
    assert "after" not in counts(dbp)
    assert (tmp_path / "side.log").read_text().splitlines() == ["prep"]

    r2 = pb(tmp_path, "resume", rb, str(run["id"]), "--auto-approve", "--state-path", dbp)
    assert r2.returncode == 0, r2.text
    assert run_row(dbp, run["id"])["status"] == "succeeded"
    assert run_row(dbp, run["id"])["trigger"] == "resume"
    rows = final(dbp, run["id"])
    assert rows["gate"]["status"] == "succeeded"
    assert rows["gate"]["decision"] == "auto-approved"
    assert (tmp_path / "side.log").read_text().splitlines() == ["prep", "after"]
    assert counts(dbp, run["id"])["prep"] == 1
    assert len(runs(dbp)) == 1


def test_prompt_after_on_command_needs_auto_approve_without_terminal(tmp_path):
    rb = write_runbook(tmp_path, """
        [apply]
        type = "Command"
        command_name = "echo applied >> side.log"
        prompt_after = "Does the change look right?"

        [next]
        type = "Command"
        command_name = "echo next"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 3, r.text
    assert "--auto-approve" in r.text
    assert run_row(dbp)["status"] == "waiting"
    assert "next" not in counts(dbp)
    r2 = pb(tmp_path, "run", rb, "--auto-approve", "--state-path", dbp)
    assert r2.returncode == 0, r2.text
    assert final(dbp)["apply"]["decision"] == "auto-approved"


def test_missing_command_approval_resumes_with_auto_approve(tmp_path):
    rb = write_runbook(tmp_path, """
        [apply]
        type = "Command"
        command_name = "echo applied >> side.log"
        prompt_after = "Does the change look right?"

        [next]
        type = "Command"
        command_name = "echo next >> side.log"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 3, r.text
    assert "--auto-approve" in r.text
    r2 = pb(tmp_path, "resume", rb, "--auto-approve", "--state-path", dbp)
    assert r2.returncode == 0, r2.text
    assert run_row(dbp)["status"] == "succeeded"
    assert final(dbp)["next"]["status"] == "succeeded"
    assert (tmp_path / "side.log").read_text().splitlines()[-1] == "next"


# -- failures and resume --------------------------------------------------------------------------
FLAKY = """
[first]
type = "Command"
command_name = "echo first >> side.log"

[flaky]
type = "Command"
command_name = "echo flaky >> side.log; test -f flag || { echo 'no flag' >&2; exit 1; }"

[last]
type = "Command"
command_name = "echo last >> side.log"
"""


def test_unhandled_failure_stops_run_and_resume_continues(tmp_path):
    rb = write_runbook(tmp_path, FLAKY)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    assert "resume" in r.text
    run = run_row(dbp)
    assert run["status"] == "failed"
    assert counts(dbp) == {"first": 1, "flaky": 1}  # `last` never ran
    assert final(dbp)["flaky"]["status"] == "failed"
    assert "no flag" in final(dbp)["flaky"]["stderr"]

    (tmp_path / "flag").write_text("")
    r2 = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r2.returncode == 0, r2.text
    assert run_row(dbp, run["id"])["status"] == "succeeded"
    assert counts(dbp, run["id"]) == {"first": 1, "flaky": 2, "last": 1}
    assert [a["status"] for a in attempts(dbp, run["id"], "flaky")] == ["failed", "succeeded"]
    assert [a["attempt"] for a in attempts(dbp, run["id"], "flaky")] == [1, 2]
    assert (tmp_path / "side.log").read_text().splitlines() == ["first", "flaky", "flaky", "last"]
    assert len(runs(dbp)) == 1


def test_resume_without_id_picks_latest_resumable_run(tmp_path):
    rb = write_runbook(tmp_path, FLAKY)
    other = write_runbook(tmp_path, """
        [x]
        type = "Command"
        command_name = "exit 1"
    """, name="other.playbook.toml", title="other")
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1  # run 1
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1  # run 2
    assert pb(tmp_path, "run", other, "--state-path", dbp).returncode == 1  # run 3: another runbook
    (tmp_path / "flag").write_text("")
    r = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "run 2" in r.out
    statuses = {row["id"]: row["status"] for row in runs(dbp)}
    assert statuses == {1: "failed", 2: "succeeded", 3: "failed"}
    assert "last" not in counts(dbp, 1)


def test_resume_of_a_succeeded_run_is_refused(tmp_path):
    rb = write_runbook(tmp_path, FLAKY)
    (tmp_path / "flag").write_text("")
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 0
    before = counts(dbp)
    r = pb(tmp_path, "resume", rb, "1", "--state-path", dbp)
    assert r.returncode not in (0, 1), r.text
    assert "succeeded" in r.err
    assert "Traceback" not in r.text
    assert counts(dbp) == before
    assert run_row(dbp, 1)["status"] == "succeeded"


def test_resume_refuses_a_changed_runbook_unless_forced(tmp_path):
    rb = write_runbook(tmp_path, FLAKY)
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1
    rb.write_text(rb.read_text().replace("echo last >> side.log", "echo CHANGED >> side.log"))
    (tmp_path / "flag").write_text("")
    r = pb(tmp_path, "resume", rb, "1", "--state-path", dbp)
    assert r.returncode == 2, r.text
    assert "changed" in r.err and "--force" in r.err
    assert counts(dbp, 1) == {"first": 1, "flaky": 1}
    assert run_row(dbp, 1)["status"] == "failed"

    r2 = pb(tmp_path, "resume", rb, "1", "--force", "--state-path", dbp)
    assert r2.returncode == 0, r2.text
    # --force continues the recorded plan: the command as it was when the run started
    assert (tmp_path / "side.log").read_text().splitlines() == ["first", "flaky", "flaky", "last"]


RESUME_VARS = """
[variables]
NAME = { default = "alpha" }
TOKEN = { required = true, secret = true }

[show]
type = "Command"
command_name = "echo name={{ NAME }} >> side.log"

[gate]
type = "Command"
command_name = "test -f flag"

[use]
type = "Command"
command_name = "test $(printf %s {{ TOKEN }} | wc -c) -eq 10 && echo token-ok >> side.log"
"""


def test_resume_refuses_changing_a_used_variable(tmp_path):
    rb = write_runbook(tmp_path, RESUME_VARS)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--var", "NAME=beta", "--var", "TOKEN=s3cr3t-tok", "--state-path", dbp)
    assert r.returncode == 1, r.text
    (tmp_path / "flag").write_text("")
    r2 = pb(tmp_path, "resume", rb, "1", "--var", "NAME=gamma", "--var", "TOKEN=s3cr3t-tok", "--state-path", dbp)
    assert r2.returncode == 2, r2.text
    assert "NAME" in r2.err
    assert "Traceback" not in r2.text
    assert counts(dbp, 1) == {"show": 1, "gate": 1}


def test_resume_accepts_a_missing_value(tmp_path):
    """A secret is never stored: on resume it is missing and may (must) be given again."""
    rb = write_runbook(tmp_path, RESUME_VARS)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--var", "NAME=beta", "--var", "TOKEN=s3cr3t-tok", "--state-path", dbp)
    assert r.returncode == 1, r.text
    (tmp_path / "flag").write_text("")
    r2 = pb(tmp_path, "resume", rb, "1", "--var", "TOKEN=s3cr3t-tok", "--state-path", dbp)
    assert r2.returncode == 0, r2.text
    assert (tmp_path / "side.log").read_text().splitlines() == ["name=beta", "token-ok"]
    assert b"s3cr3t-tok" not in db_bytes(dbp)


def test_resume_accepts_the_same_value_again(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        COUNT = { default = 1, type = "int" }

        [a]
        type = "Command"
        command_name = "echo count={{ COUNT }}"

        [gate]
        type = "Command"
        command_name = "test -f flag"
    """)
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--var", "COUNT=5", "--state-path", dbp).returncode == 1
    (tmp_path / "flag").write_text("")
    r = pb(tmp_path, "resume", rb, "1", "--var", "COUNT=5", "--state-path", dbp)
    assert r.returncode == 0, r.text


# -- retries, skips, conditions -------------------------------------------------------------------
def test_automatic_retries_until_success(tmp_path):
    rb = write_runbook(tmp_path, """
        [third_time]
        type = "Command"
        command_name = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo try $n; test $n -ge 3"
        retries = 2
        retry_delay = 0.3
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 0, r.text
    rows = attempts(dbp, node="third_time")
    assert [a["status"] for a in rows] == ["failed", "failed", "succeeded"]
    assert [a["attempt"] for a in rows] == [1, 2, 3]
    assert (tmp_path / "count").read_text().strip() == "3"
    starts = [_seconds(a["started_at"]) for a in rows]
    ends = [_seconds(a["ended_at"]) for a in rows]
    for i in (1, 2):
        assert starts[i] - ends[i - 1] >= 0.25, "retry_delay = 0.3 was not waited (%s)" % rows


def _seconds(iso):
    from datetime import datetime

    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def test_automatic_retries_exhausted_fail_the_run(tmp_path):
    rb = write_runbook(tmp_path, """
        [never]
        type = "Command"
        command_name = "echo x >> tries; exit 4"
        retries = 1

        [after]
        type = "Command"
        command_name = "echo after"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    assert [a["exit_code"] for a in attempts(dbp, node="never")] == [4, 4]
    assert "after" not in counts(dbp)


def test_skip_true_is_skipped_disabled(tmp_path):
    rb = write_runbook(tmp_path, """
        [off]
        type = "Command"
        command_name = "echo off >> side.log"
        skip = true

        [on]
        type = "Command"
        command_name = "echo on >> side.log"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 0, r.text
    rows = final(dbp)
    assert rows["off"]["status"] == "skipped"
    assert "disabled" in rows["off"]["skip_reason"]
    assert rows["on"]["status"] == "succeeded"
    assert (tmp_path / "side.log").read_text().splitlines() == ["on"]


def test_when_false_is_skipped_with_reason(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        ENV = { default = "dev" }

        [first]
        type = "Command"
        command_name = "echo first"

        [prod_only]
        type = "Command"
        command_name = "echo prod >> side.log"
        when = "{{ ENV == 'prod' and has_succeeded('first') }}"

        [always]
        type = "Command"
        command_name = "echo always"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 0, r.text
    rows = final(dbp)
    assert rows["prod_only"]["status"] == "skipped"
    assert "condition" in rows["prod_only"]["skip_reason"]
    assert "ENV == 'prod'" in rows["prod_only"]["skip_reason"]
    assert rows["always"]["status"] == "succeeded"
    assert not (tmp_path / "side.log").exists()
    r2 = pb(tmp_path, "run", rb, "--var", "ENV=prod", "--state-path", dbp)
    assert r2.returncode == 0
    assert final(dbp)["prod_only"]["status"] == "succeeded"


def test_when_error_fails_closed(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        N = { default = "abc" }

        [odd]
        type = "Command"
        command_name = "echo ran >> side.log"
        when = "{{ N > 3 }}"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert "Traceback" not in r.text
    row = final(dbp)["odd"]
    assert row["status"] == "skipped"
    assert "could not be evaluated" in row["skip_reason"]
    assert not (tmp_path / "side.log").exists()


HANDLED = """
[x]
type = "Command"
command_name = "echo x; {cmd}"

[on_fail]
type = "Command"
command_name = "echo on_fail >> side.log"
depends_on = ["x:failure"]

[plain]
type = "Command"
command_name = "echo plain >> side.log"
depends_on = ["x"]

[after_done]
type = "Command"
command_name = "echo done >> side.log"
depends_on = ["x:done"]
"""


def test_plain_dependency_on_failed_handled_node_is_skipped_upstream(tmp_path):
    rb = write_runbook(tmp_path, HANDLED.format(cmd="exit 1"))
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    rows = final(dbp)
    assert rows["x"]["status"] == "failed"
    assert rows["on_fail"]["status"] == "succeeded"
    assert rows["plain"]["status"] == "skipped"
    assert rows["plain"]["skip_reason"] == "upstream x failed"
    assert rows["after_done"]["status"] == "succeeded"
    assert sorted((tmp_path / "side.log").read_text().splitlines()) == ["done", "on_fail"]


def test_done_entry_runs_after_success_too(tmp_path):
    rb = write_runbook(tmp_path, HANDLED.format(cmd="true"))
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 0, r.text
    rows = final(dbp)
    assert rows["on_fail"]["status"] == "skipped"
    assert rows["plain"]["status"] == "succeeded"
    assert rows["after_done"]["status"] == "succeeded"


def test_when_has_failed_makes_a_failure_handled(tmp_path):
    rb = write_runbook(tmp_path, """
        [x]
        type = "Command"
        command_name = "exit 1"

        [cleanup]
        type = "Command"
        command_name = "echo cleanup >> side.log"
        depends_on = ["x"]
        when = "{{ has_failed('x') }}"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    rows = final(dbp)
    assert rows["x"]["decision"] == "follow-failure"
    assert rows["cleanup"]["status"] == "succeeded"


def test_critical_node_failing_without_terminal_stops_run_failed(tmp_path):
    rb = write_runbook(tmp_path, """
        [boom]
        type = "Command"
        command_name = "exit 2"
        critical = true

        [after]
        type = "Command"
        command_name = "echo after >> side.log"
        depends_on = []
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    assert run_row(dbp)["status"] == "failed"
    assert final(dbp)["boom"]["status"] == "failed"
    assert "after" not in counts(dbp)
    assert not (tmp_path / "side.log").exists()


def test_critical_node_with_failure_path_follows_it_without_terminal(tmp_path):
    rb = write_runbook(tmp_path, """
        [boom]
        type = "Command"
        command_name = "exit 2"
        critical = true

        [rollback]
        type = "Command"
        command_name = "echo rollback >> side.log"
        depends_on = ["boom:failure"]

        [after]
        type = "Command"
        command_name = "echo after >> side.log"
        depends_on = ["boom"]
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    rows = final(dbp)
    assert rows["boom"]["decision"] == "follow-failure"
    assert rows["rollback"]["status"] == "succeeded"
    assert rows["after"]["status"] == "skipped"
    assert run_row(dbp)["status"] == "failed"
    assert (tmp_path / "side.log").read_text().splitlines() == ["rollback"]


# -- exit codes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, args, code",
    [
        ('[a]\ntype = "Command"\ncommand_name = "true"\n', [], 0),
        ('[a]\ntype = "Command"\ncommand_name = "false"\n', [], 1),
        ('[a]\ntype = "Command"\ncommand_name = "true"\nbogus_key = 1\n', [], 2),
        ('[variables]\nE = { choices = ["a", "b"], default = "a" }\n[a]\ntype = "Command"\ncommand_name = "true"\n',
         ["--var", "E=zzz"], 2),
        ('[variables]\nE = { required = true }\n[a]\ntype = "Command"\ncommand_name = "true"\n', [], 2),
        ('[a]\ntype = "Manual"\ndescription = "look"\n', [], 3),
    ],
    ids=["succeeded", "failed", "invalid-runbook", "invalid-variable", "missing-variable", "waiting"],
)
def test_exit_codes(tmp_path, body, args, code):
    rb = write_runbook(tmp_path, body)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp, *args)
    assert r.returncode == code, r.text
    assert "Traceback" not in r.text
    if code == 2:
        assert r.err.strip(), "invalid input must be explained on stderr"
        assert not dbp.exists() or not runs(dbp), "nothing runs for invalid input"
    if code == 3:
        assert run_row(dbp)["status"] == "waiting"


def test_missing_variable_without_terminal_lists_it(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        TARGET_HOST = { required = true, description = "where" }
        REGION = { required = true }

        [a]
        type = "Command"
        command_name = "echo {{ TARGET_HOST }} {{ REGION }}"
    """)
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db")
    assert r.returncode == 2
    assert "TARGET_HOST" in r.err and "REGION" in r.err


# -- machine output -------------------------------------------------------------------------------
def test_json_events_one_object_per_line(tmp_path):
    rb = write_runbook(tmp_path, """
        [a]
        type = "Command"
        command_name = "echo hello; echo warn >&2"

        [b]
        type = "Function"
        plugin = "python"
        function = "notify"
        function_params = { message = "hi" }

        [c]
        type = "Command"
        command_name = "exit 5"

        [d]
        type = "Command"
        command_name = "echo never"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--json", "--state-path", dbp)
    assert r.returncode == 1, r.text
    objs = json_lines(r.out)
    kinds = [o.get("event") for o in objs]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "run_finished"
    for kind in ("node_started", "node_finished"):
        assert kind in kinds
    started = [o["node"] for o in objs if o["event"] == "node_started"]
    assert started == ["a", "b", "c"]
    finished = {o["node"]: o for o in objs if o["event"] == "node_finished"}
    assert finished["a"]["status"] == "succeeded"
    assert finished["c"]["status"] == "failed"
    for o in finished.values():
        assert o["attempt"] == 1
        assert isinstance(o["duration"], (int, float))
    end = objs[-1]
    assert end["status"] == "failed"
    assert end["exit_code"] == 1
    assert end["run_id"] == objs[0]["run_id"] == run_row(dbp)["id"]


# -- secrets and odd output -----------------------------------------------------------------------
SECRET = "s3cr3t-Pa55-0xC0FFEE"

SECRET_RUNBOOK = """
[variables]
API_TOKEN = { required = true, secret = true, description = "token" }
USER_NAME = { default = "ops" }

[echo_it]
type = "Command"
command_name = "echo token={{ API_TOKEN }}; echo stderr {{ API_TOKEN }} >&2; echo user={{ USER_NAME }}"

[fail_with_it]
type = "Command"
command_name = "echo failing with {{ API_TOKEN }} >&2; exit 1"
depends_on = []

[after_fail]
type = "Command"
command_name = "echo handled"
depends_on = ["fail_with_it:failure"]
"""


def test_secret_never_in_output_or_database(tmp_path):
    rb = write_runbook(tmp_path, SECRET_RUNBOOK)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--var", "API_TOKEN=" + SECRET, "--state-path", dbp)
    assert r.returncode == 1, r.text
    assert SECRET not in r.text
    assert "token=***" in r.out  # the command did run with it and its output was masked
    assert final(dbp)["echo_it"]["status"] == "succeeded"
    assert SECRET.encode() not in db_bytes(dbp)
    r2 = pb(tmp_path, "run", rb, "--json", "--var", "API_TOKEN=" + SECRET, "--state-path", dbp)
    assert SECRET not in r2.text
    json_lines(r2.out)
    show = pb(tmp_path, "show", "--last", "--output", "--state-path", dbp)
    assert show.returncode == 0
    assert SECRET not in show.text
    assert SECRET.encode() not in db_bytes(dbp)


def test_secret_in_function_output_not_in_database(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        API_TOKEN = { required = true, secret = true }

        [tell]
        type = "Function"
        plugin = "python"
        function = "notify"
        function_params = { message = "token is {{ API_TOKEN }}" }
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--var", "API_TOKEN=" + SECRET, "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert SECRET not in r.text
    assert SECRET.encode() not in db_bytes(dbp)


def test_secret_split_across_output_chunks_is_masked(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        API_TOKEN = { required = true, secret = true }

        [slow_print]
        type = "Command"
        command_name = "printf %s {{ API_TOKEN }} | head -c 8; sleep 0.3; printf %s {{ API_TOKEN }} | tail -c +9; echo"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--var", "API_TOKEN=" + SECRET, "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert SECRET.encode() not in db_bytes(dbp)
    assert SECRET not in r.text
    r2 = pb(tmp_path, "run", rb, "--json", "--var", "API_TOKEN=" + SECRET, "--state-path", dbp)
    assert SECRET not in "".join(o.get("text", "") for o in json_lines(r2.out))


def test_odd_output_is_plain_text_and_stored(tmp_path):
    rb = write_runbook(tmp_path, r"""
        [odd]
        type = "Command"
        command_name = '''printf 'a [/] b [bold]x[/bold]\n\033[31mred\033[0m\nbad \377\376 bytes\n'; printf '[/]\377\n' >&2'''

        [after]
        type = "Command"
        command_name = "echo after"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "Traceback" not in r.text
    assert "a [/] b [bold]x[/bold]" in r.out
    row = final(dbp)["odd"]
    assert row["status"] == "succeeded"
    assert "a [/] b [bold]x[/bold]" in row["stdout"]
    assert "\x1b[31mred" in row["stdout"]
    assert "bad \ufffd\ufffd bytes" in row["stdout"]
    assert "[/]\ufffd" in row["stderr"]
    assert final(dbp)["after"]["status"] == "succeeded"


def test_output_tail_is_capped_and_marked_truncated(tmp_path):
    rb = write_runbook(tmp_path, """
        [big]
        type = "Command"
        command_name = "i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"
    """)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--no-output", "--state-path", dbp)
    assert r.returncode == 0, r.text
    row = final(dbp)["big"]
    assert len(row["stdout"].encode()) <= 64 * 1024
    assert row["stdout_truncated"] == 1
    assert row["stdout"].rstrip().endswith("line-2999-" + "x" * 42)
    assert "line-0-" not in row["stdout"]


# -- timeouts and parallelism ---------------------------------------------------------------------
def test_timeout_kills_command_and_grandchild(tmp_path):
    rb = write_runbook(tmp_path, """
        [slow]
        type = "Command"
        command_name = "sleep 300 & echo $! > bg.pid; sleep 30"
        timeout = 1
    """)
    dbp = tmp_path / "state.db"
    from cli_support import alive, kill_quietly, read_pid, wait_gone

    started = time.monotonic()
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    elapsed = time.monotonic() - started
    bg = read_pid(tmp_path / "bg.pid", timeout=1)
    try:
        assert r.returncode == 1, r.text
        assert elapsed < 8, "timeout = 1 took %.1fs" % elapsed
        row = final(dbp)["slow"]
        assert row["status"] == "failed"
        assert "timed out" in row["error"]
        assert wait_gone(bg, 5), "the background grandchild survived the timeout"
    finally:
        if alive(bg):
            kill_quietly(bg)


def test_parallel_runs_independent_nodes_concurrently(tmp_path):
    body = "".join(
        '[n%d]\ntype = "Command"\ncommand_name = "echo hello from n%d; sleep 0.5"\ndepends_on = []\n\n' % (i, i)
        for i in range(8)
    )
    rb = write_runbook(tmp_path, body)
    dbp = tmp_path / "state.db"
    started = time.monotonic()
    r = pb(tmp_path, "run", rb, "--parallel", "4", "--state-path", dbp)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.text
    assert elapsed < 3.5, "8 x sleep 0.5 with --parallel 4 took %.1fs" % elapsed
    for i in range(8):
        assert "[n%d] hello from n%d" % (i, i) in r.out.splitlines()
    assert set(status_of(dbp).values()) == {"succeeded"}
    rows = attempts(dbp)
    assert len(rows) == 8
    # never more than 4 at once, and 4 at once at some point
    moments = sorted([(a["started_at"], 1) for a in rows] + [(a["ended_at"], -1) for a in rows],
                     key=lambda m: (m[0], m[1]))
    level = peak = 0
    for _, step in moments:
        level += step
        peak = max(peak, level)
    assert peak == 4


def test_events_record_the_run(tmp_path):
    rb = write_runbook(tmp_path, MANUAL)
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--auto-approve", "--state-path", dbp).returncode == 0
    approvals = [e for e in events(dbp) if e["kind"] == "approval"]
    assert approvals and approvals[0]["node_id"] == "gate"
    assert approvals[0]["who"] == whoami()
    json.dumps(approvals)  # plain values


# -- --events-file -------------------------------------------------------------------------------
def test_events_file_appends_every_event_as_it_happens_masked_across_run_and_resume(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        TOKEN = { secret = true }

        [first]
        type = "Command"
        command_name = "echo {{ TOKEN }} > /dev/null; printf 'visible-%s\\n' output; echo first >> side.log"

        [flaky]
        type = "Command"
        command_name = "test -e flag || { echo no flag >&2; exit 1; }"
        depends_on = ["first"]
        """)
    dbp, log = tmp_path / "state.db", tmp_path / "events.jsonl"
    r = pb(tmp_path, "run", rb, "--state-path", dbp, "--var", "TOKEN=hunter2-secret", "--events-file", log)
    assert r.returncode == 1, r.text
    assert "visible-output" in r.out  # the terminal output is as without the flag
    assert (log.stat().st_mode & 0o777) == 0o600
    first = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["event"], e.get("node"), e.get("status")) for e in first] == [
        ("run_started", None, None), ("node_started", "first", None), ("node_finished", "first", "succeeded"),
        ("node_started", "flaky", None), ("node_finished", "flaky", "failed"), ("run_finished", None, "failed"),
    ]
    assert first[1]["command"].startswith('echo "$PLAYBOOK_SECRET_1" > /dev/null')  # the secret travels in the environment
    (tmp_path / "flag").write_text("")
    r = pb(tmp_path, "resume", rb, "--state-path", dbp, "--var", "TOKEN=hunter2-secret", "--events-file", log)
    assert r.returncode == 0, r.text
    lines = log.read_text().splitlines()
    assert [json.loads(line) for line in lines[:len(first)]] == first  # appended, never rewritten
    assert [json.loads(line)["event"] for line in lines[len(first):]] == ["run_started", "node_started", "node_finished", "run_finished"]
    assert json.loads(lines[-1])["status"] == "succeeded"
    text = log.read_text()
    assert "hunter2-secret" not in text and "visible-output" not in text  # output stays in the state database


def test_events_file_errors(tmp_path):
    rb = write_runbook(tmp_path, """
        [a]
        type = "Command"
        command_name = "true"
        """)
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db", "--events-file", tmp_path / "missing" / "e.jsonl")
    assert r.returncode == 2
    assert r.err.strip().splitlines() == ["error: --events-file %s: cannot be opened: No such file or directory" % (tmp_path / "missing" / "e.jsonl")]
    assert not (tmp_path / "s.db").exists()
    # a file that cannot be written any more (a full disk): one warning, and the run goes on
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db", "--events-file", "/dev/full")
    assert r.returncode == 0, r.text
    assert r.err.count("warning: cannot write the events file any more (No space left on device); the run goes on") == 1
    assert run_row(tmp_path / "s.db")["status"] == "succeeded"
