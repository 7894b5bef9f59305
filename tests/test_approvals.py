"""Approvals (runtime/approvals.py, README, Approvals): --approve NODE, waiting runs and
`approve` out of band, the approvers/approvals policy with two real OS users, and signed
approvals checked with real `ssh-keygen` keys, with every refusal.

Real parts: `playbook` processes and bundles, SQLite files read back, `runuser` for a second
person (as root; skipped otherwise), `ssh-keygen -Y sign/verify`.
"""

import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import final, pb, run_row, status_of, write_runbook

from playbook.runtime import approvals, state

GATE = """
[prep]
type = "Command"
command_name = "echo prep >> side.log"

[gate]
type = "Manual"
description = "Check the dashboards."
prompt_after = "Go on?"
{policy}

[after]
type = "Command"
command_name = "echo after >> side.log"
"""


def _rows(dbp):
    con = sqlite3.connect(str(dbp))
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM approvals ORDER BY id")]
    finally:
        con.close()


def _side(tmp_path):
    path = tmp_path / "side.log"
    return path.read_text().splitlines() if path.exists() else []


# -- --approve and waiting runs ---------------------------------------------------------------------
def test_approve_flag_approves_that_question_without_a_terminal(tmp_path):
    rb = write_runbook(tmp_path, GATE.format(policy=""))
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--approve", "gate", "--state-path", dbp)
    assert r.returncode == 0, r.text
    (row,) = _rows(dbp)
    assert (row["node_id"], row["decision"], row["how"]) == ("gate", "approved", "flag")
    assert "@" in row["who"] and row["who"] != "auto-approve"
    assert final(dbp)["gate"]["decided_by"] == row["who"]


def test_approve_flag_must_name_a_step_with_a_question(tmp_path):
    rb = write_runbook(tmp_path, GATE.format(policy=""))
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--approve", "prep", "--state-path", dbp)
    assert r.returncode == 2 and "--approve prep: the runbook asks no question at step prep (steps with a question: gate)" in r.text
    r = pb(tmp_path, "run", rb, "--approve", "gaet", "--state-path", dbp)
    assert r.returncode == 2 and "has no step gaet" in r.text


