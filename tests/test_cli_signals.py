"""Signals, crashes and locks: SIGINT/SIGTERM to the runner, SIGKILL mid-command then resume,
two processes on one run. Real processes, real SQLite files."""

import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import (
    alive,
    attempts,
    counts,
    final,
    integrity,
    kill_quietly,
    pb,
    pb_start,
    read_pid,
    run_row,
    status_of,
    wait_for,
    wait_gone,
    write_runbook,
)

SLOW = """
[one]
type = "Command"
command_name = "echo one >> side.log"

[slow]
type = "Command"
command_name = "echo slow >> side.log; echo $$ > sh.pid; sleep 300 & echo $! > bg.pid; test -f quick || sleep 30"

[three]
type = "Command"
command_name = "echo three >> side.log"
"""


def _start_slow(tmp_path, *extra):
    rb = write_runbook(tmp_path, SLOW)
    dbp = tmp_path / "state.db"
    proc = pb_start(tmp_path, "run", rb, "--state-path", dbp, *extra)
    try:
        sh = read_pid(tmp_path / "sh.pid")
        bg = read_pid(tmp_path / "bg.pid")
    except AssertionError:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("the slow node never started:\n%s%s" % (out.decode(), err.decode())) from None
    return rb, dbp, proc, sh, bg


def _interrupt(tmp_path, signum):
    """Start the slow runbook, send `signum` to the runner mid-command; returns what is left."""
    rb, dbp, proc, sh, bg = _start_slow(tmp_path)
    try:
        time.sleep(0.2)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    shell_gone = wait_gone(sh, 5)
    bg_gone = wait_gone(bg, 5)
    kill_quietly(sh, group=True)
    kill_quietly(bg)
    return proc.returncode, (out + err).decode("utf-8", "replace"), dbp, shell_gone, bg_gone


SIGNALS = pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])


@SIGNALS
def test_signal_kills_command_group_and_marks_attempt_interrupted(tmp_path, signum):
    code, text, dbp, shell_gone, bg_gone = _interrupt(tmp_path, signum)
    assert shell_gone, "the command's shell survived the interrupt"
    assert bg_gone, "the command's background grandchild survived the interrupt"
    rows = final(dbp)
    assert rows["one"]["status"] == "succeeded"
    assert rows["slow"]["status"] == "interrupted"
    assert "three" not in rows


@SIGNALS
def test_signal_exits_130_with_run_aborted_and_resume_hint(tmp_path, signum):
    code, text, dbp, shell_gone, bg_gone = _interrupt(tmp_path, signum)
    assert code == 130, text
    assert "Traceback" not in text
    assert "resume" in text
    run = run_row(dbp)
    assert run["status"] == "aborted"
    assert run["exit_code"] == 130


def _kill_runner_mid_command(tmp_path):
    rb, dbp, proc, sh, bg = _start_slow(tmp_path)
    wait_for(lambda: any(a["node_id"] == "slow" and a["status"] == "running" for a in attempts(dbp)),
             what="a running row for slow")
    proc.kill()  # SIGKILL: no chance to clean up
    proc.communicate(timeout=20)
    # what a reboot would do to the orphaned command
    kill_quietly(sh, group=True)
    kill_quietly(bg)
    assert wait_gone(sh, 5)
    assert run_row(dbp)["status"] == "running"
    assert final(dbp)["slow"]["status"] == "running"  # the crash left evidence
    (tmp_path / "quick").write_text("")
    return rb, dbp


def test_sigkill_then_resume_without_rerun_flag_stops_clearly(tmp_path):
    rb, dbp = _kill_runner_mid_command(tmp_path)
    r = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r.returncode == 3, r.text
    assert "--rerun-interrupted" in r.text
    assert "slow" in r.text
    assert "Traceback" not in r.text
    assert run_row(dbp)["status"] == "aborted"
    assert final(dbp)["slow"]["status"] == "interrupted"
    assert counts(dbp) == {"one": 1, "slow": 1}
    assert (tmp_path / "side.log").read_text().splitlines() == ["one", "slow"]
    assert integrity(dbp) == "ok"


def test_sigkill_then_resume_rerun_interrupted_runs_nothing_twice(tmp_path):
    rb, dbp = _kill_runner_mid_command(tmp_path)
    r = pb(tmp_path, "resume", rb, "--rerun-interrupted", "--state-path", dbp)
    assert r.returncode == 0, r.text
    run = run_row(dbp)
    assert run["status"] == "succeeded"
    assert [a["status"] for a in attempts(dbp, node="slow")] == ["interrupted", "succeeded"]
    assert counts(dbp) == {"one": 1, "slow": 2, "three": 1}
    assert (tmp_path / "side.log").read_text().splitlines() == ["one", "slow", "slow", "three"]
    assert integrity(dbp) == "ok"


