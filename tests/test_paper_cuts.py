"""Paper cuts (commit "Paper cuts: runbook identity names the file, one status everywhere, pasteable
hints, one verdict, validate agrees with run"): each test states one of them as the operator sees
it. Real `playbook` processes (and bundles), real SQLite files read back, a real pty for the wizard.
"""

import json
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import (
    TIMEOUT,
    attempts,
    by_title,
    counts,
    events,
    final,
    json_lines,
    kill_quietly,
    make_env,
    pb,
    pb_start,
    read_pid,
    run_row,
    status_of,
    wait_for,
    wait_gone,
    write_runbook,
)


def _set_runbook_id(dbp, run_id, identity):
    """What an older Playbook recorded: write `identity` into runs.runbook_id."""
    con = sqlite3.connect(str(dbp))
    try:
        with con:
            con.execute("UPDATE runs SET runbook_id = ? WHERE id = ?", (identity, run_id))
    finally:
        con.close()


def _running(dbp, node):
    """Whether `node` has an attempt running (False while the runner has not made the database)."""
    if not dbp.exists():
        return False
    try:
        return any(a["status"] == "running" for a in attempts(dbp, node=node))
    except sqlite3.OperationalError:  # the tables are not there yet
        return False


def _child_running(parent, text):
    """The pid of a live child process of `parent` whose command line contains `text`, or None."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) == parent and fields[0] not in (b"Z", b"X") and text in argv:
            return int(entry.name)
    return None


def _lines(path):
    return path.read_text().splitlines() if path.exists() else []


# -- 1. runbook identity names the file ------------------------------------------------------------
# Two runbooks titled alike, without [runbook] id, author or created_at, with different steps.
TWIN_A = """
[runbook]
title = "T"

[one]
type = "Command"
command_name = "echo a-one >> side.log"

[two]
type = "Command"
command_name = "echo a-two >> side.log; test -e fixed"
depends_on = ["one"]
"""

TWIN_B = """
[runbook]
title = "T"

