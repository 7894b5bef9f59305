"""runtime/session.py and runtime/errors.py: a run's lifecycle when the state database fails
under it, and the one error handler of the entry points.

Real parts: the `playbook` console script as a subprocess, real SQLite files with a second real
connection holding the write lock, a real full tmpfs (as root; skipped otherwise), and the
crash report of an unexpected exception.
"""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import pb, run_row, status_of, write_runbook

from playbook.runtime import engine, errors, session, state
from playbook.runtime.executors import CommandResult


def _config(tmp_path, timeout):
    path = tmp_path / "playbook.toml"
    path.write_text("[database]\ntimeout = %s\n" % timeout, encoding="utf-8")
    return {"PLAYBOOK_CONFIG": str(path)}


def _one_line_error(text):
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


HOLDER = r"""
import os, sqlite3, sys, time
db, go, ready, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
if go != "-":
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("never told to take the lock")
        time.sleep(0.02)
con = sqlite3.connect(db, isolation_level=None, timeout=30)
con.execute("BEGIN IMMEDIATE")
open(ready, "w").close()
time.sleep(seconds)
con.execute("ROLLBACK")
"""


def _holder(tmp_path, dbp, go, seconds):
    """A second process that takes the database's write lock (when `go` appears) and holds it."""
    ready = tmp_path / "holder-ready"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(dbp), str(go), str(ready), str(seconds)])
    return proc, ready


def _wait_for(path, proc, limit=20.0):
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, "the lock holder ended early"
        assert time.monotonic() < deadline, "the lock holder never took the lock"
        time.sleep(0.02)


def test_lock_held_by_another_connection_at_start_is_exit_4_one_line(tmp_path):
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "true"\n')
    dbp = tmp_path / "state.db"
    state.Store(dbp).close()  # the database exists; another connection then holds its write lock
    proc, ready = _holder(tmp_path, dbp, "-", 30)
    try:
        _wait_for(ready, proc)
        r = pb(tmp_path, "run", rb, "--state-path", dbp, env=_config(tmp_path, 0.3))
    finally:
        proc.kill()
        proc.wait()
    assert r.returncode == errors.EXIT_STATE, r.text
    line = _one_line_error(r.stderr)
    assert "the state database %s is locked" % dbp in line
    assert "pid %d" % proc.pid in line  # who holds it
    assert "timeout" in line


def test_lock_held_past_the_timeout_mid_run_is_exit_4_and_resumable(tmp_path):
    go = tmp_path / "go"
    rb = write_runbook(
        tmp_path,
        """
        [first]
        type = "Command"
        command_name = "touch %s && sleep 1"

        [second]
        type = "Command"
        command_name = "echo second"
        """ % go,
    )
    dbp = tmp_path / "state.db"
    state.Store(dbp).close()
    proc, ready = _holder(tmp_path, dbp, go, 4)
    try:
        r = pb(tmp_path, "run", rb, "--state-path", dbp, env=_config(tmp_path, 0.3))
        assert ready.exists()
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert r.returncode == errors.EXIT_STATE, r.text
    line = _one_line_error(r.stderr)
    assert "is locked" in line and "resume with: playbook resume %s 1" % rb in line
    assert run_row(dbp)["status"] == "running"  # nothing recorded it as finished
    r2 = pb(tmp_path, "resume", rb, "--rerun-interrupted", "--state-path", dbp)
    assert r2.returncode == 0, r2.text
    assert status_of(dbp) == {"first": "succeeded", "second": "succeeded"}
    assert run_row(dbp)["status"] == "succeeded"


def _mount_tmpfs(path, size):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.decode(errors="replace").strip())


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_full_disk_mid_run_is_exit_4_one_line_and_resumable(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "512k")
    try:
        dbp = disk / "state.db"
        filler = disk / "filler"
        marker = tmp_path / "filled"
        rb = write_runbook(
            tmp_path,
            """
            [fill]
            type = "Command"
            command_name = "[ -e {marker} ] || {{ touch {marker}; dd if=/dev/zero of={filler} bs=4k 2>/dev/null; }}; seq 1 20000"

            [after]
            type = "Command"
            command_name = "echo after"
            """.format(marker=marker, filler=filler),
        )
        r = pb(tmp_path, "run", rb, "--state-path", dbp)
        assert r.returncode == errors.EXIT_STATE, r.text
        line = _one_line_error(r.stderr)
        assert "the disk holding the state database %s is full; free some space" % dbp in line
        assert "resume with: playbook resume %s 1" % rb in line
        filler.unlink()
        r2 = pb(tmp_path, "resume", rb, "--rerun-interrupted", "--state-path", dbp)
        assert r2.returncode == 0, r2.text
        assert status_of(dbp) == {"fill": "succeeded", "after": "succeeded"}
        con = sqlite3.connect(str(dbp))
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            con.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# -- the one handler -------------------------------------------------------------------------------
def test_guard_turns_a_playbook_error_into_one_line_and_its_code(capsys):
    def main():
        raise errors.StateError("the state database x is locked")

    assert errors.guard(main) == errors.EXIT_STATE
    assert capsys.readouterr().err == "error: the state database x is locked\n"
    assert errors.guard(lambda: (_ for _ in ()).throw(errors.UsageError("bad flag"))) == errors.EXIT_INVALID


