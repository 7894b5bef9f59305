"""Every prompt flow through a real pseudo-terminal (pexpect): approvals, the failure menu,
EOF at a prompt, variable prompts, the interrupted-node menu on resume."""

import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import (  # noqa: E402
    attempts,
    counts,
    db_bytes,
    events,
    final,
    finish,
    kill_quietly,
    pb,
    pb_start,
    read_pid,
    run_row,
    spawn,
    wait_for,
    wait_gone,
    write_runbook,
)

MENU = r"Choose \[([a-z/]+)\]: "


def menu(child):
    """Wait for the failure menu; returns the keys it offers, e.g. ['r', 's', 'a']."""
    child.expect(MENU)
    return child.match.group(1).split("/")


def approval(child, question):
    child.expect_exact("%s [y/n] " % question)


GATE = """
[prep]
type = "Command"
command_name = "echo prep >> side.log"

[gate]
type = "Manual"
description = "Check the dashboards before you go on."
prompt_after = "Proceed with the change?"

[after]
type = "Command"
command_name = "echo after >> side.log"
"""


def test_pty_approve_after_reject_and_retry(tmp_path):
    rb = write_runbook(tmp_path, GATE)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    c.expect_exact("Check the dashboards before you go on.")
    approval(c, "Proceed with the change?")
    c.sendline("maybe")
    c.expect_exact("please answer y or n")
    approval(c, "Proceed with the change?")
    c.sendline("n")
    c.expect_exact("ask again")
    keys = menu(c)
    assert keys == ["r", "a"]  # a rejection is never skipped
    c.sendline("r")
    approval(c, "Proceed with the change?")
    c.sendline("y")
    code, out = finish(c)
    assert code == 0, out
    assert "Traceback" not in out
    rows = attempts(dbp, node="gate")
    assert [a["status"] for a in rows] == ["failed", "succeeded"]
    assert "rejected" in rows[0]["error"]
    assert rows[0]["decision"] == "retry"  # the operator's answer at the menu that followed
    assert rows[1]["decision"] == "approved"
    assert all("@" in a["decided_by"] for a in rows)
    answers = [e["detail"] for e in events(dbp) if e["kind"] == "approval" and e["node_id"] == "gate"]
    assert len(answers) == 2
    assert "rejected" in answers[0] and "approved" in answers[1]
    assert all("@" in e["who"] for e in events(dbp) if e["kind"] == "approval")
    assert run_row(dbp)["status"] == "succeeded"
    assert (tmp_path / "side.log").read_text().splitlines() == ["prep", "after"]


def test_pty_reject_then_abort_is_resumable(tmp_path):
    rb = write_runbook(tmp_path, GATE)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    approval(c, "Proceed with the change?")
    c.sendline("n")
    assert menu(c) == ["r", "a"]
    c.sendline("a")
    code, out = finish(c)
    assert code == 3, out
    assert run_row(dbp)["status"] == "aborted"
    c = spawn(tmp_path, "resume", rb, "--state-path", dbp)
    approval(c, "Proceed with the change?")
    c.sendline("y")
    code, out = finish(c)
    assert code == 0, out
    assert counts(dbp) == {"prep": 1, "gate": 2, "after": 1}


HANDLED_GATE = """
[gate]
type = "Manual"
description = "Approve dropping the old table."
prompt_after = "Drop it?"

[drop]
type = "Command"
command_name = "echo DROPPING TABLE >> side.log"
depends_on = ["gate"]
when = "{{ true }}"

[tell]
type = "Command"
command_name = "echo told >> side.log"
depends_on = ["gate:failure"]
"""


def test_pty_rejection_cannot_be_skipped_into_and_blocks_plain_dependents(tmp_path):
    """'No' to an approval, then the failure path: the gated step never runs (even with a
    `when` that would allow it), the handler does, and the run does not end succeeded."""
    rb = write_runbook(tmp_path, HANDLED_GATE)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    approval(c, "Drop it?")
    c.sendline("n")
    assert menu(c) == ["r", "f", "a"]
    c.sendline("s")  # not offered: asked again
    assert menu(c) == ["r", "f", "a"]
    c.sendline("f")
    code, out = finish(c)
    assert code == 1, out
    assert (tmp_path / "side.log").read_text().splitlines() == ["told"]
    st = final(dbp)
    assert st["drop"]["status"] == "skipped" and st["drop"]["skip_reason"] == "upstream gate was rejected"
    assert st["gate"]["decision"] == "follow-rejection"
    assert run_row(dbp)["status"] == "failed"
    # resume keeps the rejection: the gated step still does not run
    r = pb(tmp_path, "resume", rb, "--state-path", dbp, "1")
    assert "Traceback" not in r.text
    assert "DROPPING" not in (tmp_path / "side.log").read_text()


