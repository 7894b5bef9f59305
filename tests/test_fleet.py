"""`playbook fleet`: rollouts with real ansible-core, over local-connection hosts (the fast path)
and over a real sshd on loopback addresses 127.0.0.2 and up (the SSH path).

Every host has its own remote directory and state database under the test's tmp_path. A host
fails while its MARKER file exists (the `check` step), so a test can make it fail, then resume it.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from playbook.fleet import ansible, approvals, bundle, cli, follow
from playbook.fleet import cli as fleet_cli
from playbook.fleet import playbook as fleet_playbook
from playbook.fleet import summary as fleet_summary
from playbook.runtime.errors import UsageError
from playbook.runtime.state import whoami

pytest.importorskip("ansible", reason="ansible-core is in the test extra: pip install -e '.[test]'")

RUNBOOK = """\
[runbook]
title = "Fleet probe"
description = "says hello, checks a marker file, needs a token"
version = "1.0.0"
author = "tests"
created_at = 2025-01-20T12:00:00Z

[variables]
WHO = { default = "world" }
MARKER = { default = "" }
TOKEN = { required = true, secret = true }

[hello]
type = "Command"
command_name = "echo hello {{ WHO }}"
depends_on = []

[check]
type = "Command"
command_name = "test ! -e {{ MARKER }}"

[token]
type = "Command"
command_name = "test {{ TOKEN }} = s3cr3t"
"""

APPROVAL_RUNBOOK = """\
[runbook]
title = "Fleet approval"
description = "one approval"
version = "1.0.0"
author = "tests"
created_at = 2025-01-20T12:00:00Z

[hello]
type = "Command"
command_name = "echo hello"
depends_on = []

[approve]
type = "Manual"
description = "Look at the dashboards."
prompt_after = "Go on with the rollout?"

[done]
type = "Command"
command_name = "echo done"
"""

# The `gate` step waits (up to 2 minutes) until the GATE file exists: a test can see what the
# controller prints while a host's run is still going.
GATED_RUNBOOK = """\
[runbook]
title = "Fleet gate"
description = "one step, then a step that waits for a file"
version = "1.0.0"
author = "tests"
created_at = 2025-01-20T12:00:00Z

[variables]
GATE = { required = true }

[first]
type = "Command"
command_name = "echo first"
depends_on = []