def test_guard_writes_an_unexpected_traceback_to_a_file_with_secrets_masked(tmp_path, capsys):
    errors.set_crash_dir(str(tmp_path))
    errors.register_secrets(["hunter2-secret"])
    try:

        def main():
            raise RuntimeError("boom with hunter2-secret inside")

        assert errors.guard(main) == errors.EXIT_STATE
    finally:
        errors.set_crash_dir(None)
        errors._secrets.discard("hunter2-secret")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error (RuntimeError: boom with *** inside)" in err
    reports = list(tmp_path.glob("playbook-crash-*.txt"))
    assert len(reports) == 1 and str(reports[0]) in err
    text = reports[0].read_text()
    assert "Traceback" in text and "RuntimeError" in text
    assert "hunter2-secret" not in text


class _QuietUI:
    interactive = False

    def event(self, kind, **data):
        pass


def test_a_bug_while_driving_leaves_the_run_resumable(tmp_path):
    """An unexpected exception in the middle of a run: exit 4 with a crash report, the run left
    `running` with its lock free; resume finishes it without running the first step again."""
    from playbook.compiler.plan import compile_file

    rb = write_runbook(
        tmp_path,
        '[one]\ntype = "Command"\ncommand_name = "echo one"\n\n[two]\ntype = "Command"\ncommand_name = "echo two"\n',
    )
    plan = compile_file(str(rb)).plan
    ran = []

    def buggy(command, **kwargs):
        ran.append(command)
        if command == "echo two":
            raise KeyError("a bug")
        return CommandResult(exit_code=0, stdout="ok\n", duration=0.0)

    store = state.Store(tmp_path / "state.db")
    errors.set_crash_dir(str(tmp_path))
    try:
        runs = session.Session(store, _QuietUI(), engine.Options(), lambda verb, run_id, *w: "playbook %s rb %d" % (verb, run_id), runner=buggy)
        code = errors.guard(lambda: runs.start(plan, plan, {}, str(rb)))
    finally:
        errors.set_crash_dir(None)
    assert code == errors.EXIT_STATE
    assert list(tmp_path.glob("playbook-crash-*.txt"))
    assert store.get_run(1)["status"] == "interrupted"  # recorded running, nobody drives it
    store.lock_run(1).release()  # nobody holds it any more

    def good(command, **kwargs):
        ran.append(command)
        return CommandResult(exit_code=0, stdout="ok\n", duration=0.0)

    opts = engine.Options(rerun_interrupted=True)
    runs = session.Session(store, _QuietUI(), opts, lambda verb, run_id, *w: "playbook %s rb %d" % (verb, run_id), runner=good)
    found = session.find_resumable(store, None, plan)
    assert runs.resume(found, plan, {}) == errors.EXIT_OK
    assert ran == ["echo one", "echo two", "echo two"]
    assert store.get_run(1)["status"] == "succeeded"
    store.close()


# -- runs belong to a runbook; fix, then resume --replan -----------------------------------------
def _events(dbp, kind):
    con = sqlite3.connect(str(dbp))
    try:
        return [r[0] for r in con.execute("SELECT detail FROM events WHERE kind = ? ORDER BY id", (kind,))]
    finally:
        con.close()


def _runbook_ids(dbp):
    con = sqlite3.connect(str(dbp))
    try:
        return [r[0] for r in con.execute("SELECT runbook_id FROM runs ORDER BY id")]
    finally:
        con.close()


SAME_TITLE_A = '[runbook]\ntitle = "deploy"\nauthor = "team a"\n\n[a]\ntype = "Command"\ncommand_name = "exit 1"\n'
SAME_TITLE_B = '[runbook]\ntitle = "deploy"\nauthor = "team b"\n\n[b]\ntype = "Command"\ncommand_name = "echo B-RAN >> side.log"\n'


@pytest.mark.parametrize("mode", [(), ("--force",), ("--replan",)], ids=["plain", "force", "replan"])
def test_resume_refuses_another_runbooks_run_in_every_mode(tmp_path, mode):
    a = write_runbook(tmp_path, SAME_TITLE_A, name="a.playbook.toml")
    b = write_runbook(tmp_path, SAME_TITLE_B, name="b.playbook.toml")
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", a, "--state-path", dbp).returncode == 1
    r = pb(tmp_path, "resume", b, "1", *mode, "--state-path", dbp)
    assert r.returncode == 2, r.text
    assert "run 1 belongs to another runbook: 'deploy' (runbook deploy-" in r.text
    assert not (tmp_path / "side.log").exists()
    ids = _runbook_ids(dbp)
    assert len(ids) == 1 and ids[0].startswith("deploy-")