def test_second_process_cannot_drive_the_same_run(tmp_path):
    rb, dbp, proc, sh, bg = _start_slow(tmp_path)
    try:
        run_id = run_row(dbp)["id"]
        r = pb(tmp_path, "resume", rb, str(run_id), "--state-path", dbp)
        assert r.returncode == 4, r.text
        assert str(proc.pid) in r.err
        assert "Traceback" not in r.text
        # the first process is undisturbed: its running row is still running
        assert final(dbp)["slow"]["status"] == "running"
        assert run_row(dbp)["status"] == "running"
        assert proc.poll() is None
        assert alive(sh)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
            kill_quietly(sh, group=True)
            kill_quietly(bg)


def test_sigint_in_parallel_mode_stops_every_command(tmp_path):
    body = "".join(
        '[p%d]\ntype = "Command"\ncommand_name = "echo $$ > p%d.pid; sleep 30"\ndepends_on = []\n\n' % (i, i)
        for i in range(3)
    )
    rb = write_runbook(tmp_path, body)
    dbp = tmp_path / "state.db"
    proc = pb_start(tmp_path, "run", rb, "--parallel", "3", "--state-path", dbp)
    pids = []
    try:
        pids = [read_pid(tmp_path / ("p%d.pid" % i)) for i in range(3)]
        time.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        text = (out + err).decode("utf-8", "replace")
        assert time.monotonic() - started < 10
        assert proc.returncode == 130, text
        assert "Traceback" not in text
        for pid in pids:
            assert wait_gone(pid, 5), "a parallel command survived SIGINT"
        assert run_row(dbp)["status"] == "aborted"
        assert {a["status"] for a in attempts(dbp)} == {"interrupted"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in pids:
            kill_quietly(pid, group=True)


# -- SIGHUP: the operator's terminal goes away mid-step ---------------------------------------------
HANGUP = """
[one]
type = "Command"
command_name = "echo one >> side.log"

[slow]
type = "Command"
command_name = "echo started > slow.started; sleep 2; echo finished >> side.log"
timeout = 60

[three]
type = "Command"
command_name = "echo three >> side.log"
"""


def test_hangup_mid_step_lets_it_finish_starts_nothing_new_and_is_resumable(tmp_path):
    """A real pty closed while a step runs (an SSH connection drops): the runner asks nothing
    more, the step finishes and is recorded, nothing new starts, the run ends aborted with
    "terminal hung up" and exit 129, and `resume` finishes it."""
    from cli_support import spawn

    rb = write_runbook(tmp_path, HANGUP)
    dbp = tmp_path / "state.db"
    child = spawn(tmp_path, "run", rb, "--state-path", dbp)
    pid = child.pid
    try:
        wait_for(lambda: (tmp_path / "slow.started").exists(), what="the slow step to start")
        # the terminal hangs up: closing the pty's master makes the kernel send SIGHUP to the
        # runner (pexpect's own close would add SIGINT, so the pty is closed by hand)
        child.ptyproc.fileobj.close()
        child.ptyproc.closed = child.closed = True
        wait_for(lambda: run_row(dbp)["status"] != "running", timeout=30, what="the run to end")
    finally:
        kill_quietly(pid)
    run = run_row(dbp)
    assert run["status"] == "aborted"
    assert run["exit_code"] == 129
    assert (tmp_path / "side.log").read_text().splitlines() == ["one", "finished"]
    st = final(dbp)
    assert st["slow"]["status"] == "succeeded" and st["slow"]["exit_code"] == 0
    assert "three" not in st
    kinds = [e["kind"] for e in __import__("cli_support").events(dbp)]
    assert "hangup" in kinds
    wait_gone(pid)
    r = pb(tmp_path, "resume", rb, "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert (tmp_path / "side.log").read_text().splitlines() == ["one", "finished", "three"]
    assert counts(dbp) == {"one": 1, "slow": 1, "three": 1}


def test_hangup_at_a_question_stops_asking_and_ends_aborted_129(tmp_path):
    from cli_support import events, spawn

    rb = write_runbook(
        tmp_path,
        """
        [gate]
        type = "Manual"
        description = "Check the dashboards"
        prompt_after = "Go on?"

        [after]
        type = "Command"
        command_name = "echo after >> side.log"
        """,
    )
    dbp = tmp_path / "state.db"
    child = spawn(tmp_path, "run", rb, "--state-path", dbp)
    pid = child.pid
    try:
        child.expect("Go on")
        child.ptyproc.fileobj.close()
        child.ptyproc.closed = child.closed = True
        wait_for(lambda: run_row(dbp)["status"] != "running", timeout=30, what="the run to end")
        wait_gone(pid)
    finally:
        kill_quietly(pid)
    run = run_row(dbp)
    assert (run["status"], run["exit_code"]) == ("aborted", 129)
    assert not (tmp_path / "side.log").exists()
    assert "hangup" in [e["kind"] for e in events(dbp)]
    assert final(dbp)["gate"]["status"] != "succeeded"


def test_a_command_alive_after_the_runner_was_killed_is_never_started_twice(tmp_path):
    """SIGKILL of the runner leaves its step's command running in its own process group:
    `show` says so, `resume --rerun-interrupted` refuses to start it again while it runs, and
    once it has ended the step runs again and the run finishes."""
    import json as json_mod

    from cli_support import spawn

    rb = write_runbook(tmp_path, """
    [long]
    type = "Command"
    command_name = "echo $$ > long.pid; echo started >> side.log; while [ ! -e release ]; do sleep 0.1; done; echo done >> side.log"

    [after]
    type = "Command"
    command_name = "echo after >> side.log"
    """)
    dbp = tmp_path / "state.db"
    proc = pb_start(tmp_path, "run", rb, "--state-path", dbp)
    long_pid = read_pid(tmp_path / "long.pid")
    try:
        proc.kill()  # SIGKILL: nothing is recorded, the command lives on
        proc.wait(timeout=10)
        assert alive(long_pid)
        shown = json_mod.loads(pb(tmp_path, "show", "--run", "1", "--json", "--state-path", dbp).stdout)
        (row,) = [a for a in shown["attempts"] if a["node_id"] == "long"]
        assert row.get("still_running") is True and "still running (process group" in row["error"]
        assert shown["run"]["status"] == "interrupted"
        r = pb(tmp_path, "resume", rb, "--rerun-interrupted", "--state-path", dbp)
        assert r.returncode == 3, r.text
        assert "long's command from before is still running" in r.text
        assert (tmp_path / "side.log").read_text().splitlines() == ["started"]  # not started twice
        # on a terminal the operator may stop it, then decide
        child = spawn(tmp_path, "resume", rb, "--state-path", dbp)
        child.expect("still running")
        child.expect(r"Choose \[")
        child.sendline("s")
        child.expect("was interrupted")
        child.expect(r"Choose \[")
        child.sendline("r")
        child.expect(r"started")
        (tmp_path / "release").touch()
        from cli_support import finish

        code, out = finish(child)
        assert code == 0, out
        wait_gone(long_pid)
        assert (tmp_path / "side.log").read_text().splitlines() == ["started", "started", "done", "after"]
    finally:
        (tmp_path / "release").touch()
        kill_quietly(long_pid, group=True)


@pytest.mark.parametrize("seen", [1, 40, 150])
def test_sigkill_in_a_fast_chain_loses_no_success_shown_and_resume_reruns_none(tmp_path, seen):
    """Each step of a chain appends its name to a log; its success is committed with the next
    step's row. SIGKILL the runner once `seen` successes were printed: every success printed is
    in the database, every step with a row follows a success (at most the last is unfinished),
    and resume runs each remaining step once and no succeeded one again."""
    steps = 200
    body = "".join(
        '[s%d]\ntype = "Command"\ncommand_name = "echo s%d >> side.log"\ndepends_on = [%s]\n\n'
        % (i, i, '"s%d"' % (i - 1) if i else "")
        for i in range(steps)
    )
    rb = write_runbook(tmp_path, body)
    dbp = tmp_path / "state.db"
    proc = pb_start(tmp_path, "run", rb, "--state-path", dbp)
    shown = []
    try:
        while len(shown) < seen:
            line = proc.stdout.readline().decode()
            assert line, "the run ended before %d successes were shown" % seen
            if " succeeded in " in line:
                shown.append(line.split()[2])
        proc.kill()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=20)
    rows = attempts(dbp)
    statuses = {row["node_id"]: row["status"] for row in rows}
    assert all(statuses.get(node) == "succeeded" for node in shown), (shown, statuses)
    order = ["s%d" % i for i in range(steps)]
    written = [node for node in order if node in statuses]
    assert written == order[: len(written)]  # a prefix of the chain
    assert all(statuses[node] == "succeeded" for node in written[:-1])
    assert integrity(dbp) == "ok"
    ran_before = (tmp_path / "side.log").read_text().split()
    r = pb(tmp_path, "resume", rb, "--rerun-interrupted", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert set(status_of(dbp).values()) == {"succeeded"}
    runs_of = {}
    for name in (tmp_path / "side.log").read_text().split():
        runs_of[name] = runs_of.get(name, 0) + 1
    succeeded_before = {node for node in written if statuses[node] == "succeeded"}
    assert all(runs_of[node] == 1 for node in succeeded_before)
    assert sorted(runs_of) == sorted(order)
    assert ran_before == order[: len(ran_before)]