def test_waiting_run_approved_out_of_band_then_resumed_asks_nothing(tmp_path):
    rb = write_runbook(tmp_path, GATE.format(policy=""))
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 3, r.text
    assert run_row(dbp)["status"] == "waiting"
    command = "playbook approve 1 gate --state-path %s" % dbp
    assert "approve with: " + command in r.text
    shown = pb(tmp_path, "show", "--state-path", dbp)
    assert "run 1 waits for an approval of gate: 0 of 1 approval given; anyone may approve; approve with: %s" % command in shown.text
    r = pb(tmp_path, "approve", "1", "gate", "--note", "dashboards green", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "gate approved by" in r.text and "continue with: playbook resume" in r.text
    r = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert _side(tmp_path) == ["prep", "after"]
    (row,) = _rows(dbp)
    assert (row["how"], row["note"], row["used"]) == ("out-of-band", "dashboards green", 1)


def test_rejected_out_of_band_follows_the_rejection_rule(tmp_path):
    rb = write_runbook(tmp_path, GATE.format(policy=""))
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 3
    assert pb(tmp_path, "approve", "1", "gate", "--reject", "--state-path", dbp).returncode == 0
    r = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    assert "gate was rejected and nothing handles its failure" in r.text
    assert _side(tmp_path) == ["prep"]
    assert status_of(dbp)["gate"] == "failed"


def test_json_emits_waiting_and_approval_events(tmp_path):
    rb = write_runbook(tmp_path, GATE.format(policy=""))
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--json", "--state-path", dbp)
    kinds = [json.loads(line)["event"] for line in r.stdout.decode().splitlines() if line.startswith("{")]
    assert "waiting" in kinds
    r = pb(tmp_path, "resume", rb, "--json", "--approve", "gate", "--state-path", dbp)
    events = [json.loads(line) for line in r.stdout.decode().splitlines() if line.startswith("{")]
    (approval,) = [e for e in events if e["event"] == "approval"]
    assert (approval["decision"], approval["how"]) == ("approved", "flag")


# -- policy -----------------------------------------------------------------------------------------
def test_approvers_refuse_someone_else_and_accept_a_group_member(tmp_path):
    me = state.current_user()
    rb = write_runbook(tmp_path, GATE.format(policy='approvers = ["somebody-else"]'))
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 3
    r = pb(tmp_path, "approve", "1", "gate", "--state-path", dbp)
    assert r.returncode == 2 and "%s may not approve gate: 1 approval by somebody-else may" % me in r.text
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    rb2 = write_runbook(tmp_path, GATE.format(policy='approvers = ["@%s"]' % group), name="g.playbook.toml")
    db2 = tmp_path / "g.db"
    assert pb(tmp_path, "run", rb2, "--state-path", db2).returncode == 3
    assert pb(tmp_path, "approve", "1", "gate", "--state-path", db2).returncode == 0
    assert pb(tmp_path, "resume", rb2, "--state-path", db2).returncode == 0


def test_policy_fields_are_checked_at_validate_time(tmp_path):
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "true"\napprovals = 2\n')
    r = pb(tmp_path, "validate", rb)
    assert r.returncode == 2 and "node a asks no question, so approvals has nothing to approve" in r.text
    rb = write_runbook(tmp_path, GATE.format(policy='approvers = ["alice"]\napprovals = 2'))
    r = pb(tmp_path, "validate", rb)
    assert r.returncode == 2 and "node gate needs 2 approvals but names only 1 approver" in r.text


def _shared_dir():
    """A folder a second user can write to (pytest's tmp is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="playbook-4eyes-"))
    path.chmod(0o777)
    return path


def _compile(tmp_path, runbook, output, *extra):
    r = pb(tmp_path, "compile", runbook, "-o", output, "--python", "%d.%d" % sys.version_info[:2], *extra)
    assert r.returncode == 0, r.text
    return output


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="a second OS user needs root and runuser (CI runs as root)")
def test_four_eyes_needs_two_distinct_people(tmp_path):
    shared = _shared_dir()
    try:
        rb = write_runbook(tmp_path, GATE.format(policy="approvals = 2").replace("side.log", str(shared / "side.log")))
        bundle = _compile(tmp_path, rb, shared / "gate.pyz")
        bundle.chmod(0o755)
        dbp = shared / "state.db"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(shared), "PLAYBOOK_PYTHON": sys.executable}

        def as_root(*args):
            return subprocess.run([str(bundle), *args, "--state-path", str(dbp)], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)

        r = as_root("run", "--approve", "gate")
        assert r.returncode == 3, r.stdout + r.stderr
        assert "gate waits for an approval (2 approvals by anyone; 1 of 2 given, by root)" in r.stdout + r.stderr
        assert as_root("approve", "1", "gate").returncode == 0  # the same person again: still one
        assert as_root("resume").returncode == 3
        for path in shared.iterdir():
            if path.name.startswith("state.db"):
                os.chmod(path, 0o777 if path.is_dir() else 0o666)
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        second = subprocess.run(
            ["runuser", "-u", "nobody", "--", "env", "PLAYBOOK_PYTHON=" + python, "HOME=" + str(shared),
             str(bundle), "approve", "1", "gate", "--note", "second pair of eyes", "--state-path", str(dbp)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        assert second.returncode == 0, second.stdout + second.stderr
        r = as_root("resume")
        assert r.returncode == 0, r.stdout + r.stderr
        people = sorted({approvals.person(row["who"]) for row in _rows(dbp)})
        assert people == ["nobody", "root"]
        assert (shared / "side.log").read_text().splitlines() == ["prep", "after"]
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# -- who a person is: the operating system, never the environment or a flag -----------------------
def test_the_approver_is_the_os_user_whatever_logname_and_user_say(tmp_path):
    """One OS user changing LOGNAME/USER between two `approve`s is still one person: an
    `approvals = 2` step keeps waiting, and both decisions name the real user."""
    me = state.current_user()
    rb = write_runbook(tmp_path, GATE.format(policy="approvals = 2"))
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 3
    for name in ("alice", "bob"):
        r = pb(tmp_path, "approve", "1", "gate", "--state-path", dbp, env={"LOGNAME": name, "USER": name})
        assert r.returncode == 0, r.text
    assert {approvals.person(row["who"]) for row in _rows(dbp)} == {me}
    r = pb(tmp_path, "resume", rb, "--state-path", dbp, env={"LOGNAME": "carol", "USER": "carol"})
    assert r.returncode == 3, r.text
    assert "gate waits for an approval (2 approvals by anyone; 1 of 2 given, by %s)" % me in r.text
    assert _side(tmp_path) == ["prep"]


def test_current_user_reads_the_passwd_entry_of_the_real_uid(tmp_path):
    import pwd

    code = "from playbook.runtime import state; print(state.current_user())"
    env = dict(os.environ, LOGNAME="mallory", USER="mallory", SUDO_USER="nobody", SUDO_UID="65534")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    # not started by sudo: SUDO_USER is just a variable anyone can set
    assert out == pwd.getpwuid(os.getuid()).pw_name


def test_no_flag_names_the_approver(tmp_path):
    rb = write_runbook(tmp_path, GATE.format(policy=""))
    r = pb(tmp_path, "run", rb, "--approve", "gate", "--approved-via", "alice@ctl via fleet", "--state-path", tmp_path / "s.db")
    assert r.returncode == 2 and "unrecognized arguments: --approved-via" in r.text


def test_auto_approve_counts_as_the_operator_once(tmp_path):
    """--auto-approve is given by the person running it: with `approvals = 2`, their own later
    `approve` does not make the second pair of eyes."""
    rb = write_runbook(tmp_path, GATE.format(policy="approvals = 2"))
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--auto-approve", "--state-path", dbp).returncode == 3
    assert pb(tmp_path, "approve", "1", "gate", "--state-path", dbp).returncode == 0
    r = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r.returncode == 3, r.text
    assert {(approvals.person(row["who"]), row["how"]) for row in _rows(dbp)} == {
        (state.current_user(), "auto-approve"), (state.current_user(), "out-of-band")}


# -- signed approvals ---------------------------------------------------------------------------------
SIGNED = """
[runbook]
title = "signed gate"
id = "signed-gate"

[variables]
ENVIRONMENT = {{ required = true, choices = ["staging", "prod"] }}

[notice]
type = "Manual"
description = "A plain confirmation: no policy."
prompt_after = "Seen the notice?"
depends_on = []

[gate]
type = "Manual"
description = "Check {{{{ ENVIRONMENT }}}}."
prompt_after = "{question}"
approvals = 1

[deploy]
type = "Command"
command_name = "{deploy}"
"""
QUESTION = "Deploy to {{ ENVIRONMENT }}?"
DEPLOY = "test ! -e stop && echo deploy {{ ENVIRONMENT }} >> side.log"


def signed_text(question=QUESTION, deploy=DEPLOY):
    return SIGNED.format(question=question, deploy=deploy)


def _compile(tmp_path, runbook, output, *extra):
    r = pb(tmp_path, "compile", runbook, "-o", output, "--python", "%d.%d" % sys.version_info[:2], *extra)
    assert r.returncode == 0, r.text
    return output


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """ssh keys: alice and bob are approval signers, mallory is not."""
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen is not installed (CI installs openssh-client)")
    tmp = tmp_path_factory.mktemp("keys")
    found = {}
    for name in ("alice", "bob", "mallory"):
        key = tmp / ("%s_key" % name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
        found[name] = key
    signers = tmp / "allowed_signers"
    signers.write_text("".join("%s %s\n" % (name, " ".join(Path(str(found[name]) + ".pub").read_text().split()[:2]))
                               for name in ("alice", "bob")))
    found["signers"] = signers
    return found


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory, keys):
    tmp = tmp_path_factory.mktemp("signed")
    rb = write_runbook(tmp, signed_text())
    return _compile(tmp, rb, tmp / "gate.pyz", "--approval-signers", str(keys["signers"]))


SYSTEM_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def _bundle(bundle, tmp_path, *args, env=None):
    """The bundle as an operator runs it on a server: the system Python, no virtual environment."""
    return subprocess.run([str(bundle), *[str(a) for a in args]], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          cwd=str(tmp_path), env=dict(os.environ, PLAYBOOK_PYTHON=SYSTEM_PYTHON, **(env or {})))


def _waiting(bundle, tmp_path, dbp, environment="staging", *extra):
    """A run of the signed bundle, its notice approved by flag, waiting for `gate`."""
    r = _bundle(bundle, tmp_path, "run", "--var", "ENVIRONMENT=%s" % environment, "--approve", "notice", "--state-path", dbp, *extra)
    assert r.returncode == 3, r.stdout + r.stderr
    return r


def _request(bundle, tmp_path, dbp, run="1", node="gate", out=None):
    out = out or tmp_path / "request.json"
    r = _bundle(bundle, tmp_path, "approval", "request", run, node, "-o", out, "--state-path", dbp)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def _sign(tmp_path, request, key, principal, *extra, out=None):
    out = out or tmp_path / "approval.json"
    r = pb(tmp_path, "approval", "sign", request, "--key", key, "--principal", principal, "-o", out, *extra)
    assert r.returncode == 0, r.text
    return out


def _signed_approval(bundle, tmp_path, dbp, keys, principal="alice", **kwargs):
    return _sign(tmp_path, _request(bundle, tmp_path, dbp), keys[principal], principal, **kwargs)


def test_compile_lists_the_steps_that_need_signatures_and_warns_when_none(tmp_path, keys):
    rb = write_runbook(tmp_path, signed_text())
    r = pb(tmp_path, "compile", rb, "-o", tmp_path / "a.pyz", "--no-bytecode", "--approval-signers", keys["signers"])
    assert r.returncode == 0, r.text
    assert "steps that accept only signed approvals: gate" in r.err
    plain = write_runbook(tmp_path, GATE.format(policy=""), name="plain.playbook.toml")
    r = pb(tmp_path, "compile", plain, "-o", tmp_path / "b.pyz", "--no-bytecode", "--approval-signers", keys["signers"])
    assert r.returncode == 0, r.text
    assert "warning: --approval-signers: no step has approvers or approvals" in r.err


def test_signed_approval_round_trip(tmp_path, signed_bundle, keys):
    """The request carries the run's UID, the question as asked and the values; the signed
    file names them all; the run goes on; the decision is stored with its signature."""
    dbp = tmp_path / "state.db"
    waited = _waiting(signed_bundle, tmp_path, dbp)
    uid = run_row(dbp)["uid"]
    assert len(uid) == 32 and "uid %s" % uid in waited.stdout
    assert "approval request 1 gate -o request.json" in waited.stdout
    request = json.loads(_request(signed_bundle, tmp_path, dbp).read_text())
    assert (request["run_uid"], request["node"], request["question"], request["values"]) == (
        uid, "gate", "Deploy to staging?", {"ENVIRONMENT": "staging"})
    signed = _sign(tmp_path, tmp_path / "request.json", keys["alice"], "alice", "--note", "dashboards green",
                   "--bundle", signed_bundle)
    payload = json.loads(signed.read_text())["payload"]
    assert (payload["run_uid"], payload["node"], payload["decision"]) == (uid, "gate", "approved")
    assert payload["question"] == approvals.digest("Deploy to staging?")
    r = _bundle(signed_bundle, tmp_path, "resume", "--approval", signed, "--state-path", dbp)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _side(tmp_path) == ["deploy staging"]
    gate = [row for row in _rows(dbp) if row["node_id"] == "gate"]
    assert [(row["how"], row["principal"], row["note"], row["used"]) for row in gate] == [("signed", "alice", "dashboards green", 1)]
    assert gate[0]["signature"] == signed.read_text() and gate[0]["fingerprint"].startswith("SHA256:")
    shown = _bundle(signed_bundle, tmp_path, "show", "--run", "1", "--state-path", dbp)
    assert "uid %s" % uid in shown.stdout


def test_sign_refuses_a_request_made_with_another_bundle(tmp_path, signed_bundle, keys):
    dbp = tmp_path / "state.db"
    _waiting(signed_bundle, tmp_path, dbp)
    other = _compile(tmp_path, write_runbook(tmp_path, signed_text(deploy="echo other")), tmp_path / "other.pyz",
                     "--approval-signers", keys["signers"])
    r = pb(tmp_path, "approval", "sign", _request(signed_bundle, tmp_path, dbp), "--key", keys["alice"], "--principal", "alice",
           "--bundle", other, "-o", tmp_path / "a.json")
    assert r.returncode == 2 and "it was made with another bundle" in r.err
    assert not (tmp_path / "a.json").exists()


@pytest.mark.parametrize("how", ["approve-flag", "auto-approve"])
def test_flags_cannot_approve_a_signed_step(tmp_path, signed_bundle, how):
    dbp = tmp_path / "state.db"
    flag = ["--approve", "gate"] if how == "approve-flag" else ["--auto-approve"]
    r = _bundle(signed_bundle, tmp_path, "run", "--var", "ENVIRONMENT=staging", *flag, "--state-path", dbp)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot approve gate: this bundle accepts only signed approvals for it" in r.stderr
    assert "Traceback" not in r.stderr and not dbp.exists() or run_rows(dbp) == []


def run_rows(dbp):
    con = sqlite3.connect(str(dbp))
    try:
        return con.execute("SELECT id FROM runs").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def test_questions_without_a_policy_stay_the_operators_own(tmp_path, signed_bundle):
    dbp = tmp_path / "state.db"
    _waiting(signed_bundle, tmp_path, dbp)
    notice = [row for row in _rows(dbp) if row["node_id"] == "notice"]
    assert [(row["how"], row["decision"]) for row in notice] == [("flag", "approved")]
    assert status_of(dbp)["notice"] == "succeeded"


def test_a_terminal_answer_is_never_asked_for_a_signed_step(tmp_path, signed_bundle):
    """On a pty: the plain question is asked and answered; the signed step is not asked at all,
    the run waits (exit 3) and says how to get a signature."""
    import pexpect

    dbp = tmp_path / "state.db"
    child = pexpect.spawn(str(signed_bundle), ["run", "--var", "ENVIRONMENT=staging", "--state-path", str(dbp)], cwd=str(tmp_path),
                          env=dict(os.environ, PLAYBOOK_PYTHON=SYSTEM_PYTHON, NO_COLOR="1", TERM="dumb"),
                          encoding="utf-8", timeout=30, dimensions=(50, 200))
    child.expect("Seen the notice")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    text = child.before
    assert child.exitstatus == 3, text
    assert "Deploy to staging?" not in text.replace("waiting: Deploy to staging?", "")  # never put as a question
    assert "needs a signed approval" in text and "approval request 1 gate" in text
    assert [(row["node_id"], row["how"]) for row in _rows(dbp)] == [("notice", "terminal")]
    assert _side(tmp_path) == []


def test_unsigned_approve_is_refused_by_the_bundle_and_by_any_other_copy_of_the_tool(tmp_path, signed_bundle):
    dbp = tmp_path / "state.db"
    _waiting(signed_bundle, tmp_path, dbp)
    r = _bundle(signed_bundle, tmp_path, "approve", "1", "gate", "--state-path", dbp)
    assert r.returncode == 2 and "gate accepts only a signed approval" in r.stderr, r.stderr
    assert "approval request 1 gate -o request.json" in r.stderr
    # the installed tool, on the bundle's database: the run records that it needs signatures
    r = pb(tmp_path, "approve", "1", "gate", "--state-path", dbp)
    assert r.returncode == 2 and "gate accepts only a signed approval" in r.err, r.text
    assert [row["node_id"] for row in _rows(dbp)] == ["notice"]


def test_set_status_never_settles_a_step_with_a_policy(tmp_path, signed_bundle):
    dbp = tmp_path / "state.db"
    _waiting(signed_bundle, tmp_path, dbp)
    for status in ("succeeded", "skipped"):
        r = _bundle(signed_bundle, tmp_path, "set-status", "1", "gate", status, "--reason", "trust me", "--state-path", dbp)
        assert r.returncode == 2 and "gate is an approval with a policy (1 approval by anyone)" in r.stderr, r.stderr
        assert "approve 1 gate" in r.stderr
    r = _bundle(signed_bundle, tmp_path, "resume", "--state-path", dbp)
    assert r.returncode == 3 and _side(tmp_path) == []
    # a plain Manual step stays an audited override
    r = _bundle(signed_bundle, tmp_path, "set-status", "1", "notice", "succeeded", "--reason", "seen", "--state-path", dbp)
    assert r.returncode == 0, r.stderr


def test_set_status_refuses_a_policy_step_without_signatures_too(tmp_path):
    rb = write_runbook(tmp_path, GATE.format(policy="approvals = 2"))
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 3
    r = pb(tmp_path, "set-status", "1", "gate", "succeeded", "--state-path", dbp)
    assert r.returncode == 2 and "set-status never settles it as succeeded" in r.err
    plain = write_runbook(tmp_path, GATE.format(policy=""), name="plain.playbook.toml")
    db2 = tmp_path / "plain.db"
    assert pb(tmp_path, "run", plain, "--state-path", db2).returncode == 3
    assert pb(tmp_path, "set-status", "1", "gate", "succeeded", "--state-path", db2).returncode == 0


def _insert(dbp, sql, params=()):
    con = sqlite3.connect(str(dbp))
    try:
        con.execute(sql, params)
        con.commit()
    finally:
        con.close()


def test_rows_written_by_hand_are_worth_nothing(tmp_path, signed_bundle, keys):
    """sqlite3 on the state file: an approval row that claims a signature, a valid signed
    document of another run pasted into this one, a succeeded attempt of the gate: none lets the
    gated step run."""
    other = tmp_path / "other"
    other.mkdir()
    db_other = other / "state.db"
    _waiting(signed_bundle, other, db_other)
    document = _signed_approval(signed_bundle, other, db_other, keys).read_text()

    dbp = tmp_path / "state.db"
    _waiting(signed_bundle, tmp_path, dbp)
    now = "2026-01-01T00:00:00.000Z"
    _insert(dbp, "INSERT INTO approvals (run_id, node_id, decision, who, how, principal, at) "
                 "VALUES (1, 'gate', 'approved', 'alice@ws', 'signed', 'alice', ?)", (now,))
    _insert(dbp, "INSERT INTO approvals (run_id, node_id, decision, who, how, principal, at, signature) "
                 "VALUES (1, 'gate', 'approved', 'bob@ws', 'signed', 'bob', ?, ?)", (now, document))
    r = _bundle(signed_bundle, tmp_path, "resume", "--state-path", dbp)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "not signed: this bundle accepts only signed approvals for gate" in r.stdout
    assert "it does not belong here" in r.stdout  # the pasted document names another run uid
    assert _side(tmp_path) == []
    forged = [row for row in _rows(dbp) if row["node_id"] == "gate"]
    assert all(row["voided"] for row in forged) and len(forged) == 2
    # a succeeded attempt of the gate, written by hand: asked again, deploy does not run
    _insert(dbp, "INSERT INTO attempts (run_id, node_id, attempt, status, decision, decided_by, started_at, ended_at) "
                 "VALUES (1, 'gate', 9, 'succeeded', 'approved', 'alice@ws', ?, ?)", (now, now))
    r = _bundle(signed_bundle, tmp_path, "resume", "--state-path", dbp)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "gate: its approval no longer counts" in r.stdout
    assert _side(tmp_path) == []


def test_an_approval_of_one_database_never_approves_another(tmp_path, signed_bundle, keys):
    """Run 1 of a staging database and run 1 of a prod database: the staging approval names the
    staging run's UID (refused), and with the prod run's UID overwritten by hand to match, its
    values (refused)."""
    staging, prod = tmp_path / "staging", tmp_path / "prod"
    staging.mkdir()
    prod.mkdir()
    db_staging, db_prod = staging / "state.db", prod / "state.db"
    _waiting(signed_bundle, staging, db_staging, "staging")
    _waiting(signed_bundle, prod, db_prod, "prod")
    signed = _signed_approval(signed_bundle, staging, db_staging, keys)
    r = _bundle(signed_bundle, prod, "approve", "1", "gate", "--signature", signed, "--state-path", db_prod)
    assert r.returncode == 2 and "approves run uid" in r.stderr and "it does not belong here" in r.stderr, r.stderr
    _insert(db_prod, "UPDATE runs SET uid = ? WHERE id = 1", (run_row(db_staging)["uid"],))
    r = _bundle(signed_bundle, prod, "approve", "1", "gate", "--signature", signed, "--state-path", db_prod)
    assert r.returncode == 2 and "approves values (digest)" in r.stderr, r.stderr
    r = _bundle(signed_bundle, prod, "resume", "--approval", signed, "--state-path", db_prod)
    assert r.returncode == 2 and (prod / "side.log").exists() is False
    assert [row["node_id"] for row in _rows(db_prod)] == ["notice"]


def _expired_document(tmp_path, request, key):
    data = approvals.run_payload(json.loads(request.read_text()), "approved", "alice", datetime.timedelta(minutes=5))
    data["issued"], data["expires"] = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
    path = tmp_path / "expired.json"
    path.write_text(approvals.signed_document(data, approvals.sign(data, str(key))))
    return path


@pytest.mark.parametrize(
    "case, code, message",
    [
        ("other-node", 2, "approves step notice, not gate"),
        ("other-question", 2, "approves another question than gate asks now"),
        ("expired", 2, "expired at"),
        ("unknown-principal", 4, "does not verify for principal 'mallory'"),
        ("wrong-principal", 4, "does not verify for principal 'bob'"),
        ("tampered", 4, "does not verify"),
        ("old-format", 2, "signed by an older Playbook"),
    ],
)
def test_signed_approval_refusals(tmp_path, signed_bundle, keys, case, code, message):
    dbp = tmp_path / "state.db"
    _waiting(signed_bundle, tmp_path, dbp)
    request = _request(signed_bundle, tmp_path, dbp)
    out = tmp_path / "a.json"
    if case == "expired":
        out = _expired_document(tmp_path, request, keys["alice"])
    elif case in ("other-node", "other-question", "old-format"):
        data = json.loads(request.read_text())
        if case == "other-node":
            data["node"] = "notice"
        else:
            data["question"] = "Deploy to staging? (harmless)"
        payload = approvals.run_payload(data, "approved", "alice", datetime.timedelta(hours=1))
        if case == "old-format":
            payload["format"] = 1
        out.write_text(approvals.signed_document(payload, approvals.sign(payload, str(keys["alice"]))))
    elif case == "unknown-principal":
        _sign(tmp_path, request, keys["mallory"], "mallory", out=out)
    elif case == "wrong-principal":
        _sign(tmp_path, request, keys["alice"], "bob", out=out)  # alice's key claiming to be bob
    else:
        _sign(tmp_path, request, keys["alice"], "alice", out=out)
        doc = json.loads(out.read_text())
        doc["payload"]["decision"] = "rejected"
        out.write_text(json.dumps(doc))
    r = _bundle(signed_bundle, tmp_path, "approve", "1", "gate", "--signature", out, "--state-path", dbp)
    assert r.returncode == code, r.stdout + r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert [row["node_id"] for row in _rows(dbp)] == ["notice"]


def test_validity_is_bounded(tmp_path, signed_bundle, keys):
    dbp = tmp_path / "state.db"
    _waiting(signed_bundle, tmp_path, dbp)
    request = _request(signed_bundle, tmp_path, dbp)
    for absurd in ("999999999999d", "8d", "0m", "-1h", "2w"):
        r = pb(tmp_path, "approval", "sign", request, "--key", keys["alice"], "--valid-for", absurd, "-o", tmp_path / "x.json")
        assert r.returncode == 2, (absurd, r.text)
        assert "--valid-for" in r.err and "Traceback" not in r.text and "internal error" not in r.text
    assert not list(tmp_path.rglob("playbook-crash-*")) and not (tmp_path / "x.json").exists()
    assert _sign(tmp_path, request, keys["alice"], "alice", "--valid-for", "7d")
    # a bundle that accepts at most an hour refuses an approval valid for two
    short = _compile(tmp_path, write_runbook(tmp_path, signed_text(), name="short.playbook.toml"), tmp_path / "short.pyz",
                     "--approval-signers", keys["signers"], "--approval-max-valid", "1h")
    db2 = tmp_path / "short.db"
    _waiting(short, tmp_path, db2)
    long = _sign(tmp_path, _request(short, tmp_path, db2, out=tmp_path / "r2.json"), keys["alice"], "alice", "--valid-for", "2h",
                 out=tmp_path / "long.json")
    r = _bundle(short, tmp_path, "approve", "--signature", long, "--state-path", db2)
    assert r.returncode == 2 and "this bundle accepts at most 1 hour" in r.stderr, r.stderr
    r = pb(tmp_path, "compile", tmp_path / "short.playbook.toml", "-o", tmp_path / "s2.pyz", "--approval-signers",
           keys["signers"], "--approval-max-valid", "30d")
    assert r.returncode == 2 and "--approval-max-valid" in r.err


def test_four_eyes_with_signatures_needs_two_principals(tmp_path, keys):
    rb = write_runbook(tmp_path, signed_text().replace("approvals = 1", "approvals = 2"))
    bundle = _compile(tmp_path, rb, tmp_path / "two.pyz", "--approval-signers", keys["signers"])
    dbp = tmp_path / "state.db"
    _waiting(bundle, tmp_path, dbp)
    first = _signed_approval(bundle, tmp_path, dbp, keys, out=tmp_path / "alice.json")
    again = _sign(tmp_path, tmp_path / "request.json", keys["alice"], "alice", out=tmp_path / "alice2.json")
    r = _bundle(bundle, tmp_path, "resume", "--approval", first, "--approval", again, "--state-path", dbp)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "gate waits for a signed approval (2 approvals by anyone; 1 of 2 given, by alice)" in r.stdout  # alice twice is one person
    assert _side(tmp_path) == []
    bob = _sign(tmp_path, tmp_path / "request.json", keys["bob"], "bob", out=tmp_path / "bob.json")
    r = _bundle(bundle, tmp_path, "resume", "--approval", bob, "--state-path", dbp)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _side(tmp_path) == ["deploy staging"]
    used = sorted(row["principal"] for row in _rows(dbp) if row["node_id"] == "gate" and row["used"])
    assert used == ["alice", "alice", "bob"]


# -- replan never reuses an approval for something it did not approve --------------------------------
REPLAN = """
[prep]
type = "Command"
command_name = "echo {prep} >> side.log"
depends_on = []

[gate]
type = "Manual"
prompt_after = "{question}"

[act]
type = "Command"
command_name = "test ! -e stop && echo {act} >> side.log"

[report]
type = "Command"
command_name = "echo report >> side.log"
prompt_before = "Send the report?"
"""


def _replan_runbook(tmp_path, prep="prep", question="Restart the web tier (harmless)?", act="restart"):
    return write_runbook(tmp_path, REPLAN.format(prep=prep, question=question, act=act), title="replan")


def _stopped_after_the_gate(tmp_path):
    """Run 1: gate approved by flag, act failed (the stop file), so the run can be replanned."""
    rb = _replan_runbook(tmp_path)
    dbp = tmp_path / "state.db"
    (tmp_path / "stop").write_text("")
    r = pb(tmp_path, "run", rb, "--approve", "gate", "--state-path", dbp)
    assert r.returncode == 1, r.text
    (tmp_path / "stop").unlink()
    return rb, dbp


def test_replan_voids_an_approval_whose_question_and_gated_step_changed(tmp_path):
    """Alice approved "Restart the web tier (harmless)?"; the runbook now asks something else
    and runs another command: her approval does not count for it."""
    _, dbp = _stopped_after_the_gate(tmp_path)
    _replan_runbook(tmp_path, question="Drop the database?", act="drop-database")
    r = pb(tmp_path, "resume", tmp_path / "rb.playbook.toml", "--replan", "--state-path", dbp)
    assert r.returncode == 3, r.text
    assert "gate waits for an approval" in r.text
    assert _side(tmp_path) == ["prep"]
    shown = pb(tmp_path, "show", "--run", "1", "--state-path", dbp)
    assert "approval voided by replan (question or gated steps changed)" in shown.out
    report = json.loads(pb(tmp_path, "report", "1", "--json", "--state-path", dbp).out)
    assert "approval voided by replan" in json.dumps(report)


def test_replan_voids_an_approval_whose_gated_step_changed(tmp_path):
    _, dbp = _stopped_after_the_gate(tmp_path)
    _replan_runbook(tmp_path, act="restart --all")
    r = pb(tmp_path, "resume", tmp_path / "rb.playbook.toml", "--replan", "--state-path", dbp)
    assert r.returncode == 3 and "gate waits for an approval" in r.text, r.text
    assert _side(tmp_path) == ["prep"]


def test_replan_keeps_an_approval_when_its_question_and_gated_steps_are_unchanged(tmp_path):
    _, dbp = _stopped_after_the_gate(tmp_path)
    _replan_runbook(tmp_path, prep="prepare")  # before the gate: it gates nothing of it
    r = pb(tmp_path, "resume", tmp_path / "rb.playbook.toml", "--replan", "--approve", "report", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert _side(tmp_path) == ["prep", "prepare", "restart", "report"]
    assert [row["node_id"] for row in _rows(dbp) if row["voided"]] == []


def test_an_out_of_band_approval_given_before_a_replan_is_voided_with_the_question(tmp_path):
    rb = _replan_runbook(tmp_path)
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 3  # waits for gate
    assert pb(tmp_path, "approve", "1", "gate", "--note", "harmless restart", "--state-path", dbp).returncode == 0
    _replan_runbook(tmp_path, question="Drop the database?", act="drop-database")
    r = pb(tmp_path, "resume", rb, "--replan", "--state-path", dbp)
    assert r.returncode == 3, r.text
    assert _side(tmp_path) == ["prep"]
    (row,) = _rows(dbp)
    assert row["voided"] == "approval voided by replan (question or gated steps changed)" and row["used"] == 0


def test_replan_voids_a_signed_approval_by_construction(tmp_path, keys):
    """A signed approval binds the plan: a newer bundle of the same runbook continues the run
    (--replan) but asks again, before the gated step runs again."""
    rb = write_runbook(tmp_path, signed_text())
    first = _compile(tmp_path, rb, tmp_path / "v1.pyz", "--approval-signers", keys["signers"])
    dbp = tmp_path / "state.db"
    _waiting(first, tmp_path, dbp)
    signed = _signed_approval(first, tmp_path, dbp, keys)
    (tmp_path / "stop").write_text("")
    r = _bundle(first, tmp_path, "resume", "--approval", signed, "--state-path", dbp)
    assert r.returncode == 1, r.stdout + r.stderr  # deploy failed after the approved gate
    (tmp_path / "stop").unlink()
    rb.write_text(signed_text(deploy="test ! -e stop && echo deploy v2 {{ ENVIRONMENT }} >> side.log"))
    second = _compile(tmp_path, rb, tmp_path / "v2.pyz", "--approval-signers", keys["signers"])
    r = _bundle(second, tmp_path, "resume", "--replan", "--state-path", dbp)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "needs a signed approval" in r.stdout
    assert _side(tmp_path) == []
    # the same signed file again: it approves the old plan
    r = _bundle(second, tmp_path, "approve", "--signature", signed, "--state-path", dbp)
    assert r.returncode == 2 and "approves plan" in r.stderr, r.stderr