[gate]
type = "Command"
command_name = "while [ ! -e {{ GATE }} ]; do sleep 0.1; done"
timeout = 120
"""

TOKEN = "s3cr3t"


def _build(directory: Path, name: str, text: str) -> Path:
    from playbook.compiler.bundle import build
    from playbook.compiler.plan import compile_file

    source = directory / (name + ".playbook.toml")
    source.write_text(text)
    target = directory / (name + ".pyz")
    build(compile_file(str(source)), str(target), bytecode=False)
    return target


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("bundles")
    return {"probe": _build(directory, "probe", RUNBOOK), "approval": _build(directory, "approval", APPROVAL_RUNBOOK),
            "gated": _build(directory, "gated", GATED_RUNBOOK)}


def local_host(tmp_path: Path, name: str, **variables) -> dict:
    """Host variables of a local-connection host with its own remote dir and state database."""
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "playbook_remote_dir": str(tmp_path / "remote" / name),
        "playbook_state_path": str(tmp_path / "state" / (name + ".db")),
    }
    host.update(variables)
    return host


def write_inventory(tmp_path: Path, hosts: dict, name: str = "inventory.yml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"all": {"hosts": hosts}}, indent=2))  # JSON is YAML
    return path


def fleet_cmd(playbook, *args):
    return playbook("fleet", *[str(a) for a in args], timeout=240)


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def statuses(out: Path) -> dict:
    return {h["host"]: h["status"] for h in summary(out)["hosts"]}


def attempts(db: Path) -> dict:
    """node -> (status, stdout, decided_by) of the last attempt of run 1 in a fetched database."""
    con = sqlite3.connect(str(db))
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT * FROM attempts WHERE run_id = 1 ORDER BY id").fetchall()
        names = [d[0] for d in con.execute("SELECT * FROM attempts LIMIT 0").description]
    finally:
        con.close()
    result = {}
    for row in rows:
        item = dict(zip(names, row))
        result[item["node_id"]] = (item["status"], item.get("stdout") or "", item.get("decided_by"))
    return result


# -- the fast path: local-connection hosts -----------------------------------------------------------
def test_local_rollout_vars_failure_secret_report_and_resume(tmp_path, playbook, bundles):
    marker = tmp_path / "marker-c"
    marker.write_text("c fails while this exists")
    inventory = write_inventory(tmp_path, {
        "a": local_host(tmp_path, "a"),
        "b": local_host(tmp_path, "b", playbook_var_WHO="bee"),
        "c": local_host(tmp_path, "c", playbook_var_MARKER=str(marker)),
    })
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", out, "--var", "WHO=fleet", "--var", "TOKEN=" + TOKEN, "--forks", 3)
    assert ran.returncode == 1, ran.text
    assert statuses(out) == {"a": "succeeded", "b": "succeeded", "c": "failed"}
    by_host = {h["host"]: h for h in summary(out)["hosts"]}
    assert [by_host[h]["exit_code"] for h in "abc"] == [0, 0, 1]
    assert [by_host[h]["run_id"] for h in "abc"] == [1, 1, 1]
    assert summary(out)["exit_code"] == 1
    # a live line per host event, then the table
    assert "c  check  failed  (exit 1)" in ran.stdout
    assert "a  run 1 succeeded (exit 0)" in ran.stdout
    # per-host variables win for their host; controller values reach the others
    assert attempts(out / "hosts" / "a.db")["hello"][1].strip() == "hello fleet"
    assert attempts(out / "hosts" / "b.db")["hello"][1].strip() == "hello bee"
    assert attempts(out / "hosts" / "c.db")["check"][0] == "failed"
    assert attempts(out / "hosts" / "a.db")["token"][0] == "succeeded"  # the secret reached the host
    for written in ("fleet.yml", "summary.json", "records.jsonl"):
        assert TOKEN not in (out / written).read_text(), written
    assert TOKEN not in ran.text
    # on the host: a 0700 directory with the bundle under its content-addressed name; the job
    # directory (variables, events, state copy) is gone, and Ansible left no job record
    remote = tmp_path / "remote" / "a"
    assert (remote.stat().st_mode & 0o777) == 0o700
    assert sorted(p.name for p in remote.iterdir()) == [fleet_playbook.remote_name(str(bundles["probe"]))]
    assert not (tmp_path / "home" / ".ansible_async").exists()
    # an ordinary playbook, beside the bundle it copies and the plugins it calls
    text = (out / "fleet.yml").read_text()
    assert "hosts: all" in text and "playbook_start:" in text and (out / "files" / "probe.pyz").is_file()
    assert (out / "action_plugins" / "playbook_start.py").is_file() and (out / "callback_plugins" / "playbook_fleet.py").is_file()

    # the report: one matrix, one JUnit suite per host, JSON
    rep = playbook("report", "--fleet", out, "--html", tmp_path / "r.html", "--junit", tmp_path / "r.xml", "--json", tmp_path / "r.json")
    assert rep.returncode == 0, rep.text
    suites = ET.parse(str(tmp_path / "r.xml")).getroot().findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("failures")) for s in suites] == [("a", "3", "0"), ("b", "3", "0"), ("c", "3", "1")]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["steps"] == ["hello", "check", "token"]
    assert [[n["status"] for n in h["nodes"]] for h in data["hosts"]][2] == ["succeeded", "failed", "not_reached"]
    page = (tmp_path / "r.html").read_text()
    assert "Hosts × steps" in page and 'id="host-c"' in page and TOKEN not in page

    # resume: only c runs again (its run 1 goes on), a and b are left alone
    marker.unlink()
    before = {h: (out / "hosts" / (h + ".db")).stat().st_mtime_ns for h in "ab"}
    resumed = playbook("fleet", "resume", out, "--var", "TOKEN=" + TOKEN, timeout=240)
    assert resumed.returncode == 0, resumed.text
    assert "resuming 1 host: c" in resumed.stdout
    assert statuses(out) == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert {h["host"]: h["run_id"] for h in summary(out)["hosts"]}["c"] == 1
    assert attempts(out / "hosts" / "c.db")["check"][0] == "succeeded"
    assert {h: (out / "hosts" / (h + ".db")).stat().st_mtime_ns for h in "ab"} == before
    assert summary(out)["resumes"][0]["hosts"] == ["c"]
    again = playbook("fleet", "resume", out)
    assert again.returncode == 0 and "nothing to resume" in again.stdout


def test_a_value_that_looks_like_a_template_reaches_the_host_as_text(tmp_path, playbook, bundles):
    """A --var value is data on the controller, in Ansible and on the host: it once failed the
    host, and a value reading a secret must never copy it anywhere."""
    inventory = write_inventory(tmp_path, {"a": local_host(tmp_path, "a")})
    out = tmp_path / "out"
    value = '{{ TOKEN | list | join(".") }} {{ lookup("env", "HOME") }} $(touch pwned)'
    ran = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", out, "--var", "WHO=" + value, "--var", "TOKEN=" + TOKEN)
    assert ran.returncode == 0, ran.text
    assert attempts(out / "hosts" / "a.db")["hello"][1].strip() == "hello " + value
    dotted = ".".join(TOKEN)
    for text in (ran.text, (out / "records.jsonl").read_text(), (out / "summary.json").read_text()):
        assert dotted not in text and TOKEN not in text
    assert not list(tmp_path.rglob("pwned"))


def test_max_fail_percentage_zero_stops_after_the_first_failed_host(tmp_path, playbook, bundles):
    marker = tmp_path / "marker"
    marker.write_text("x")
    inventory = write_inventory(tmp_path, {
        "x": local_host(tmp_path, "x", playbook_var_MARKER=str(marker)),
        "y": local_host(tmp_path, "y"),
        "z": local_host(tmp_path, "z"),
    })
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", out, "--serial", "1", "--max-fail-percentage", 0,
                    "--var", "TOKEN=" + TOKEN)
    assert ran.returncode == 1, ran.text
    assert statuses(out) == {"x": "failed", "y": "not started", "z": "not started"}
    assert not (tmp_path / "remote" / "y").exists()
    assert "serial: [1]" in (out / "fleet.yml").read_text()
    assert "not started: y, z; start them later with: playbook fleet resume %s --remaining" % out in ran.stdout
    marker.unlink()  # x would pass now; --remaining starts y and z and resumes x
    again = playbook("fleet", "resume", out, "--remaining", "--var", "TOKEN=" + TOKEN, timeout=240)
    assert again.returncode == 0, again.text
    assert statuses(out) == {"x": "succeeded", "y": "succeeded", "z": "succeeded"}


def test_confirm_batches_asks_before_each_batch_after_the_canary(tmp_path, spawn_playbook, bundles):
    pexpect = pytest.importorskip("pexpect")
    inventory = write_inventory(tmp_path, {name: local_host(tmp_path, name) for name in ("p", "q", "r")})
    out = tmp_path / "out"
    child = spawn_playbook("fleet", bundles["probe"], "-i", inventory, "--out", out, "--serial", "1", "--confirm-batches",
                           "--var", "TOKEN=" + TOKEN, timeout=120)
    child.expect(r"p  run 1 succeeded")
    child.expect(r"Start the next batch \(q\)\? Type yes to go on")
    child.sendline("yes")
    child.expect(r"q  run 1 succeeded")
    child.expect(r"Start the next batch \(r\)\? Type yes to go on")
    child.sendline("no")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
    assert statuses(out) == {"p": "succeeded", "q": "succeeded", "r": "not started"}


def test_approvals_given_once_on_the_controller(tmp_path, playbook, bundles):
    inventory = write_inventory(tmp_path, {name: local_host(tmp_path, name) for name in ("m1", "m2")})
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["approval"], "-i", inventory, "--out", out)
    assert "hosts that reach approve will stop waiting" in ran.stderr
    assert ran.returncode == 3, ran.text
    assert statuses(out) == {"m1": "waiting", "m2": "waiting"}
    resumed = playbook("fleet", "resume", out, "--approve", "approve", timeout=240)
    assert resumed.returncode == 0, resumed.text
    assert statuses(out) == {"m1": "succeeded", "m2": "succeeded"}
    status, _, decided_by = attempts(out / "hosts" / "m1.db")["approve"]
    # given by flag by the user Ansible ran the bundle as (here: this user); no one names anyone
    assert status == "succeeded" and decided_by == whoami()
    rollout = summary(out)["rollout"]
    for host in ("m1", "m2"):
        con = sqlite3.connect(str(out / "hosts" / (host + ".db")))
        try:
            (origin,) = con.execute("SELECT origin FROM runs WHERE id = 1").fetchone()
        finally:
            con.close()
        assert json.loads(origin) == {"rollout": rollout, "host": host}


def _run_status(db: Path) -> str | None:
    if not db.exists():
        return None
    con = sqlite3.connect(str(db), timeout=10)
    try:
        row = con.execute("SELECT status FROM runs WHERE id = 1").fetchone()
    except sqlite3.OperationalError:  # the schema is still being created
        return None
    finally:
        con.close()
    return row[0] if row else None


def test_a_line_per_host_event_while_the_host_still_runs(tmp_path, spawn_playbook, bundles):
    """The line for `first` arrives while `gate` still waits on the host: only then does the test
    open the gate. (Lines printed when a host's run returns would never open it.)"""
    import io

    pexpect = pytest.importorskip("pexpect")
    gate = tmp_path / "gate"
    inventory = write_inventory(tmp_path, {"h1": local_host(tmp_path, "h1"), "h2": local_host(tmp_path, "h2")})
    out = tmp_path / "out"
    child = spawn_playbook("fleet", bundles["gated"], "-i", inventory, "--out", out, "--var", "GATE=%s" % gate,
                           "--forks", 2, timeout=90)
    child.logfile_read = seen = io.StringIO()
    child.expect(r"(h1|h2)  first  succeeded")
    assert not gate.exists() and not (out / "summary.json").exists()
    assert "  gate  " not in seen.getvalue() and "run 1" not in seen.getvalue()
    gate.write_text("open")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, seen.getvalue()
    assert statuses(out) == {"h1": "succeeded", "h2": "succeeded"}
    assert '"status": "retry"' in (out / "records.jsonl").read_text()  # followed while it ran, not only read at its end
    for host in ("h1", "h2"):  # each host's lines once, in the order of its run
        lines = [line.split("  ", 1)[1].strip() for line in seen.getvalue().splitlines() if line.startswith(host + "  ")]
        assert lines[:3] == ["first  succeeded", "gate  succeeded", "run 1 succeeded (exit 0)"], lines
        # the answer of the last look is in hosts/HOST.db, so the job directory was removed on the host
        assert (out / "hosts" / (host + ".db")).exists()
        assert sorted(p.name for p in (tmp_path / "remote" / host).iterdir() if ".job." in p.name) == []


def test_a_lost_controller_does_not_stop_the_hosts_runs(tmp_path, spawn_playbook, playbook, bundles):
    """The controller (playbook fleet and ansible-playbook) is killed mid-run; the host's run goes on
    to its end in the background and its state database says so. While the controller worked, no
    second one could take the rollout; after its death `fleet resume` recovers the rollout from
    the records it left and collects the run's end."""
    import signal

    gate = tmp_path / "gate"
    out = tmp_path / "out"
    inventory = write_inventory(tmp_path, {"h1": local_host(tmp_path, "h1"), "h2": local_host(tmp_path, "h2")})
    child = spawn_playbook("fleet", bundles["gated"], "-i", inventory, "--out", out, "--var", "GATE=%s" % gate,
                           "--serial", 1, timeout=90)
    child.expect(r"h1  first  succeeded")
    busy = playbook("fleet", "resume", out)
    assert busy.returncode == 2 and "another `playbook fleet` is working on this rollout now" in busy.stderr, busy.text
    report = playbook("fleet", "report", out)
    assert report.returncode == 2 and "its controller is still at work, or ended without writing one" in report.stderr
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert not (out / "summary.json").exists()
    gate.write_text("open")
    assert _ended_well(tmp_path / "state" / "h1.db")
    assert not _left_running("test_a_lost_controller")
    resumed = playbook("fleet", "resume", out, timeout=240)
    assert resumed.returncode == 3, resumed.text  # h2 was never started
    assert "ended without writing its summary; recovered it from records.jsonl" in resumed.stdout
    assert "following again 1 run the controller left going: h1" in resumed.stdout
    assert "h1  run 1 succeeded (exit 0)" in resumed.stdout and "not started, left alone" in resumed.stdout
    done = summary(out)
    hosts = {h["host"]: h for h in done["hosts"]}
    assert (hosts["h1"]["status"], hosts["h1"]["database"], hosts["h2"]["status"]) == ("succeeded", "hosts/h1.db", "not started")
    assert len(done["recovered"]) == 1 and not (out / "unfinished.json").exists()
    assert _run_status(out / "hosts" / "h1.db") == "succeeded"


def _ended_well(db: Path, seconds: float = 60) -> bool:
    """Whether run 1 of the host's database `db` succeeds within `seconds` (it runs on alone)."""
    deadline = time.monotonic() + seconds
    while _run_status(db) != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
    return _run_status(db) == "succeeded"


def _left_running(test: str) -> list:
    """What the killed controller left (a look already under way on the host) ends on its own
    once the run has ended; anything still alive after 30 s is killed and returned."""
    import signal

    from conftest import leftover_processes

    def ours():
        return [(pid, argv) for pid, argv, started_by in leftover_processes() if test in started_by]

    deadline = time.monotonic() + 30
    while ours() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = ours()
    for pid, _ in left:
        os.kill(pid, signal.SIGKILL)
    return left


def test_ctrl_c_on_the_controller_leaves_the_started_runs_going_and_resume_collects_them(tmp_path, spawn_playbook, playbook, bundles):
    pexpect = pytest.importorskip("pexpect")
    gate = tmp_path / "gate"
    inventory = write_inventory(tmp_path, {"h1": local_host(tmp_path, "h1"), "h2": local_host(tmp_path, "h2")})
    out = tmp_path / "out"
    child = spawn_playbook("fleet", bundles["gated"], "-i", inventory, "--out", out, "--var", "GATE=%s" % gate,
                           "--serial", 1, timeout=90)
    child.expect(r"h1  first  succeeded")
    child.sendintr()
    child.expect(r"interrupted: no further host was started; still running in the background: h1; later: playbook fleet resume \S+ --remaining")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    hosts = {h["host"]: h for h in summary(out)["hosts"]}
    assert (hosts["h1"]["status"], hosts["h1"]["run_id"], hosts["h1"]["reason"]) == ("aborted", 1, fleet_summary.UNFOLLOWED)
    assert hosts["h2"]["status"] == "not started"
    gate.write_text("open")  # h1's run ends well in the background
    assert _ended_well(tmp_path / "state" / "h1.db")
    resumed = playbook("fleet", "resume", out, timeout=240)
    assert resumed.returncode == 3, resumed.text  # h2 was never started: resume does not start it, and says how
    assert "not started, left alone (add --remaining to start them): h2" in resumed.stdout
    assert statuses(out) == {"h1": "succeeded", "h2": "not started"}
    started = playbook("fleet", "resume", out, "--remaining", timeout=240)
    assert started.returncode == 0, started.text
    assert "starting 1 host never started: h2" in started.stdout
    assert statuses(out) == {"h1": "succeeded", "h2": "succeeded"}


def test_every_host_of_a_batch_starts_before_any_is_followed_even_with_fewer_forks(tmp_path, spawn_playbook, bundles):
    """Four hosts, two forks: all four runs are going on their hosts (waiting at the gate) while
    the controller still follows the first two; every host's lines arrive, each once."""
    import io

    pexpect = pytest.importorskip("pexpect")
    gate = tmp_path / "gate"
    names = ("f1", "f2", "f3", "f4")
    inventory = write_inventory(tmp_path, {name: local_host(tmp_path, name) for name in names})
    out = tmp_path / "out"
    child = spawn_playbook("fleet", bundles["gated"], "-i", inventory, "--out", out, "--var", "GATE=%s" % gate,
                           "--forks", 2, timeout=90)
    child.logfile_read = seen = io.StringIO()
    child.expect(r"f\d  first  succeeded")
    deadline = time.monotonic() + 60
    while any(_run_status(tmp_path / "state" / (n + ".db")) != "running" for n in names) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {n: _run_status(tmp_path / "state" / (n + ".db")) for n in names} == {n: "running" for n in names}
    assert not gate.exists()
    gate.write_text("open")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, seen.getvalue()
    assert statuses(out) == {n: "succeeded" for n in names}
    for host in names:
        lines = [line.split("  ", 1)[1].strip() for line in seen.getvalue().splitlines() if line.startswith(host + "  ")]
        assert lines[:3] == ["first  succeeded", "gate  succeeded", "run 1 succeeded (exit 0)"], (host, lines)


def test_check_plans_on_every_host_and_changes_nothing_there(tmp_path, playbook, bundles):
    inventory = write_inventory(tmp_path, {"k1": local_host(tmp_path, "k1", playbook_var_WHO="kay"), "k2": local_host(tmp_path, "k2")})
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", out, "--check", "--var", "TOKEN=" + TOKEN)
    assert ran.returncode == 0, ran.text
    assert "k1  plan (check mode, nothing was run):" in ran.stdout
    assert "k1       $ echo hello kay" in ran.stdout and "k2       $ echo hello world" in ran.stdout
    assert "check: 2 hosts planned, nothing was run" in ran.stdout
    assert TOKEN not in ran.text
    assert not (tmp_path / "state").exists()  # no run, no state database
    for name in ("k1", "k2"):  # nothing but the bundle, which check mode needs to plan
        remote = tmp_path / "remote" / name
        assert [p.name for p in remote.iterdir()] == [fleet_playbook.remote_name(str(bundles["probe"]))]
    assert not (out / "summary.json").exists()


def test_extra_vars_reach_every_host_as_in_ansible(tmp_path, playbook, bundles):
    inventory = write_inventory(tmp_path, {"e1": local_host(tmp_path, "e1"), "e2": local_host(tmp_path, "e2", playbook_var_WHO="host")})
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"playbook_var_TOKEN": TOKEN}))
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", out, "-e", "playbook_var_WHO=extra", "-e", "@%s" % extra)
    assert ran.returncode == 0, ran.text
    for host in ("e1", "e2"):  # extra vars win over host variables, as they do in Ansible
        assert attempts(out / "hosts" / (host + ".db"))["hello"][1].strip() == "hello extra"
        assert attempts(out / "hosts" / (host + ".db"))["token"][0] == "succeeded"


