"""runtime/detach.py: `run --detach JOB` and `follow JOB`, with real `playbook` processes.

A detached run outlives what started it (its own session, no terminal, standard streams on
files), its variables file is gone once read, and `follow` waits for news, then brings the exit
code and a consistent copy of the state database, as often as asked (a look removes nothing). A
run killed outright is reported as such. JOB must be the user's own 0700 directory.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sqlite3
import sys
import time
import zlib
from pathlib import Path

import pytest

from playbook.runtime import detach

RUNBOOK = """\
[runbook]
title = "Detached"
description = "a step, then one that waits for a file"
version = "1"
author = "tests"
created_at = 2025-01-20T12:00:00Z

[variables]
GATE = { required = true }
TOKEN = { required = true, secret = true }

[first]
type = "Command"
command_name = "echo first"
depends_on = []

[gate]
type = "Command"
command_name = "while [ ! -e {{ GATE }} ]; do sleep 0.05; done; test {{ TOKEN }} = s3cr3t-token"
timeout = 60
"""


@pytest.fixture
def started(tmp_path, playbook):
    """A detached run waiting at its gate: (job, gate, state path, the start's output)."""
    runbook = tmp_path / "d.playbook.toml"
    runbook.write_text(RUNBOOK)
    job = tmp_path / "job"
    job.mkdir(mode=0o700)
    (job / "vars.toml").write_text('TOKEN = "s3cr3t-token"\n')
    gate = tmp_path / "gate"
    state = tmp_path / "state.db"
    ran = playbook("run", runbook, "--vars-file", job / "vars.toml", "--var", "GATE=%s" % gate, "--state-path", state,
                   "--no-interactive-vars", "--detach", job)
    assert ran.returncode == 0, ran.text
    yield job, gate, state, json.loads(ran.stdout.strip().splitlines()[-1])
    gate.write_text("open")  # whatever the test did, the run ends
    deadline = time.monotonic() + 30
    while (job / detach.PID).exists() and not (job / detach.EXIT).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def look(playbook, job, since=0, hold=0.0):
    ran = playbook("follow", job, "--since", since, "--hold", hold)
    assert ran.returncode == 0, ran.text
    return json.loads(ran.stdout)


def test_a_detached_run_goes_on_alone_and_the_last_look_brings_its_state(playbook, started):
    job, gate, state, told = started
    pid = told["pid"]
    assert told["job"] == str(job)
    # a session of its own that it does not lead (so it can never get a terminal back), apart
    # from the one that started it
    assert os.getsid(pid) != os.getsid(0) and os.getsid(pid) != pid and os.getpgid(pid) == os.getsid(pid)
    assert not (job / "vars.toml").exists()  # read, then removed: the secret is not left on disk
    first = look(playbook, job)
    assert first["done"] is False
    deadline = time.monotonic() + 30
    while not any(e.get("node") == "first" for e in first["events"]) and time.monotonic() < deadline:
        first = look(playbook, job, hold=1)
    assert [e["event"] for e in first["events"]][:2] == ["run_started", "node_finished"]
    quiet = look(playbook, job, since=first["offset"], hold=0.3)  # nothing new: it waited, then answered
    assert (quiet["done"], quiet["events"], quiet["offset"]) == (False, [], first["offset"])
    gate.write_text("open")
    last = quiet
    while not last["done"] and time.monotonic() < deadline:
        last = look(playbook, job, since=last["offset"], hold=5)
    assert last["done"] and last["exit_code"] == 0
    assert [e["event"] for e in last["events"]][-1] == "run_finished"
    assert "s3cr3t-token" not in json.dumps(last)
    copy = job.parent / "copy.db"
    copy.write_bytes(zlib.decompress(base64.b64decode(last["state"])))
    con = sqlite3.connect(str(copy))
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT status FROM runs WHERE id = 1").fetchone()[0] == "succeeded"
    finally:
        con.close()
    again = look(playbook, job, since=last["offset"])  # a look removes nothing: the last one can be repeated
    assert (again["done"], again["exit_code"], again["state"]) == (True, 0, last["state"])
    assert job.exists()
    assert sqlite3.connect(str(state)).execute("SELECT status FROM runs").fetchone()[0] == "succeeded"


def test_a_killed_run_is_reported_with_its_state_and_no_exit_code(playbook, started):
    job, gate, state, told = started
    deadline = time.monotonic() + 30
    seen = look(playbook, job, hold=1)
    while not any(e.get("node") == "first" for e in seen["events"]) and time.monotonic() < deadline:
        seen = look(playbook, job, hold=1)
    os.kill(told["pid"], signal.SIGKILL)
    while detach._alive(str(job)) and time.monotonic() < deadline:
        time.sleep(0.05)
    last = look(playbook, job, hold=5)
    while not last["done"] and time.monotonic() < deadline:
        last = look(playbook, job, since=last["offset"], hold=5)
    assert last["done"] and last["exit_code"] is None
    assert "killed" in last["error"]
    assert last["state"], last  # what the run had recorded comes back all the same
    again = look(playbook, job, since=last["offset"])  # the end is recorded: the same answer again
    assert (again["done"], again["exit_code"], again["error"]) == (True, None, last["error"])


@pytest.mark.parametrize("problem", ["open to others", "a link", "a file"])
def test_the_job_must_be_the_users_own_private_directory(tmp_path, playbook, problem):
    runbook = tmp_path / "d.playbook.toml"
    runbook.write_text(RUNBOOK)
    job = tmp_path / "job"
    if problem == "open to others":
        job.mkdir(mode=0o755)
        job.chmod(0o755)
    elif problem == "a link":
        (tmp_path / "real").mkdir(mode=0o700)
        job.symlink_to(tmp_path / "real")
    else:
        job.write_text("")
    ran = playbook("run", runbook, "--var", "GATE=x", "--var", "TOKEN=t", "--state-path", tmp_path / "s.db", "--detach", job)
    assert ran.returncode == 2, ran.text
    assert ran.stderr.startswith("error: --detach %s: " % job)
    assert not (tmp_path / "s.db").exists()
    follow = playbook("follow", job)
    assert follow.returncode == 2 and "follow %s" % job in follow.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="a second OS user needs root (CI runs as root)")