def test_runs_of_one_runbook_group_together_and_same_titles_stay_apart(tmp_path):
    templated = write_runbook(
        tmp_path,
        '[runbook]\ntitle = "Deploy {{ ENV }}"\n\n[variables]\nENV = "dev"\n\n[a]\ntype = "Command"\ncommand_name = "true"\n',
        name="t.playbook.toml",
    )
    a = write_runbook(tmp_path, SAME_TITLE_A, name="a.playbook.toml")
    b = write_runbook(tmp_path, SAME_TITLE_B, name="b.playbook.toml")
    dbp = tmp_path / "state.db"
    for env in ("dev", "prod"):
        assert pb(tmp_path, "run", templated, "--var", "ENV=" + env, "--state-path", dbp).returncode == 0
    pb(tmp_path, "run", a, "--state-path", dbp)
    pb(tmp_path, "run", b, "--state-path", dbp)
    r = pb(tmp_path, "info", "--json", "--state-path", dbp)
    workflows = __import__("json").loads(r.stdout)["workflows"]
    assert sorted((w["title"], w["runs"]) for w in workflows.values()) == [("Deploy prod", 2), ("deploy", 1), ("deploy", 1)]
    # show NAME: a unique part of the title, the file, or the id
    r = pb(tmp_path, "show", "deploy {{", "--since", "7d", "--json", "--state-path", dbp)
    assert r.returncode == 2 and "no runbook" in r.text
    r = pb(tmp_path, "show", "prod", "--since", "7d", "--json", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert [run["title"] for run in __import__("json").loads(r.stdout)["runs"]] == ["Deploy prod", "Deploy dev"]
    r = pb(tmp_path, "show", b, "--json", "--state-path", dbp)
    assert [run["id"] for run in __import__("json").loads(r.stdout)["runs"]] == [4]
    r = pb(tmp_path, "show", "deploy", "--state-path", dbp)
    assert r.returncode == 2 and "matches several runbooks" in r.text


FIX = """
[prepare]
type = "Command"
command_name = "echo prepared >> side.log"

[migrate]
type = "Command"
command_name = "{command}"

[finish]
type = "Command"
command_name = "echo finished >> side.log"
"""


def test_fix_the_runbook_then_resume_replan_continues_the_same_run(tmp_path):
    rb = write_runbook(tmp_path, FIX.format(command="ehco migrated >> side.log"))
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert r.returncode == 1, r.text
    rb.write_text(rb.read_text().replace("ehco", "echo"))  # the operator fixes the typo
    r = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r.returncode == 2 and "resume --replan" in r.text
    r = pb(tmp_path, "resume", rb, "--replan", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert (tmp_path / "side.log").read_text().splitlines() == ["prepared", "migrated", "finished"]
    assert status_of(dbp) == {"prepare": "succeeded", "migrate": "succeeded", "finish": "succeeded"}
    assert run_row(dbp)["id"] == 1 and run_row(dbp)["status"] == "succeeded"
    (audit,) = _events(dbp, "replan")
    assert "keep their results: prepare" in audit and "run again (changed or failed): migrate" in audit


def test_replan_runs_a_changed_succeeded_step_again_and_records_removed_ones(tmp_path):
    rb = write_runbook(tmp_path, FIX.format(command="exit 1") + '\n[old]\ntype = "Command"\ncommand_name = "true"\n')
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1
    text = FIX.format(command="echo migrated >> side.log").replace("echo prepared", "echo prepared-again")
    rb.write_text('[runbook]\ntitle = "rt"\n\n' + text)
    r = pb(tmp_path, "resume", rb, "--replan", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert (tmp_path / "side.log").read_text().splitlines() == ["prepared", "prepared-again", "migrated", "finished"]
    assert _events(dbp, "removed") == ["old is no longer in the runbook"]


def test_a_changed_var_is_accepted_only_with_replan(tmp_path):
    rb = write_runbook(
        tmp_path,
        '[variables]\nTARGET = "a"\n\n[one]\ntype = "Command"\ncommand_name = "echo {{ TARGET }} >> side.log"\n\n'
        '[two]\ntype = "Command"\ncommand_name = "test -e go"\n',
    )
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1
    (tmp_path / "go").touch()
    r = pb(tmp_path, "resume", rb, "--var", "TARGET=b", "--state-path", dbp)
    assert r.returncode == 2, r.text
    r = pb(tmp_path, "resume", rb, "--var", "TARGET=b", "--replan", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert (tmp_path / "side.log").read_text().splitlines() == ["a", "b"]  # its command changed: it ran again
    assert __import__("json").loads(run_row(dbp)["variables"]) == {"TARGET": "b"}  # recorded


def test_plan_run_shows_what_a_replan_would_do(tmp_path):
    rb = write_runbook(tmp_path, FIX.format(command="ehco migrated >> side.log"))
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1
    rb.write_text(rb.read_text().replace("ehco", "echo"))
    r = pb(tmp_path, "plan", rb, "--run", "1", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "keep their results: prepare" in r.text and "run again (changed or failed): migrate" in r.text
    r = pb(tmp_path, "plan", rb, "--run", "1", "--json", "--state-path", dbp)
    doc = __import__("json").loads(r.stdout)
    assert (doc["keep"], doc["rerun"], doc["removed"]) == (["prepare"], ["migrate"], [])
    assert _events(dbp, "replan") == []  # a preview changes nothing