def _vault(tmp_path: Path, value: str) -> tuple[Path, str]:
    """(a vault password file, `value` encrypted with it as ansible-vault writes it)."""
    password = tmp_path / "vault-pass"
    password.write_text("correct horse\n")
    done = subprocess.run([str(Path(ansible.ansible_playbook()).parent / "ansible-vault"), "encrypt_string", "--vault-password-file",
                           str(password), value, "--name", "x"], capture_output=True, text=True, check=True)
    return password, done.stdout.split("!vault |", 1)[1]


def test_a_vault_encrypted_host_variable_is_decrypted_and_a_missing_password_is_exit_2(tmp_path, playbook, bundles):
    password, encrypted = _vault(tmp_path, "vaulted")
    host = local_host(tmp_path, "v1")
    lines = ["all:", "  hosts:", "    v1:"] + ["      %s: %s" % (k, json.dumps(v)) for k, v in host.items()]
    lines += ["      playbook_var_WHO: !vault |"] + ["    " + line for line in encrypted.strip("\n").splitlines()]
    inventory = tmp_path / "vaulted.yml"
    inventory.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", out, "--vault-password-file", password, "--var", "TOKEN=" + TOKEN)
    assert ran.returncode == 0, ran.text
    assert attempts(out / "hosts" / "v1.db")["hello"][1].strip() == "hello vaulted"
    assert "vaulted" not in (out / "fleet.yml").read_text()
    missing = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", tmp_path / "out2", "--var", "TOKEN=" + TOKEN)
    assert missing.returncode == 2, missing.text
    assert "Attempting to decrypt but no vault secrets found" in missing.stderr  # Ansible's own words
    assert "--vault-password-file" in missing.stderr
    assert not (tmp_path / "out2" / "summary.json").exists()  # nothing ran: the same command with the password may follow