[bee]
type = "Command"
command_name = "echo bee >> side.log"
"""


def _twins(tmp_path):
    """a.playbook.toml run 1 (failed at `two`, resumable), b.playbook.toml run 2 (succeeded)."""
    a = write_runbook(tmp_path, TWIN_A, name="a.playbook.toml")
    b = write_runbook(tmp_path, TWIN_B, name="b.playbook.toml")
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", a, "--state-path", dbp)
    assert r.returncode == 1, r.text
    r = pb(tmp_path, "run", b, "--state-path", dbp)
    assert r.returncode == 0, r.text
    return a, b, dbp


def test_runbooks_sharing_a_title_without_an_id_get_different_identities(tmp_path):
    from playbook.runtime.plan import runbook_identity

    a, b, dbp = _twins(tmp_path)
    first, second = run_row(dbp, 1), run_row(dbp, 2)
    assert first["title"] == second["title"] == "T"
    assert first["runbook_id"] and second["runbook_id"]
    assert first["runbook_id"] != second["runbook_id"]
    # both differ from the identity of versions before the file's name counted
    former = runbook_identity({"title": "T"})
    assert former not in (first["runbook_id"], second["runbook_id"])
    assert first["runbook_id"].startswith("t-") and second["runbook_id"].startswith("t-")


@pytest.mark.parametrize("mode", ["--force", "--replan"])
def test_resume_refuses_a_run_of_another_runbook_titled_alike(tmp_path, mode):
    a, b, dbp = _twins(tmp_path)
    (tmp_path / "fixed").write_text("")
    before_side = _lines(tmp_path / "side.log")
    before_attempts = attempts(dbp)
    r = pb(tmp_path, "resume", b, "1", mode, "--state-path", dbp)
    assert r.returncode == 2, r.text
    assert "run 1 belongs to another runbook" in r.err, r.text
    assert "nothing was run" in r.err
    assert "Traceback" not in r.text
    # nothing ran: no attempt recorded, no command run, the run and its plan unchanged
    assert attempts(dbp) == before_attempts
    assert _lines(tmp_path / "side.log") == before_side
    assert run_row(dbp, 1)["status"] == "failed"
    assert run_row(dbp, 1)["trigger"] == "run"


def test_resume_from_another_file_of_the_same_stem_is_refused_even_with_force(tmp_path):
    """The identity hashes the stem; a run started from a.playbook.toml is still not resumed from
    a.toml: a runbook without an id is known by its title and file name."""
    a, b, dbp = _twins(tmp_path)
    copy = tmp_path / "a.toml"
    copy.write_text(a.read_text())
    (tmp_path / "fixed").write_text("")
    before = attempts(dbp)
    r = pb(tmp_path, "resume", copy, "1", "--force", "--state-path", dbp)
    assert r.returncode == 2, r.text
    assert "run 1 was started from a.playbook.toml, not a.toml" in r.err, r.text
    assert "nothing was run" in r.err
    assert attempts(dbp) == before
    assert run_row(dbp, 1)["status"] == "failed"


def test_a_run_recorded_under_the_former_identity_still_resumes_from_its_file(tmp_path):
    from playbook.runtime.plan import runbook_identity

    a, b, dbp = _twins(tmp_path)
    former = runbook_identity({"title": "T"})  # without the stem: what older versions recorded
    _set_runbook_id(dbp, 1, former)
    (tmp_path / "fixed").write_text("")
    # the twin still cannot take it: the former identity is shared, the file is not
    r = pb(tmp_path, "resume", b, "1", "--force", "--state-path", dbp)
    assert r.returncode == 2, r.text
    assert "belongs to another runbook" in r.err
    # a file of the name it was started from resumes it
    r = pb(tmp_path, "resume", a, "1", "--force", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert run_row(dbp, 1)["status"] == "succeeded"
    assert [x["status"] for x in attempts(dbp, 1, "two")] == ["failed", "succeeded"]
    assert counts(dbp, 1) == {"one": 1, "two": 2}


def test_create_writes_an_id_and_validate_hints_at_a_missing_one(tmp_path):
    target = tmp_path / "x.playbook.toml"
    r = pb(tmp_path, "create", "--title", "X", "-o", target)
    assert r.returncode == 0, r.text
    found = re.findall(r'^id = "(x-[^"]+)"', target.read_text(), re.M)
    assert len(found) == 1, target.read_text()
    r = pb(tmp_path, "validate", target)
    assert r.returncode == 0, r.text
    assert "hint: no [runbook] id" not in r.text

    a = write_runbook(tmp_path, TWIN_A, name="a.playbook.toml")
    r = pb(tmp_path, "validate", a)
    assert r.returncode == 0, r.text
    (hint,) = [line for line in r.out.splitlines() if "hint: no [runbook] id" in line]
    # the identity it names is the one a run records
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", a, "--state-path", dbp).returncode == 1
    identity = run_row(dbp)["runbook_id"]
    assert "runs are recorded under %s" % identity in hint
    assert 'add id = "%s" to [runbook]' % identity in hint


# -- 2. a run whose runner died is interrupted everywhere ------------------------------------------
def _assert_interrupted_everywhere(tmp_path, dbp, title):
    r = pb(tmp_path, "show", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert re.search(r"^1\s+interrupted\s", r.out, re.M), r.out
    assert re.search(r"runs:\s+1: 1 interrupted \(0% succeeded\)", r.out), r.out
    assert not re.search(r"\d running", r.out), r.out
    r = pb(tmp_path, "info", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert re.search(r"runs:\s+1: 1 interrupted \(0% succeeded\)", r.out), r.out
    assert not re.search(r"\d running", r.out), r.out
    for verb in ("show", "info"):
        data = json.loads(pb(tmp_path, verb, "--json", "--state-path", dbp).out)
        assert by_title(data["workflows"], title)["by_status"] == {"interrupted": 1}, data
        assert by_title(data["workflows"], title)["runs"] == 1


def test_a_run_whose_runner_was_killed_counts_as_interrupted_in_the_statistics(tmp_path):
    rb = write_runbook(
        tmp_path,
        """
        [nap]
        type = "Command"
        command_name = "echo $$ > sh.pid; sleep 30"
        """,
        title="Crashy",
    )
    dbp = tmp_path / "state.db"
    proc = pb_start(tmp_path, "run", rb, "--state-path", dbp)
    sh = None
    try:
        sh = read_pid(tmp_path / "sh.pid")
        wait_for(lambda: _running(dbp, "nap"), what="nap running")
        # while its runner drives it, the run is running, in the statistics too
        live = json.loads(pb(tmp_path, "show", "--json", "--state-path", dbp).out)
        assert by_title(live["workflows"], "Crashy")["by_status"] == {"running": 1}
        proc.kill()  # SIGKILL: the runner records nothing
        kill_quietly(sh, group=True)  # what a reboot does to its command
        proc.communicate(timeout=20)
        assert wait_gone(sh, 5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        if sh is not None:
            kill_quietly(sh, group=True)
    assert run_row(dbp)["status"] == "running"  # as recorded: nobody drives it any more
    _assert_interrupted_everywhere(tmp_path, dbp, "Crashy")


def test_a_run_recorded_running_and_never_locked_counts_as_interrupted(tmp_path):
    from playbook.runtime.state import Store

    dbp = tmp_path / "state.db"
    store = Store(str(dbp))
    try:
        store.create_run("Orphan", None, "0" * 64, "{}", {}, runbook_id="orphan-1")
    finally:
        store.close()
    _assert_interrupted_everywhere(tmp_path, dbp, "Orphan")


# -- 3. the replan audit entry -----------------------------------------------------------------------
def test_show_run_lists_the_replan_in_the_audit_trail(tmp_path):
    from playbook.runtime.state import whoami

    rb = write_runbook(tmp_path, '[one]\ntype = "Command"\ncommand_name = "false"\n', title="Replanned")
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1
    old_hash = run_row(dbp, 1)["plan_hash"]
    rb.write_text(rb.read_text().replace('"false"', '"true"'))
    r = pb(tmp_path, "resume", rb, "1", "--replan", "--state-path", dbp)
    assert r.returncode == 0, r.text
    new_hash = run_row(dbp, 1)["plan_hash"]
    assert new_hash != old_hash
    r = pb(tmp_path, "show", "--run", "1", "--state-path", dbp)
    assert r.returncode == 0, r.text
    trail = r.out.split("audit trail:", 1)[1].splitlines()
    replans = [line for line in trail if re.match(r"^\s+\S+ \S+\s+replan\s", line)]
    assert len(replans) == 1, r.out
    (line,) = replans
    assert "%s… → %s…" % (old_hash[:12], new_hash[:12]) in line
    assert whoami() in line


# -- 4. after Ctrl-C the hint works as printed -------------------------------------------------------
def test_after_ctrl_c_the_hint_names_rerun_interrupted_and_works_pasted(tmp_path):
    rb = write_runbook(
        tmp_path,
        """
        [wait]
        type = "Command"
        command_name = "test -e done || sleep 30"

        [after]
        type = "Command"
        command_name = "echo after >> after.log"
        depends_on = ["wait"]
        """,
        title="Stoppable",
    )
    dbp = tmp_path / "state.db"
    proc = pb_start(tmp_path, "run", rb, "--state-path", dbp)
    pgid = None
    try:
        # the step runs: its attempt is recorded running and the runner has started its shell
        wait_for(lambda: _running(dbp, "wait"), what="the step recorded running")
        pgid = wait_for(lambda: _child_running(proc.pid, b"test -e done"), what="the step's shell")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if pgid:
            kill_quietly(pgid, group=True)
    text = (out + err).decode("utf-8", "replace")
    assert proc.returncode == 130, text
    assert "--rerun-interrupted" in text
    found = re.findall(r"without a terminal: ([^)\n]*)\)", text)
    assert len(found) == 1, text
    (command,) = found
    assert "--rerun-interrupted" in command
    assert final(dbp)["wait"]["status"] == "interrupted"
    (tmp_path / "done").write_text("")
    pasted = subprocess.run(
        command, shell=True, cwd=str(tmp_path), env=make_env(tmp_path), stdin=subprocess.DEVNULL,
        capture_output=True, timeout=TIMEOUT,
    )
    assert pasted.returncode == 0, pasted.stdout.decode() + pasted.stderr.decode()
    assert status_of(dbp) == {"wait": "succeeded", "after": "succeeded"}
    assert _lines(tmp_path / "after.log") == ["after"]


# -- 5. resume with nothing left to run --------------------------------------------------------------
def test_resume_of_a_run_whose_only_failure_was_handled_says_nothing_was_left(tmp_path):
    rb = write_runbook(
        tmp_path,
        """
        [x]
        type = "Command"
        command_name = "false"

        [cleanup]
        type = "Command"
        command_name = "echo cleanup >> cleanup.log"
        depends_on = ["x:failure"]
        """,
        name="handled.playbook.toml",
        title="Handled",
    )
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    assert run_row(dbp)["status"] == "failed"
    r = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    assert "nothing was left to run" in r.text
    assert "x failed (its failure was handled)" in r.text
    assert re.search(r"playbook resume \S*handled\.playbook\.toml 1 --replan", r.text), r.text
    assert "playbook set-status 1 x succeeded" in r.text
    assert counts(dbp) == {"x": 1, "cleanup": 1}  # nothing ran again
    assert _lines(tmp_path / "cleanup.log") == ["cleanup"]


# -- 6. resume --var with another value than the run recorded ------------------------------------------
def test_resume_with_another_value_than_recorded_names_the_run_and_replan(tmp_path):
    rb = write_runbook(
        tmp_path,
        """
        [variables]
        VERSION = { default = "latest" }

        [x]
        type = "Command"
        command_name = "echo {{ VERSION }} >> v.log; false"
        """,
        title="Versioned",
    )
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1
    r = pb(tmp_path, "resume", rb, "1", "--var", "VERSION=1.2.4", "--state-path", dbp)
    assert r.returncode == 2, r.text
    assert "run 1 used VERSION=" in r.err, r.text
    assert "latest" in r.err
    assert "needs `resume --replan`" in r.err
    assert "when the runbook was compiled" not in r.text
    assert _lines(tmp_path / "v.log") == ["latest"]
    assert counts(dbp) == {"x": 1}


# -- 7. validate agrees with run -----------------------------------------------------------------------
SLEEP_WITH = """
[runbook]
title = "Napping"
id = "napping"