FLAKY3 = """
[flaky]
type = "Command"
command_name = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo try $n; test $n -ge 3"

[after]
type = "Command"
command_name = "echo after"
"""


def test_pty_retry_until_success(tmp_path):
    rb = write_runbook(tmp_path, FLAKY3)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    c.expect_exact("attempt 2 of 3")
    assert menu(c) == ["r", "s", "a"]
    c.sendline("r")
    c.expect_exact("attempt 3 of 3")
    assert menu(c) == ["r", "s", "a"]
    c.sendline("r")
    code, out = finish(c)
    assert code == 0, out
    rows = attempts(dbp, node="flaky")
    assert [(a["status"], a["decision"]) for a in rows] == [
        ("failed", "retry"),
        ("failed", "retry"),
        ("succeeded", None),
    ]
    assert rows[0]["decided_by"] and "@" in rows[0]["decided_by"]
    assert final(dbp)["after"]["status"] == "succeeded"


def test_pty_max_retries_caps_the_offer(tmp_path):
    rb = write_runbook(tmp_path, FLAKY3)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--max-retries", "2", "--state-path", dbp)
    assert menu(c) == ["r", "s", "a"]
    c.sendline("r")
    assert menu(c) == ["s", "a"]  # 2 attempts made: no retry left
    c.sendline("a")
    code, out = finish(c)
    assert code == 3, out
    assert len(attempts(dbp, node="flaky")) == 2


def test_pty_skip_failed_node_downstream_runs(tmp_path):
    rb = write_runbook(tmp_path, """
        [broken]
        type = "Command"
        command_name = "echo broken >&2; exit 7"

        [downstream]
        type = "Command"
        command_name = "echo downstream >> side.log"
        depends_on = ["broken"]
    """)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    keys = menu(c)
    assert keys == ["r", "s", "a"]  # no failure path to follow: 'f' is not offered
    c.sendline("s")
    code, out = finish(c)
    assert code == 0, out
    rows = attempts(dbp, node="broken")
    assert rows[0]["status"] == "failed" and rows[0]["exit_code"] == 7
    assert rows[0]["decision"] == "skip"
    assert rows[-1]["status"] == "skipped"
    assert "operator" in rows[-1]["skip_reason"]
    assert "@" in rows[-1]["decided_by"]
    assert final(dbp)["downstream"]["status"] == "succeeded"
    assert (tmp_path / "side.log").read_text().splitlines() == ["downstream"]
    assert run_row(dbp)["status"] == "succeeded"


def test_pty_follow_failure_path(tmp_path):
    rb = write_runbook(tmp_path, """
        [deploy]
        type = "Command"
        command_name = "exit 3"

        [rollback]
        type = "Command"
        command_name = "echo rollback >> side.log"
        depends_on = ["deploy:failure"]

        [plain]
        type = "Command"
        command_name = "echo plain >> side.log"
        depends_on = ["deploy"]
    """)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    keys = menu(c)
    assert keys == ["r", "f", "s", "a"]
    c.sendline("f")
    code, out = finish(c)
    assert code == 1, out
    rows = final(dbp)
    assert rows["deploy"]["status"] == "failed"
    assert rows["deploy"]["decision"] == "follow-failure"
    assert rows["rollback"]["status"] == "succeeded"
    assert rows["plain"]["status"] == "skipped"
    assert rows["plain"]["skip_reason"] == "upstream deploy failed"
    assert run_row(dbp)["status"] == "failed"


def test_pty_critical_node_cannot_be_skipped(tmp_path):
    rb = write_runbook(tmp_path, """
        [boom]
        type = "Command"
        command_name = "exit 2"
        critical = true

        [after]
        type = "Command"
        command_name = "echo after >> side.log"
    """)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    c.expect_exact("critical")
    keys = menu(c)
    assert "s" not in keys
    assert keys == ["r", "a"]
    c.sendline("s")
    c.expect_exact("cannot be skipped")
    assert menu(c) == ["r", "a"]
    c.sendline("a")
    code, out = finish(c)
    assert code == 3, out
    assert run_row(dbp)["status"] == "aborted"
    assert final(dbp)["boom"]["status"] == "failed"
    assert final(dbp)["boom"]["decision"] == "abort"
    assert "after" not in counts(dbp)