def test_ansible_cfg_is_honoured_interpreter_inventory_and_the_users_callbacks(tmp_path, playbook, bundles):
    """ansible.cfg's interpreter_python runs the bundle, its inventory is used without -i, and a
    callback plugin it enables still runs beside ours."""
    marker = tmp_path / "interpreter-used"
    python = tmp_path / "python-wrapper"
    python.write_text("#!/bin/sh\necho used >> %s\nexec %s \"$@\"\n" % (marker, sys.executable))
    python.chmod(0o755)
    plugins = tmp_path / "my_callbacks"
    plugins.mkdir()
    (plugins / "witness.py").write_text(
        "from ansible.plugins.callback import CallbackBase\n"
        "class CallbackModule(CallbackBase):\n"
        "    CALLBACK_VERSION = 2.0\n    CALLBACK_TYPE = 'notification'\n    CALLBACK_NAME = 'witness'\n"
        "    CALLBACK_NEEDS_ENABLED = True\n"
        "    def v2_playbook_on_stats(self, stats):\n"
        "        open(%r, 'w').write('the user callback ran')\n" % str(tmp_path / "witness.txt"))
    host = local_host(tmp_path, "c1")
    del host["ansible_python_interpreter"]
    inventory = write_inventory(tmp_path, {"c1": host})
    (tmp_path / "ansible.cfg").write_text(
        "[defaults]\ninventory = %s\ninterpreter_python = %s\ncallback_plugins = %s\ncallbacks_enabled = witness\n"
        % (inventory, python, plugins))
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["probe"], "--out", out, "--var", "TOKEN=" + TOKEN)
    assert ran.returncode == 0, ran.text
    assert statuses(out) == {"c1": "succeeded"}
    assert marker.read_text().count("used") >= 2  # the run and each look at it
    assert (tmp_path / "witness.txt").read_text() == "the user callback ran"