[variables]
{variable}

[nap]
type = "Function"
plugin = "python"
function = "sleep"
function_params = {{ seconds = "{{{{ {name} }}}}" }}
"""


def test_validate_checks_a_templated_function_parameter_against_its_variables_type(tmp_path):
    rb = write_runbook(tmp_path, SLEEP_WITH.format(variable='ENABLED = { default = true, type = "bool" }', name="ENABLED"))
    line = next(n for n, text in enumerate(rb.read_text().splitlines(), 1) if text.startswith("function_params"))
    r = pb(tmp_path, "validate", rb)
    assert r.returncode == 2, r.text
    assert re.search(r"rb\.playbook\.toml:%d:\d+: error: .*'seconds'.*ENABLED" % line, r.text), r.text

    good = write_runbook(tmp_path, SLEEP_WITH.format(variable='DELAY = { default = 2, type = "int" }', name="DELAY"),
                         name="good.playbook.toml")
    r = pb(tmp_path, "validate", good)
    assert r.returncode == 0, r.text
    assert "good.playbook.toml: valid" in r.out
    assert "error" not in r.text


SKIPPABLE = """
[runbook]
title = "Skippable"
id = "skippable"

[variables]
GO = {{ default = true, type = "bool" }}

[x]
type = "Command"
command_name = "echo hi"
when = "GO"