def test_another_users_job_directory_is_refused(tmp_path, playbook):
    import pwd

    job = tmp_path / "job"
    job.mkdir(mode=0o700)
    os.chown(job, pwd.getpwnam("nobody").pw_uid, -1)
    ran = playbook("follow", job)
    assert ran.returncode == 2 and "does not belong to this user" in ran.stderr, ran.text


def test_a_second_start_in_the_same_job_is_refused(playbook, started):
    job, gate, state, told = started
    runbook = Path(str(job) + "-runbook.playbook.toml")
    runbook.write_text(RUNBOOK)
    again = playbook("run", runbook, "--var", "GATE=x", "--var", "TOKEN=t", "--state-path", state, "--detach", job)
    assert again.returncode == 2 and "a run was started there already" in again.stderr, again.text


def test_a_bundle_answers_a_look_without_the_engine_and_with_the_same_help(tmp_path, playbook):
    """Fleet starts one look per host event, so a bundle answers `follow` before it loads the
    runtime CLI and the engine (about 40 ms less per look); the help is the one `playbook
    follow --help` gives."""
    runbook = tmp_path / "d.playbook.toml"
    runbook.write_text(RUNBOOK)
    bundle = tmp_path / "d.pyz"
    assert playbook("compile", runbook, "-o", bundle).returncode == 0
    job = tmp_path / "job"
    job.mkdir(mode=0o700)
    gate = tmp_path / "gate"
    ran = playbook("run", "--var", "GATE=%s" % gate, "--var", "TOKEN=s3cr3t-token", "--state-path", tmp_path / "s.db",
                   "--detach", job, exe=bundle)
    assert ran.returncode == 0, ran.text
    try:
        seen = subprocess.run([sys.executable, "-X", "importtime", str(bundle), "follow", str(job), "--hold", "5"],
                              capture_output=True, text=True, timeout=60)
        assert seen.returncode == 0, seen.stderr
        assert json.loads(seen.stdout)["events"][0]["event"] == "run_started"
        imported = {line.rsplit("|", 1)[-1].strip() for line in seen.stderr.splitlines() if line.startswith("import time:")}
        assert "playbook.runtime.detach" in imported
        assert not imported & {"playbook.runtime.cli", "playbook.runtime.engine", "playbook.runtime.session"}
    finally:
        gate.write_text("open")
        deadline = time.monotonic() + 30
        while not (job / detach.EXIT).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    helps = [playbook("follow", "--help", exe=exe) for exe in (bundle, None)]
    assert all(h.returncode == 0 for h in helps)
    assert helps[0].stdout.replace("./d.pyz", "playbook") == helps[1].stdout


def test_a_run_that_ends_while_a_look_checks_on_it_keeps_its_exit_code(tmp_path):
    """The run writes its exit code and ends between a look's two checks (is there an exit
    code? is the process alive?): the look reports that exit code, not a killed run."""
    job = tmp_path / "job"
    job.mkdir(mode=0o700)
    events = '{"event": "run_started", "run_id": 1}\n'
    (job / detach.EVENTS).write_text(events)
    ended = subprocess.Popen(["true"])
    ended.wait()
    (job / detach.PID).write_text("%d 0\n" % ended.pid)
    calls = []

    def clock():
        calls.append(1)
        if len(calls) == 2:  # the look has found no exit code yet and checks the time: the run ends now
            (job / detach.EXIT).write_text("0\n")
        return 0.0

    look = detach.follow(str(job), since=len(events), hold=5, clock=clock, sleep=lambda seconds: None)
    assert look["done"] and look["exit_code"] == 0 and "error" not in look
    assert (job / detach.EXIT).read_text() == "0\n"