def test_list_hosts_shows_the_batches_and_repeated_inventories_add_up(tmp_path, playbook, bundles):
    first = write_inventory(tmp_path, {name: local_host(tmp_path, name) for name in ("l1", "l2", "l3")}, "one.yml")
    second = write_inventory(tmp_path, {name: local_host(tmp_path, name) for name in ("l4", "l5")}, "two.yml")
    ran = fleet_cmd(playbook, bundles["probe"], "-i", first, "-i", second, "--serial", "1,50%", "--list-hosts", "--forks", 1)
    assert ran.returncode == 0, ran.text
    listed = [re.match(r"batch (\d) \((\d) hosts?\): (.*)$", line) for line in ran.stdout.splitlines()[:3]]
    assert all(listed), ran.stdout
    assert [(int(m.group(1)), int(m.group(2))) for m in listed] == [(1, 1), (2, 2), (3, 2)]  # 1, then 50% of 5 (2)
    names = [name for m in listed for name in m.group(3).split(", ")]
    assert sorted(names) == ["l1", "l2", "l3", "l4", "l5"]  # both inventories, in Ansible's order
    assert "5 hosts in 3 batches; --forks 1: a batch has more hosts than forks" in ran.stdout
    assert not (tmp_path / "remote").exists()
    assert fleet_cli.batches(["a", "b", "c", "d", "e"], [2]) == [["a", "b"], ["c", "d"], ["e"]]
    assert fleet_cli.batches(["a", "b", "c"], None) == [["a", "b", "c"]]


def test_it_works_under_the_mitogen_strategy(tmp_path, playbook, bundles):
    """A user who enables Mitogen (strategy mitogen_linear in ansible.cfg) rolls out as with
    Ansible's own strategy: the actions make no module calls Mitogen would have to carry."""
    ansible_mitogen = pytest.importorskip("ansible_mitogen", reason="mitogen is in the test extra: pip install -e '.[test]'")
    strategies = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    (tmp_path / "ansible.cfg").write_text("[defaults]\nstrategy_plugins = %s\nstrategy = mitogen_linear\n" % strategies)
    inventory = write_inventory(tmp_path, {"m1": local_host(tmp_path, "m1"), "m2": local_host(tmp_path, "m2", playbook_var_WHO="mito")})
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", out, "--var", "TOKEN=" + TOKEN)
    assert ran.returncode == 0, ran.text
    batches = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if '"kind": "batch"' in line]
    assert batches and {b["strategy"] for b in batches} == {"mitogen_linear"}  # the play ran under Mitogen's strategy
    assert statuses(out) == {"m1": "succeeded", "m2": "succeeded"}
    assert attempts(out / "hosts" / "m2.db")["hello"][1].strip() == "hello mito"


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/su"), reason="become to a second OS user needs root and su")
def test_become_another_user_uploads_through_a_staging_file_and_runs_as_that_user(tmp_path, playbook, bundles):
    """--become --become-user nobody: the bundle goes to nobody's own directory through a file
    Ansible stages (the login user cannot write there), and the run is nobody's."""
    import pwd
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="playbook-test-nobody-"))  # /tmp/pytest-of-root is closed to nobody
    try:
        _become_nobody(tmp_path, playbook, bundles, home, pwd.getpwnam("nobody").pw_uid)
    finally:
        shutil.rmtree(home)


def _become_nobody(tmp_path, playbook, bundles, home, nobody):
    home.chmod(0o755)
    os.chown(home, nobody, -1)
    host = local_host(tmp_path, "n1", playbook_remote_dir=str(home / "remote"), playbook_state_path=str(home / "state.db"),
                      ansible_python_interpreter="/usr/bin/python3")  # the system's, as nobody can run it
    inventory = write_inventory(tmp_path, {"n1": host})
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", out, "--var", "TOKEN=" + TOKEN, "--become",
                    "--become-method", "su", "--become-user", "nobody", "-e", "ansible_become_flags='-s /bin/sh'")
    assert ran.returncode == 0, ran.text
    assert statuses(out) == {"n1": "succeeded"}
    assert (home / "remote").stat().st_uid == nobody and (home / "state.db").stat().st_uid == nobody
    assert [p.stat().st_uid for p in (home / "remote").iterdir()] == [nobody]  # the bundle, nobody's


def _look(host: str, events: list, since: int = 0, ended: bool = False, window: int | None = None) -> dict:
    """The callback's record of one look at a run, made by the runtime's real `follow` on a real
    job directory holding `events` (what playbook_follow puts in its result)."""
    import tempfile

    from playbook.runtime import detach

    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job")
        os.mkdir(job, 0o700)
        with open(os.path.join(job, detach.EVENTS), "w") as f:
            f.write("".join(json.dumps(e) + "\n" for e in events))
        with open(os.path.join(job, detach.PID), "w") as f:
            f.write("%d %s\n" % (os.getpid(), __import__("playbook.runtime.executors").runtime.executors.process_start_ticks(os.getpid())))
        if ended:
            with open(os.path.join(job, detach.EXIT), "w") as f:
                f.write("%d\n" % (1 if any(e.get("status") == "failed" for e in events) else 0))
        saved = detach.WINDOW
        detach.WINDOW = window or saved
        try:
            look = detach.follow(job, since)
        finally:
            detach.WINDOW = saved
    return dict(look, kind="result", host=host, register="playbook_look", status="ok" if ended else "retry", job=job)


def test_each_event_line_is_printed_once_as_the_run_is_followed():
    events = [{"event": "run_started", "run_id": 4},
              {"event": "node_started", "node": "a"},
              {"event": "node_finished", "node": "a", "status": "succeeded", "exit_code": 0},
              {"event": "node_finished", "node": "b", "status": "failed", "exit_code": 2},
              {"event": "run_finished", "run_id": 4, "status": "failed", "exit_code": 1, "reason": "b failed"}]
    out = io.StringIO()
    rollout = follow.Rollout(out)
    offset = 0
    for upto, ended in ((0, False), (1, False), (3, False), (3, False), (4, False), (5, True)):
        record = _look("h", events[:upto], offset, ended)
        offset = record["offset"]
        rollout.feed(record)
    assert out.getvalue().splitlines() == ["h  a  succeeded", "h  b  failed  (exit 2)", "h  run 4 failed (exit 1)  b failed",
                                           "h  no state database came back from the host"]
    # a look brings at most WINDOW events: the ones left out are counted, never repeated
    many = [{"event": "run_started", "run_id": 9}] + [{"event": "node_finished", "node": "n%d" % i, "status": "succeeded"} for i in range(7)]
    out = io.StringIO()
    rollout = follow.Rollout(out)
    first = _look("w", many[:2], window=3)
    rollout.feed(first)
    rollout.feed(_look("w", many + [{"event": "run_finished", "run_id": 9, "status": "succeeded", "exit_code": 0}],
                       first["offset"], ended=True, window=3))
    assert out.getvalue().splitlines() == ["w  n0  succeeded", "w  … 4 step events not shown here (the report has them)",
                                           "w  n5  succeeded", "w  n6  succeeded", "w  run 9 succeeded (exit 0)",
                                           "w  no state database came back from the host"]
    # a bundle that never started a run: the look at its end says why
    out = io.StringIO()
    rollout = follow.Rollout(out)
    rollout.feed({"kind": "result", "host": "h", "register": "playbook_look", "status": "failed", "offset": 0, "events": [],
                  "done": True, "exit_code": 127, "output": "error: no Python 3.9 or newer found\n", "fetched": False})
    assert out.getvalue().splitlines() == ["h  the bundle did not run (exit 127): error: no Python 3.9 or newer found",
                                           "h  no state database came back from the host"]