[reader]
type = "Command"
command_name = "echo {{{{ previous_node('x').stdout }}}}"
depends_on = ["{dep}"]
"""


def test_validate_warns_when_a_step_reads_the_output_of_a_step_that_may_be_skipped(tmp_path):
    rb = write_runbook(tmp_path, SKIPPABLE.format(dep="x"))
    r = pb(tmp_path, "validate", rb)
    assert r.returncode == 0, r.text
    (warning,) = [line for line in r.text.splitlines() if "may be skipped" in line]
    assert "warning" in warning and "previous_node('x')" in warning

    guarded = write_runbook(tmp_path, SKIPPABLE.format(dep="x:success"), name="guarded.playbook.toml")
    r = pb(tmp_path, "validate", guarded)
    assert r.returncode == 0, r.text
    assert "may be skipped" not in r.text
    assert "warning" not in r.text


# -- 8. validate --check-vars gives one verdict ------------------------------------------------------
def test_validate_check_vars_with_a_missing_required_variable_says_invalid(tmp_path):
    rb = write_runbook(
        tmp_path,
        """
        [runbook]
        title = "Needs"
        id = "needs"

        [variables]
        TARGET = { required = true }

        [x]
        type = "Command"
        command_name = "echo {{ TARGET }}"
        """,
    )
    r = pb(tmp_path, "validate", "--check-vars", rb)
    assert r.returncode == 2, r.text
    assert "invalid" in r.text
    assert not re.search(r"(?<!in)valid", r.text), r.text
    r = pb(tmp_path, "validate", "--check-vars", rb, "--var", "TARGET=a")
    assert r.returncode == 0, r.text
    assert "rb.playbook.toml: valid" in r.out


# -- 10. waiting messages say how many approvals a step has and needs -----------------------------------
TWO_EYES = """
[prep]
type = "Command"
command_name = "echo prep >> side.log"