def test_pty_eof_at_approval_aborts_cleanly(tmp_path):
    rb = write_runbook(tmp_path, GATE)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    approval(c, "Proceed with the change?")
    c.sendeof()
    code, out = finish(c)
    assert code == 3, out
    assert "Traceback" not in out
    assert run_row(dbp)["status"] == "aborted"
    assert "after" not in counts(dbp)
    # resumable: without a terminal, with --auto-approve
    r = pb(tmp_path, "resume", rb, "--auto-approve", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert counts(dbp)["prep"] == 1
    assert final(dbp)["gate"]["decision"] == "auto-approved"


def test_pty_eof_at_failure_menu_aborts_cleanly(tmp_path):
    rb = write_runbook(tmp_path, """
        [broken]
        type = "Command"
        command_name = "test -f flag"

        [after]
        type = "Command"
        command_name = "echo after"
    """)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    menu(c)
    c.sendeof()
    code, out = finish(c)
    assert code == 3, out
    assert "Traceback" not in out
    assert run_row(dbp)["status"] == "aborted"
    (tmp_path / "flag").write_text("")
    r = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert [a["status"] for a in attempts(dbp, node="broken")] == ["failed", "succeeded"]


def test_pty_eof_at_variable_prompt_is_clean(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        ENV = { required = true }

        [a]
        type = "Command"
        command_name = "echo {{ ENV }}"
    """)
    c = spawn(tmp_path, "run", rb, "--state-path", tmp_path / "state.db")
    c.expect_exact("Value for ENV")
    c.sendeof()
    code, out = finish(c)
    assert code in (2, 3), out
    assert "Traceback" not in out


def test_pty_prompts_for_missing_variable_and_reprompts_invalid(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        ENV = { required = true, choices = ["dev", "staging", "prod"], description = "where to" }
        API_TOKEN = { required = true, secret = true }

        [a]
        type = "Command"
        command_name = "echo env={{ ENV }} >> side.log; echo token-length=$(printf %s {{ API_TOKEN }} | wc -c)"
    """)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    c.expect_exact("Value for API_TOKEN")
    c.sendline("hush-hush-42")
    c.expect_exact("Value for ENV (where to) [dev/staging/prod]: ")
    c.sendline("qa")
    c.expect_exact("Value for ENV")  # asked again after the invalid choice
    c.sendline("staging")
    code, out = finish(c)
    assert code == 0, out
    assert "hush-hush-42" not in out
    assert "token-length=12" in out
    assert (tmp_path / "side.log").read_text().splitlines() == ["env=staging"]
    assert run_row(dbp)["variables"]
    assert '"ENV": "staging"' in run_row(dbp)["variables"]
    assert b"hush-hush-42" not in db_bytes(dbp)


def test_pty_no_interactive_vars_fails_listing_missing(tmp_path):
    rb = write_runbook(tmp_path, """
        [variables]
        ENV = { required = true }
        REGION = { required = true }
        OPTIONAL = { default = "x" }

        [a]
        type = "Command"
        command_name = "echo {{ ENV }} {{ REGION }}"
    """)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--no-interactive-vars", "--state-path", dbp)
    code, out = finish(c)
    assert code == 2, out
    assert "ENV" in out and "REGION" in out
    assert "OPTIONAL" not in out
    assert "Value for" not in out
    assert not dbp.exists() or not attempts(dbp)


def test_pty_odd_output_does_not_crash_rich(tmp_path):
    rb = write_runbook(tmp_path, r"""
        [odd]
        type = "Command"
        command_name = '''printf 'a [/] b [bold red]x[/]\n\033[31mred\033[0m\nbad \377 bytes\n'; printf '[/]\377\n' >&2'''
    """)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    code, out = finish(c)
    assert code == 0, out
    assert "Traceback" not in out
    assert "a [/] b [bold red]x[/]" in out
    assert final(dbp)["odd"]["status"] == "succeeded"


# -- interrupted nodes on resume ------------------------------------------------------------------
SLOW = """
[one]
type = "Command"
command_name = "echo one >> side.log"

[slow]
type = "Command"
command_name = "echo slow >> side.log; echo $$ > sh.pid; test -f quick || sleep 30"

[three]
type = "Command"
command_name = "echo three >> side.log"
"""


def _crashed_run(tmp_path):
    rb = write_runbook(tmp_path, SLOW)
    dbp = tmp_path / "state.db"
    proc = pb_start(tmp_path, "run", rb, "--state-path", dbp)
    sh = read_pid(tmp_path / "sh.pid")
    wait_for(lambda: any(a["node_id"] == "slow" and a["status"] == "running" for a in attempts(dbp)),
             what="a running row for slow")
    proc.kill()
    proc.communicate(timeout=20)
    kill_quietly(sh, group=True)
    assert wait_gone(sh, 5)
    (tmp_path / "quick").write_text("")
    return rb, dbp


def test_pty_interrupted_node_menu_rerun(tmp_path):
    rb, dbp = _crashed_run(tmp_path)
    c = spawn(tmp_path, "resume", rb, "--state-path", dbp)
    c.expect_exact("slow was interrupted")
    assert menu(c) == ["r", "m", "a"]
    c.sendline("r")
    code, out = finish(c)
    assert code == 0, out
    assert [a["status"] for a in attempts(dbp, node="slow")] == ["interrupted", "succeeded"]
    assert counts(dbp) == {"one": 1, "slow": 2, "three": 1}
    assert (tmp_path / "side.log").read_text().splitlines() == ["one", "slow", "slow", "three"]


def test_pty_interrupted_node_menu_mark_succeeded(tmp_path):
    rb, dbp = _crashed_run(tmp_path)
    c = spawn(tmp_path, "resume", rb, "--state-path", dbp)
    c.expect_exact("slow was interrupted")
    assert menu(c) == ["r", "m", "a"]
    c.sendline("m")
    code, out = finish(c)
    assert code == 0, out
    rows = attempts(dbp, node="slow")
    assert [a["status"] for a in rows] == ["interrupted", "succeeded"]
    assert rows[-1]["decision"] == "set-status"
    assert "@" in rows[-1]["decided_by"]
    assert counts(dbp) == {"one": 1, "slow": 2, "three": 1}
    # slow was not run again: only one "slow" line
    assert (tmp_path / "side.log").read_text().splitlines() == ["one", "slow", "three"]
    assert run_row(dbp)["status"] == "succeeded"


def test_pty_interrupted_node_menu_abort(tmp_path):
    rb, dbp = _crashed_run(tmp_path)
    c = spawn(tmp_path, "resume", rb, "--state-path", dbp)
    assert menu(c) == ["r", "m", "a"]
    c.sendline("a")
    code, out = finish(c)
    assert code == 3, out
    assert run_row(dbp)["status"] == "aborted"
    assert counts(dbp) == {"one": 1, "slow": 1}


def test_pty_parallel_failure_menu_waits_for_nodes_in_flight(tmp_path):
    body = '[n0]\ntype = "Command"\ncommand_name = "sleep 0.2; exit 1"\ndepends_on = []\n\n'
    body += "".join(
        '[n%d]\ntype = "Command"\ncommand_name = "sleep 0.8; echo done %d"\ndepends_on = []\n\n' % (i, i) for i in (1, 2, 3)
    )
    body += '[after]\ntype = "Command"\ncommand_name = "echo after >> side.log"\ndepends_on = ["n0"]\n'
    rb = write_runbook(tmp_path, body)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--parallel", "4", "--state-path", dbp)
    c.expect(MENU)
    before_menu = c.before
    # prompts are never interleaved with nodes still running: all three finished first
    for i in (1, 2, 3):
        assert "n%d succeeded" % i in before_menu, before_menu
    c.sendline("s")
    code, out = finish(c)
    assert code == 0, out
    assert final(dbp)["n0"]["status"] == "skipped"
    assert final(dbp)["after"]["status"] == "succeeded"


def test_pty_ctrl_c_interrupts_command_and_says_how_to_resume(tmp_path):
    rb = write_runbook(tmp_path, """
        [slow]
        type = "Command"
        command_name = "echo $$ > sh.pid; echo started; sleep 30"

        [after]
        type = "Command"
        command_name = "echo after"
    """)
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    c.expect_exact("started")
    sh = read_pid(tmp_path / "sh.pid")
    try:
        c.sendintr()
        code, out = finish(c)
        assert code == 130, out
        assert "Traceback" not in out
        assert "resume" in out
        assert wait_gone(sh, 5)
        assert run_row(dbp)["status"] == "aborted"
        assert final(dbp)["slow"]["status"] == "interrupted"
        assert "after" not in counts(dbp)
    finally:
        kill_quietly(sh, group=True)