# -- the SSH path: a real sshd on 127.0.0.2 and 127.0.0.3; 127.0.0.4 has none ---------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    """A throwaway sshd (host key and user key made here) on 127.0.0.2 and 127.0.0.3; stopped after."""
    if os.geteuid() != 0:
        pytest.skip("sshd for the SSH tests needs root (as in CI)")
    if not os.path.exists("/usr/sbin/sshd"):
        pytest.skip("sshd is not installed (.ci/run installs openssh-server)")
    keys = tmp_path / "ssh"
    keys.mkdir()
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    (keys / "authorized_keys").write_text((keys / "user_key.pub").read_text())
    port = _free_port()
    config = keys / "sshd_config"
    config.write_text("\n".join([
        "Port %d" % port, "ListenAddress 127.0.0.2", "ListenAddress 127.0.0.3", "HostKey %s" % (keys / "host_key"),
        "AuthorizedKeysFile %s" % (keys / "authorized_keys"), "PidFile %s" % (keys / "sshd.pid"), "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no", "",
    ]))
    host_key = (keys / "host_key.pub").read_text().split()
    (keys / "known_hosts").write_text("".join("[%s]:%d %s %s\n" % (a, port, host_key[0], host_key[1]) for a in ("127.0.0.2", "127.0.0.3", "127.0.0.4")))
    made_privsep = not os.path.isdir("/run/sshd")
    if made_privsep:
        os.makedirs("/run/sshd", mode=0o755)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.3", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    err = proc.communicate()[1].decode("utf-8", "replace").strip()
                    pytest.skip("sshd did not start: %s" % (err.splitlines()[-1] if err else "no listener"))
                time.sleep(0.1)
        yield {"port": port, "keys": keys}
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        if made_privsep:
            os.rmdir("/run/sshd")


def ssh_host(tmp_path: Path, sshd: dict, name: str, address: str, **variables) -> dict:
    keys = sshd["keys"]
    host = {
        "ansible_host": address,
        "ansible_port": sshd["port"],
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(keys / "user_key"),
        "ansible_ssh_args": "-o ControlMaster=no -o ControlPath=none",  # no master left running
        "ansible_pipelining": True,  # one connection per module
        "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o ConnectTimeout=5" % (keys / "known_hosts"),
        "ansible_python_interpreter": "/usr/bin/python3",
        "playbook_remote_dir": str(tmp_path / "remote" / name),
        "playbook_state_path": str(tmp_path / "state" / (name + ".db")),
    }
    host.update(variables)
    return host


def test_ssh_rollout_with_a_failing_and_an_unreachable_host(tmp_path, playbook, bundles, sshd):
    marker = tmp_path / "marker"
    marker.write_text("s2 fails")
    inventory = write_inventory(tmp_path, {
        "s1": ssh_host(tmp_path, sshd, "s1", "127.0.0.2", playbook_var_WHO="ssh"),
        "s2": ssh_host(tmp_path, sshd, "s2", "127.0.0.3", playbook_var_MARKER=str(marker)),
        "s3": ssh_host(tmp_path, sshd, "s3", "127.0.0.4"),
    })
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", out, "--var", "TOKEN=" + TOKEN, "--forks", 3)
    assert ran.returncode == 1, ran.text
    assert statuses(out) == {"s1": "succeeded", "s2": "failed", "s3": "unreachable"}
    assert "s3  unreachable:" in ran.stdout
    assert attempts(out / "hosts" / "s1.db")["hello"][1].strip() == "hello ssh"
    assert attempts(out / "hosts" / "s2.db")["check"][0] == "failed"
    assert not (out / "hosts" / "s3.db").exists()


def test_a_controller_killed_before_any_host_was_named_leaves_nothing_to_resume(tmp_path, playbook):
    out = tmp_path / "out"
    out.mkdir()
    (out / "unfinished.json").write_text(json.dumps({"summary": {"fleet_version": 1, "hosts": []}, "previous": None,
                                                     "records_from": 0, "pid": 1, "started_at": "2026-12-07T00:00:00+00:00"}))
    (out / "records.jsonl").write_text('{"kind": "res')  # the line being written when it died
    ran = playbook("fleet", "resume", out)
    assert ran.returncode == 2, ran.text
    assert "its controller ended before Ansible named any host, so no host was started" in ran.stderr
    assert not (out / "unfinished.json").exists() and not (out / "summary.json").exists()


def test_over_ssh_a_killed_controller_leaves_the_run_going(tmp_path, spawn_playbook, playbook, bundles, sshd):
    """kill -9 of the controller (playbook fleet, ansible-playbook, its workers and their ssh
    connections) while a host's run waits at its gate: the run goes on over there to its end,
    and nothing the controller started outlives it."""
    import signal

    gate = tmp_path / "gate"
    inventory = write_inventory(tmp_path, {"s1": ssh_host(tmp_path, sshd, "s1", "127.0.0.2")})
    out = tmp_path / "out"
    child = spawn_playbook("fleet", bundles["gated"], "-i", inventory, "--out", out, "--var", "GATE=%s" % gate, timeout=90)
    child.expect(r"s1  first  succeeded")
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert not (out / "summary.json").exists()
    gate.write_text("open")
    assert _ended_well(tmp_path / "state" / "s1.db")
    # Ansible's worker outlives the controller: its look under way ends once the run has ended,
    # and the worker, finding the controller gone, leaves the job for the next look and stops
    assert not _left_running("test_over_ssh_a_killed_controller")
    resumed = playbook("fleet", "resume", out, timeout=240)
    assert resumed.returncode == 0, resumed.text
    assert "recovered it from records.jsonl" in resumed.stdout and "s1  run 1 succeeded (exit 0)" in resumed.stdout
    assert {h["host"]: h["status"] for h in summary(out)["hosts"]} == {"s1": "succeeded"}
    assert _run_status(out / "hosts" / "s1.db") == "succeeded"