[gate]
type = "Manual"
description = "Check the dashboards."
prompt_after = "Go on?"
approvals = 2
depends_on = ["prep"]

[after]
type = "Command"
command_name = "echo after >> side.log"
depends_on = ["gate"]
"""


def _one_of_two(tmp_path):
    rb = write_runbook(tmp_path, TWO_EYES, title="Four eyes")
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 3, r.text
    r = pb(tmp_path, "approve", "1", "gate", "--state-path", dbp)
    assert r.returncode == 0, r.text
    return rb, dbp


def _waiting_line(me, dbp):
    return ("run 1 waits for an approval of gate: 1 of 2 approvals given (by %s); anyone may approve; "
            "approve with: playbook approve 1 gate --state-path %s" % (me, dbp))


def test_resume_and_show_say_how_many_approvals_a_step_has_and_from_whom(tmp_path):
    from playbook.runtime.state import current_user

    me = current_user()
    rb, dbp = _one_of_two(tmp_path)
    r = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r.returncode == 3, r.text
    assert "1 of 2 given, by %s" % me in r.text
    r = pb(tmp_path, "show", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert _waiting_line(me, dbp) in r.out.splitlines(), r.out
    assert _lines(tmp_path / "side.log") == ["prep"]


def test_show_right_after_one_of_two_approvals_says_how_many_are_given(tmp_path):
    from playbook.runtime.state import current_user

    rb, dbp = _one_of_two(tmp_path)
    r = pb(tmp_path, "show", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert _waiting_line(current_user(), dbp) in r.out.splitlines(), r.out


# -- 11. small ones --------------------------------------------------------------------------------------
def test_a_one_step_run_says_1_step(tmp_path):
    rb = write_runbook(tmp_path, '[one]\ntype = "Command"\ncommand_name = "true"\n', title="Single")
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "state.db")
    assert r.returncode == 0, r.text
    assert re.search(r"starting run 1: Single \(1 step\)$", r.out, re.M), r.out
    assert "1 nodes" not in r.text and "1 steps" not in r.text


def test_set_status_says_whether_a_reason_was_given(tmp_path):
    rb = write_runbook(tmp_path, '[x]\ntype = "Command"\ncommand_name = "false"\n\n[y]\ntype = "Command"\n'
                                 'command_name = "false"\n', title="Settle")
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1
    r = pb(tmp_path, "set-status", "1", "x", "succeeded", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "run 1: x is now succeeded" in r.out
    assert "no reason given" in r.out
    assert "recorded with who and why" not in r.out
    r = pb(tmp_path, "set-status", "1", "y", "succeeded", "--reason", "checked by hand", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "run 1: y is now succeeded (recorded with who and why)" in r.out
    assert "no reason given" not in r.out
    notes = [e["detail"] or "" for e in events(dbp, 1) if e["kind"] == "set-status"]
    assert any("checked by hand" in n for n in notes), notes


def test_a_missing_home_is_never_created(tmp_path):
    rb = write_runbook(tmp_path, '[one]\ntype = "Command"\ncommand_name = "echo ran > ran.txt"\n', title="Homeless")
    home = tmp_path / "no-such-home"
    r = pb(tmp_path, "run", rb, env={"HOME": home, "XDG_CONFIG_HOME": None, "XDG_STATE_HOME": None,
                                     "XDG_DATA_HOME": None})
    assert r.returncode == 4, r.text
    assert str(home) in r.err
    assert "does not exist" in r.err
    assert not home.exists()
    assert not (tmp_path / "ran.txt").exists()


def test_the_wizards_description_defaults_to_empty(tmp_path, spawn_playbook):
    import pexpect

    target = tmp_path / "wiz.playbook.toml"
    child = spawn_playbook("create")
    for pattern, answer in (
        (r"Title \[", "Wizard"),
        (r"Author \[", "Tester"),
        (r"Description[^\r\n]*: ", ""),  # Enter: take the default
        (r"File \[", str(target)),
        (r"Add a node\? \[m\]anual/\[c\]ommand/\[f\]unction/\[d\]one", "d"),
    ):
        child.expect(pattern)
        if pattern.startswith("Description"):
            assert child.after == "Description (optional): ", child.after  # no placeholder offered
        child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    text = target.read_text()
    assert re.search(r'^description = ""$', text, re.M), text
    assert "What this runbook does" not in text


@pytest.fixture
def unsigned_bundle(tmp_path):
    rb = write_runbook(tmp_path, '[one]\ntype = "Command"\ncommand_name = "true"\n', title="Bundled")
    bundle = tmp_path / "b.pyz"
    r = pb(tmp_path, "compile", rb, "-o", bundle, "--no-bytecode")
    assert r.returncode == 0, r.text
    return bundle


def _bundle(tmp_path, bundle, *args):
    """`BUNDLE ARGS` without a terminal, as an operator runs a bundle (its own interpreter line)."""
    return subprocess.run(
        [str(bundle)] + [str(a) for a in args], cwd=str(tmp_path), env=make_env(tmp_path),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT,
    )


def test_verify_of_an_unsigned_bundle_says_there_is_no_signature(tmp_path, unsigned_bundle):
    r = _bundle(tmp_path, unsigned_bundle, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "there is no signature beside it" in r.stdout
    assert "check the signature" not in r.stdout
    assert not Path(str(unsigned_bundle) + ".sig").exists()
    Path(str(unsigned_bundle) + ".sig").write_text("not really a signature\n")
    r = _bundle(tmp_path, unsigned_bundle, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "give --allowed-signers" in r.stdout
    assert "there is no signature beside it" not in r.stdout


def test_exit_126_explains_noexec_and_sh(tmp_path):
    script = tmp_path / "x.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    rb = write_runbook(tmp_path, '[x]\ntype = "Command"\ncommand_name = "./x.sh"\n', title="Noexec")
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    row = final(dbp)["x"]
    assert row["status"] == "failed" and row["exit_code"] == 126
    assert "noexec" in row["error"]
    assert "sh " in row["error"] and "interpreter" in row["error"]


def test_show_run_says_how_often_a_run_was_resumed(tmp_path):
    rb = write_runbook(tmp_path, '[x]\ntype = "Command"\ncommand_name = "test -e fixed"\n', title="Again")
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1  # run 2, never resumed
    (tmp_path / "fixed").write_text("")
    assert pb(tmp_path, "resume", rb, "1", "--state-path", dbp).returncode == 0
    r = pb(tmp_path, "show", "--run", "1", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "resumed 1 time " in r.out.splitlines()[1], r.out
    r = pb(tmp_path, "show", "--run", "2", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "resumed" not in r.out


def test_a_values_line_break_in_a_question_is_shown_as_a_symbol(tmp_path):
    rb = write_runbook(
        tmp_path,
        """
        [variables]
        V = { default = "x" }

        [deploy]
        type = "Command"
        command_name = "echo deploying"
        prompt_after = "Deploy {{ V }}?"
        """,
        title="Questions",
    )
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--json", "--var", "V=a\nApprove? [y/N] y", "--state-path", dbp)
    assert r.returncode == 3, r.text
    (waiting,) = [e for e in json_lines(r.out) if e.get("event") == "waiting"]
    assert waiting["question"] == "Deploy a\u2424Approve? [y/N] y?"
    (needed,) = [e for e in events(dbp, 1) if e["kind"] == "approval-needed"]
    assert "\n" not in needed["detail"] and "Deploy a\u2424Approve? [y/N] y?" in needed["detail"]
    r = pb(tmp_path, "show", "--run", "1", "--state-path", dbp)
    trail = r.out.split("audit trail:", 1)[1].splitlines()
    (line,) = [t for t in trail if "approval-needed" in t]
    assert line.endswith("Deploy a\u2424Approve? [y/N] y?"), r.out


def test_inspect_shows_control_characters_in_file_names_escaped(tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "a\nb.sh").write_text("a")
    (scripts / "c\x1b[31md.sh").write_text("c")
    rb = write_runbook(
        tmp_path,
        """
        [runbook]
        title = "Files"
        id = "files"
        files = ["scripts/"]

        [x]
        type = "Command"
        command_name = "ls {{ runbook_dir }}/scripts"
        """,
    )
    bundle = tmp_path / "f.pyz"
    r = pb(tmp_path, "compile", rb, "-o", bundle, "--no-bytecode")
    assert r.returncode == 0, r.text
    r = _bundle(tmp_path, bundle, "inspect")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "\x1b" not in r.stdout
    assert "file scripts/a\\x0ab.sh (" in r.stdout, r.stdout
    assert "file scripts/c\\x1b[31md.sh (" in r.stdout, r.stdout
    assert not any(line.startswith("b.sh") for line in r.stdout.splitlines())


def test_output_that_is_not_utf8_reaches_a_later_step_as_the_replacement_character(tmp_path):
    rb = write_runbook(
        tmp_path,
        """
        [a]
        type = "Command"
        command_name = "printf '\\\\377'"

        [b]
        type = "Command"
        command_name = "printf '%s' {{ previous_node('a').stdout }} > out"
        depends_on = ["a:success"]
        """,
        title="Bytes",
    )
    assert "printf '\\\\377'" in rb.read_text()
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert (tmp_path / "out").read_bytes() == "\ufffd".encode("utf-8")
    assert final(dbp)["a"]["stdout"] == "\ufffd"
