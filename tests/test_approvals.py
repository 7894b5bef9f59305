"""Approvals (runtime/approvals.py, DESIGN §3 Approvals): --approve NODE, waiting runs and
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

from playbook.runtime import approvals

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
    assert "run 1 waits for an approval of gate (%s)" % command.replace("playbook", str(shown.args[0]), 1) in shown.text or \
        "run 1 waits for an approval of gate" in shown.text
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
    me = approvals.real_user()
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
        assert "gate waits for an approval (2 approvals by anyone)" in r.stdout + r.stderr
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


# -- signed approvals ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory):
    """Two ssh keys (alice is an approval signer, mallory is not) and a bundle compiled with
    --approval-signers."""
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen is not installed (CI installs openssh-client)")
    tmp = tmp_path_factory.mktemp("signed")
    keys = {}
    for name in ("alice", "mallory"):
        key = tmp / ("%s_key" % name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
        keys[name] = key
    signers = tmp / "allowed_signers"
    signers.write_text("alice %s\n" % " ".join(Path(str(keys["alice"]) + ".pub").read_text().split()[:2]))
    rb = write_runbook(tmp, GATE.format(policy=""))
    return keys, _compile(tmp, rb, tmp / "gate.pyz", "--approval-signers", str(signers))


@pytest.fixture
def signing(tmp_path, signed_bundle):
    """A run of the signed bundle, waiting for `gate`."""
    keys, bundle = signed_bundle
    dbp = tmp_path / "state.db"
    r = subprocess.run([str(bundle), "run", "--state-path", str(dbp)], capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    assert r.returncode == 3, r.stdout + r.stderr
    return keys, bundle, dbp


def _sign(tmp_path, bundle, key, out, *extra, run="1", node="gate"):
    return pb(tmp_path, "approval", "sign", "--bundle", bundle, "--run", run, "--node", node, "--key", key, "-o", out, *extra)


def _approve(bundle, dbp, *args):
    return subprocess.run([str(bundle), "approve", *args, "--state-path", str(dbp)], capture_output=True, text=True, stdin=subprocess.DEVNULL)


def test_signed_approval_round_trip(tmp_path, signing):
    keys, bundle, dbp = signing
    out = tmp_path / "a.json"
    r = _sign(tmp_path, bundle, keys["alice"], out, "--principal", "alice", "--note", "looked at it")
    assert r.returncode == 0, r.text
    r = _approve(bundle, dbp, "1", "gate", "--signature", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([str(bundle), "resume", "--state-path", str(dbp)], capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    (row,) = _rows(dbp)
    assert (row["how"], row["principal"], row["note"]) == ("signed", "alice", "looked at it")
    assert row["fingerprint"].startswith("SHA256:")


def _expired_document(tmp_path, bundle, key):
    import hashlib
    import zipfile

    with zipfile.ZipFile(str(bundle)) as archive:
        plan_hash = hashlib.sha256(archive.read("plan.json")).hexdigest()
    data = approvals.payload(plan_hash, 1, "gate", "approved", "alice", datetime.timedelta(minutes=-5))
    path = tmp_path / "expired.json"
    path.write_text(approvals.signed_document(data, approvals.sign(data, str(key))))
    return path


@pytest.mark.parametrize(
    "case, code, message",
    [
        ("unsigned", 2, "accepts only signed approvals"),
        ("other-run", 2, "approves run 2, not run 1: it does not belong to this run"),
        ("other-node", 2, "approves node prep, not node gate"),
        ("other-plan", 2, "approves plan"),
        ("expired", 2, "expired at"),
        ("unknown-principal", 4, "does not verify for principal 'mallory'"),
        ("tampered", 4, "does not verify"),
    ],
)
def test_signed_approval_refusals(tmp_path, signing, case, code, message):
    keys, bundle, dbp = signing
    out = tmp_path / "a.json"
    if case == "unsigned":
        r = _approve(bundle, dbp, "1", "gate")
    else:
        if case == "expired":
            out = _expired_document(tmp_path, bundle, keys["alice"])
        elif case == "other-plan":
            assert pb(tmp_path, "approval", "sign", "--plan-hash", "0" * 64, "--run", "1", "--node", "gate",
                      "--key", keys["alice"], "--principal", "alice", "-o", out).returncode == 0
        else:
            key = keys["mallory"] if case == "unknown-principal" else keys["alice"]
            principal = "mallory" if case == "unknown-principal" else "alice"
            run = "2" if case == "other-run" else "1"
            node = "prep" if case == "other-node" else "gate"
            assert _sign(tmp_path, bundle, key, out, "--principal", principal, run=run, node=node).returncode == 0
        if case == "tampered":
            doc = json.loads(out.read_text())
            doc["payload"]["decision"] = "rejected"
            out.write_text(json.dumps(doc))
        r = _approve(bundle, dbp, "1", "gate", "--signature", str(out))
    assert r.returncode == code, r.stdout + r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert _rows(dbp) == []


def test_plan_shows_the_policy(tmp_path):
    rb = write_runbook(tmp_path, GATE.format(policy='approvers = ["alice", "@ops"]\napprovals = 2'))
    r = pb(tmp_path, "plan", rb)
    assert r.returncode == 0, r.text
    assert "approval: 2 approvals by alice, @ops" in r.text