# -- the controller side, without a rollout -------------------------------------------------------------
def test_a_bundle_that_does_not_verify_is_never_copied(tmp_path, playbook, bundles):
    inventory = write_inventory(tmp_path, {"a": local_host(tmp_path, "a")})
    signers = tmp_path / "allowed_signers"
    signers.write_text("release@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    out = tmp_path / "out"
    ran = fleet_cmd(playbook, bundles["probe"], "-i", inventory, "--out", out, "--allowed-signers", signers)
    assert ran.returncode == 4, ran.text
    assert "did not verify, nothing was copied" in ran.stderr and "no signature" in ran.stderr
    assert not (out / "files" / "probe.pyz").exists() and not (out / "summary.json").exists()


def test_without_ansible_fleet_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(ansible.sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError) as caught:
        cli.main(["runbook.playbook.toml", "-i", "hosts.ini"])
    assert caught.value.code == 2
    assert "pip install 'playbook[fleet]'" in str(caught.value) and "Python 3.9" in str(caught.value)


def test_bad_flags_are_one_line_errors(tmp_path, playbook, bundles):
    inventory = write_inventory(tmp_path, {"a": local_host(tmp_path, "a")})
    cases = [
        (["--serial", "0"], "--serial 0: give a number of hosts"),
        (["--serial", "1,x%"], "--serial 1,x%"),
        (["--max-fail-percentage", "101"], "--max-fail-percentage 101: give 0 to 100"),
        (["--approve", "nope"], "--approve nope: the runbook asks no approval of that name"),
    ]
    for flags, message in cases:
        ran = fleet_cmd(playbook, bundles["approval"], "-i", inventory, "--out", tmp_path / "o", *flags)
        assert ran.returncode == 2 and message in ran.stderr, (flags, ran.text)
    ran = fleet_cmd(playbook, bundles["probe"], "-i", tmp_path / "missing.ini")
    assert ran.returncode == 2 and "no such inventory" in ran.stderr
    ran = playbook("report", "--fleet", tmp_path / "nothing", "--json")
    assert ran.returncode == 2 and "no summary.json" in ran.stderr


def test_parse_serial_follows_ansible():
    assert fleet_playbook.parse_serial("1") == [1]
    assert fleet_playbook.parse_serial("25%") == ["25%"]
    assert fleet_playbook.parse_serial("1,10,100%") == [1, 10, "100%"]
    assert fleet_playbook.parse_serial(None) is None
    for bad in ("", "0", "101%", "-1", "a"):
        with pytest.raises(UsageError):
            fleet_playbook.parse_serial(bad)


def test_fleet_exit_codes():
    def code(*states):
        return fleet_summary.fleet_exit_code([{"status": s} for s in states])

    assert code("succeeded", "succeeded") == 0
    assert code("succeeded", "failed", "unreachable", "waiting") == 1
    assert code("succeeded", "unreachable", "waiting") == 4
    assert code("succeeded", "waiting") == 3
    assert code("succeeded", "aborted") == 3
    assert code("succeeded", "not started") == 3


def test_host_outcome_reads_the_run_and_ansible_results(tmp_path):
    events = [{"event": "run_started", "run_id": 7}, {"event": "run_finished", "run_id": 7, "status": "waiting", "exit_code": 3,
                                                      "reason": "approve needs an approval"}]
    start = {"register": "playbook_started", "status": "ok", "job": "/r/h.job.1", "bundle": "/r/b.pyz", "python_env": ""}
    first = {"register": "playbook_look", "status": "retry", "offset": 40, "events": events[:1], "done": False, "run_id": 7,
             "job": "/r/h.job.1"}
    last = {"register": "playbook_look", "status": "failed", "offset": 90, "events": events[1:], "done": True, "exit_code": 3,
            "output": "", "fetched": False, "job": "/r/h.job.1"}
    entry = fleet_summary.host_outcome("h", [start, first, last], str(tmp_path))
    assert (entry["status"], entry["exit_code"], entry["run_id"], entry["reason"]) == ("waiting", 3, 7, "approve needs an approval")
    # followed, then no more (Ctrl-C, a lost connection): the run goes on; resume follows it again
    entry = fleet_summary.host_outcome("h", [start, first], str(tmp_path))
    assert (entry["status"], entry["run_id"], entry["reason"]) == ("aborted", 7, fleet_summary.UNFOLLOWED)
    assert entry["job"] == {"job": "/r/h.job.1", "bundle": "/r/b.pyz", "python": ""}
    launcher = {"register": "playbook_look", "status": "failed", "offset": 0, "events": [], "done": True, "exit_code": 127,
                "output": "no Python 3.9 or newer found", "fetched": False}
    assert fleet_summary.host_outcome("h", [start, launcher], str(tmp_path))["status"] == "failed"
    down = {"register": None, "status": "unreachable", "task": "Start the run", "msg": "ssh: connect refused"}
    assert fleet_summary.host_outcome("h", [down], str(tmp_path))["status"] == "unreachable"
    assert fleet_summary.host_outcome("h", [], str(tmp_path))["status"] == "not started"


def test_approvals_on_the_controller_terminal_list_every_question(bundles):
    import io

    _, plan = bundle.read_bundle(str(bundles["approval"]))
    out, asked = io.StringIO(), []

    def read(prompt):
        asked.append(prompt)
        return "y"

    assert approvals.gather_approvals(plan, [], False, ask=True, out=out, read=read) == ["approve"]
    assert "approve: Go on with the rollout?" in out.getvalue()
    assert asked == ["Approve approve (Go on with the rollout?)? [y/N] "]
    assert approvals.gather_approvals(plan, [], True, ask=True, out=out, read=read) == []
    assert approvals.gather_approvals(plan, ["approve"], False, ask=False) == ["approve"]


def test_secret_values_are_never_written_into_the_playbook():
    text = fleet_playbook.playbook_text("T", "t.pyz", {"PLAIN": "x {{ y }}", "FLAG": "no"}, ["TOKEN"], ["approve"], False,
                               "u@c via fleet", [1, "25%"], 0, True, False)
    assert 'playbook_fleet_vars: {"FLAG": "no", "PLAIN": !unsafe "x {{ y }}"}' in text
    assert "lookup('ansible.builtin.env', 'PLAYBOOK_FLEET_SECRET_TOKEN')" in text
    assert 'serial: [1, "25%"]' in text and "max_fail_percentage: 0" in text and "become: true" in text



# -- signed approvals over a fleet ---------------------------------------------------------------------
SIGNED_RUNBOOK = APPROVAL_RUNBOOK.replace(
    'prompt_after = "Go on with the rollout?"', 'prompt_after = "Go on with the rollout?"\napprovals = 1'
).replace('command_name = "echo hello"', 'command_name = "echo hello {{ REGION }}"').replace(
    "[hello]", '[variables]\nREGION = { default = "us" }\n\n[hello]')


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """A bundle whose `approve` step (it has a policy) accepts only approvals signed by alice."""
    directory = tmp_path_factory.mktemp("signed-fleet")
    keys = {}
    for name in ("alice", "mallory"):
        key = directory / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
        keys[name] = key
    signers = directory / "allowed_signers"
    signers.write_text("alice %s\n" % " ".join(Path(str(keys["alice"]) + ".pub").read_text().split()[:2]))
    from playbook.compiler.bundle import build
    from playbook.compiler.plan import compile_file

    source = directory / "signed.playbook.toml"
    source.write_text(SIGNED_RUNBOOK)
    bundle = directory / "signed.pyz"
    build(compile_file(str(source)), str(bundle), bytecode=False, approval_signers=str(signers))
    return {"bundle": bundle, **keys}


def _approvals_of(db: Path) -> list:
    con = sqlite3.connect(str(db))
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM approvals ORDER BY id")]
    finally:
        con.close()


def _by_hand(bundle: Path, tmp_path: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(bundle), "run", *[str(a) for a in args]], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, PLAYBOOK_PYTHON=sys.executable), cwd=str(tmp_path))


def test_a_signed_only_bundle_rolls_out_with_approvals_signed_for_the_rollout_and_each_host(tmp_path, playbook, signed):
    """The controller signs the approval of `approve` for this rollout and each host, bound to
    the host's values; each host checks it, records it signed by alice and succeeds. The same
    document is refused by a run of another host, of another rollout, or with other values."""
    hosts = {"s1": local_host(tmp_path, "s1"), "s2": local_host(tmp_path, "s2", playbook_var_REGION="eu")}
    inventory = write_inventory(tmp_path, hosts)
    out = tmp_path / "out"
    refused = fleet_cmd(playbook, signed["bundle"], "-i", inventory, "--approve", "approve", "--out", tmp_path / "nokey")
    assert refused.returncode == 2 and "give --approval-key KEY" in refused.stderr, refused.text
    ran = fleet_cmd(playbook, signed["bundle"], "-i", inventory, "--approve", "approve", "--approval-key", signed["alice"],
                    "--principal", "alice", "--out", out)
    assert ran.returncode == 0, ran.text
    assert statuses(out) == {"s1": "succeeded", "s2": "succeeded"}
    rollout = summary(out)["rollout"]
    path = out / "approvals" / "approve.json"
    payload = json.loads(path.read_text())["payload"]
    assert payload["rollout"] == rollout and sorted(payload["hosts"]) == ["s1", "s2"]
    assert payload["hosts"]["s1"] != payload["hosts"]["s2"]  # REGION differs: each host's values are bound
    for host in ("s1", "s2"):
        (row,) = _approvals_of(out / "hosts" / (host + ".db"))
        assert (row["how"], row["principal"], row["used"]) == ("signed", "alice", 1)
        assert row["signature"] == path.read_text()
    assert attempts(out / "hosts" / "s2.db")["hello"][1] == "hello eu\n"
    other_host = _by_hand(signed["bundle"], tmp_path, "--rollout", rollout, "s3", "--approval", path, "--state-path", tmp_path / "a.db")
    assert other_host.returncode == 2 and "approves the hosts s1, s2 of rollout" in other_host.stderr, other_host.stderr
    other_rollout = _by_hand(signed["bundle"], tmp_path, "--rollout", "0" * 32, "s1", "--approval", path, "--state-path", tmp_path / "b.db")
    assert other_rollout.returncode == 2 and "approves rollout" in other_rollout.stderr, other_rollout.stderr
    other_values = _by_hand(signed["bundle"], tmp_path, "--rollout", rollout, "s1", "--var", "REGION=eu", "--approval", path,
                            "--state-path", tmp_path / "c.db")
    assert other_values.returncode == 2 and "approves values (digest)" in other_values.stderr, other_values.stderr
    for name in ("a.db", "b.db", "c.db"):  # refused before anything was recorded
        assert not (tmp_path / name).exists() or not _approvals_of(tmp_path / name)


def test_a_fleet_approval_signed_by_an_unknown_key_runs_nowhere(tmp_path, playbook, signed):
    inventory = write_inventory(tmp_path, {"v1": local_host(tmp_path, "v1")})
    out = tmp_path / "out"
    forged = fleet_cmd(playbook, signed["bundle"], "-i", inventory, "--approve", "approve", "--approval-key", signed["mallory"],
                       "--principal", "mallory", "--out", out)
    assert forged.returncode == 1, forged.text
    (host,) = summary(out)["hosts"]
    assert host["status"] == "failed" and "does not verify for principal 'mallory'" in (host["reason"] or ""), host
    assert not (tmp_path / "state" / "v1.db").exists() or not _approvals_of(tmp_path / "state" / "v1.db")


# -- the names the playbook, the callback and the follower share -----------------------------------------
def test_the_playbook_the_callback_and_the_follower_agree_on_the_task_names():
    """REGISTER (fleet/ansible.py) is the one definition: every name is registered by a task of the
    playbook, the callback (a file Ansible loads, that cannot import Playbook) keeps the results
    the follower reads, and the follower and the summary read them by those names."""
    import ast
    import inspect
    import re
    from importlib import resources

    text = fleet_playbook.playbook_text("T", "b.pyz", {}, [], [], False, "0" * 32, None, None, False, True)
    registered = set(re.findall(r"^\s+register: (\S+)$", text, re.M))
    assert registered == set(ansible.REGISTER.values())
    callback = resources.files("playbook.templates").joinpath("fleet/callback.py").read_text("utf-8")
    kept = next(node.value for node in ast.parse(callback).body
                if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["KEPT"])
    assert tuple(ast.literal_eval(kept)) == ansible.KEPT
    # the fields the actions return, the callback passes on and the follower and summary read
    fields = next(node.value for node in ast.parse(callback).body
                  if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["FIELDS"])
    passed = set(ast.literal_eval(fields))
    for action in ansible.ACTIONS:
        source = resources.files("playbook.templates").joinpath("fleet/%s.py" % action).read_text("utf-8")
        returned = set(re.findall(r"\b(\w+)=", " ".join(re.findall(r"result\.update\(([^)]*)\)", source, re.S))))
        returned |= set(re.findall(r'result\["(\w+)"\] =', source))
        assert returned - {"failed", "changed", "msg"} <= passed, (action, returned - passed)
    for module in (follow, fleet_summary):
        read = set(re.findall(r'(?:record|last|look|start|r)\.get\("(\w+)"', inspect.getsource(module)))
        assert read - {"kind", "host", "register", "status", "task", "msg", "batch", "hosts", "event", "run_id"} <= passed, (module, read - passed)
    # a look, by the shared names, is what the follower prints lines for
    rollout = follow.Rollout(out=io.StringIO())
    event = {"event": "node_finished", "node": "a", "status": "succeeded"}
    rollout.feed({"kind": "result", "host": "h", "register": ansible.REGISTER["look"], "status": "retry", "offset": 10,
                  "events": [event], "done": False})
    assert rollout.out.getvalue() == "h  a  succeeded\n"


def test_ansible_starts_without_cryptographys_deprecation_notices(tmp_path):
    """What `playbook fleet` runs Ansible with keeps cryptography's cipher notices out of the
    operator's terminal (PYTHONWARNINGS)."""
    env = dict(os.environ, PYTHONWARNINGS=ansible.QUIET)
    done = subprocess.run([ansible.ansible_playbook(), "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "CryptographyDeprecationWarning" not in done.stderr and "Warning" not in done.stderr, done.stderr
