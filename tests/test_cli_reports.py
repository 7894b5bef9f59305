"""show / info / set-status, and the configuration the runtime honours (PLAYBOOK_CONFIG,
PLAYBOOK_DB_PATH, [execution] keys, unwritable state locations)."""

import json
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import (
    by_title,
    attempts,
    counts,
    events,
    final,
    finish,
    pb,
    runs,
    spawn,
    write_runbook,
)

from playbook.runtime.state import whoami

HANDLED = """
[build]
type = "Command"
command_name = "echo built"

[gate]
type = "Manual"
description = "look"
prompt_after = "Ship it?"

[check]
type = "Command"
command_name = "echo checking; exit {{ CODE }}"

[rollback]
type = "Command"
command_name = "echo rolled back"
depends_on = ["check:failure"]
"""


@pytest.fixture

def history(tmp_path):
    """Two runs of one workflow (one succeeded, one failed) and one of another."""
    rb = write_runbook(tmp_path, "[variables]\nCODE = { default = 0, type = \"int\" }\n" + HANDLED, title="release")
    other = write_runbook(tmp_path, '[x]\ntype = "Command"\ncommand_name = "echo x"\n', name="o.playbook.toml", title="other-flow")
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--auto-approve", "--state-path", dbp).returncode == 0
    assert pb(tmp_path, "run", rb, "--auto-approve", "--var", "CODE=1", "--state-path", dbp).returncode == 1
    assert pb(tmp_path, "run", other, "--state-path", dbp).returncode == 0
    return tmp_path, dbp


def test_show_lists_runs(history):
    tmp_path, dbp = history
    r = pb(tmp_path, "show", "--state-path", dbp)
    assert r.returncode == 0, r.text
    lines = r.out.splitlines()
    assert str(dbp) in r.out
    row = {}
    for line in lines:
        parts = line.split()
        if parts and parts[0].isdigit():
            row[int(parts[0])] = line
    assert set(row) == {1, 2, 3}
    assert "succeeded" in row[1] and "release" in row[1]
    assert "failed" in row[2] and "release" in row[2]
    assert "other-flow" in row[3]
    only = pb(tmp_path, "show", "release", "--state-path", dbp)
    assert only.returncode == 0
    assert "release" in only.out and "other-flow" not in only.out


def test_show_run_lists_attempts_with_decisions_and_who(history):
    tmp_path, dbp = history
    r = pb(tmp_path, "show", "--run", "2", "--state-path", dbp)
    assert r.returncode == 0, r.text
    text = r.out
    assert "run 2" in text and "failed" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip() and not line.startswith(" ")}
    assert "auto-approved" in lines["gate"] and "auto-approve" in lines["gate"]
    assert "failed" in lines["check"] and "follow-failure" in lines["check"] and "automatic" in lines["check"]
    assert "succeeded" in lines["rollback"]
    assert "checking" not in text
    with_output = pb(tmp_path, "show", "--run", "2", "--output", "--state-path", dbp)
    assert with_output.returncode == 0
    assert "checking" in with_output.out and "rolled back" in with_output.out


def test_show_json_is_valid(history):
    tmp_path, dbp = history
    r = pb(tmp_path, "show", "--json", "--state-path", dbp)
    assert r.returncode == 0, r.text
    doc = json.loads(r.out)
    assert [run["id"] for run in doc["runs"]] == [3, 2, 1]
    assert doc["runs"][1]["status"] == "failed"
    r2 = pb(tmp_path, "show", "--run", "2", "--json", "--state-path", dbp)
    assert r2.returncode == 0, r2.text
    doc2 = json.loads(r2.out)
    assert doc2["run"]["id"] == 2
    by_node = {a["node_id"]: a for a in doc2["attempts"]}
    assert by_node["check"]["status"] == "failed"
    assert by_node["check"]["exit_code"] == 1
    assert by_node["check"]["decision"] == "follow-failure"
    assert by_node["gate"]["decided_by"] == whoami()
    assert any(e["kind"] == "approval" for e in doc2["events"])


def test_show_unknown_run_is_a_clear_error(history):
    tmp_path, dbp = history
    r = pb(tmp_path, "show", "--run", "99", "--state-path", dbp)
    assert r.returncode != 0
    assert "99" in r.err
    assert "Traceback" not in r.text


def test_info_prints_per_workflow_stats(history):
    tmp_path, dbp = history
    r = pb(tmp_path, "info", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert str(dbp) in r.out
    assert "release" in r.out and "other-flow" in r.out
    assert "50%" in r.out  # release: 1 of 2 succeeded
    assert "check" in r.out  # the node that fails most
    j = pb(tmp_path, "info", "--json", "--state-path", dbp)
    assert j.returncode == 0, j.text
    doc = json.loads(j.out)
    assert doc["database"] == str(dbp)
    release = by_title(doc["workflows"], "release")
    assert release["runs"] == 2
    assert release["by_status"] == {"failed": 1, "succeeded": 1}
    assert release["most_failing"][0][0] == "check"
    assert release["median_duration"] is not None
    assert by_title(doc["workflows"], "other-flow")["runs"] == 1


def _has_echo_plugin():
    try:
        eps = metadata.entry_points()
        group = eps.select(group="playbook.plugins") if hasattr(eps, "select") else eps.get("playbook.plugins", [])
    except Exception:
        return False
    return any(ep.name == "echo" for ep in group)


def test_info_plugins_lists_functions_and_parameters(tmp_path):
    r = pb(tmp_path, "info", "--plugins")
    assert r.returncode == 0, r.text
    assert "python" in r.out
    for text in ("notify", "message", "sleep", "seconds", "throw"):
        assert text in r.out
    j = pb(tmp_path, "info", "--plugins", "--json")
    assert j.returncode == 0, j.text
    doc = json.loads(j.out)
    assert "plugins" in doc
    dumped = json.dumps(doc)
    assert "notify" in dumped and "seconds" in dumped
    if not _has_echo_plugin():
        pytest.skip("the probe plugin (tests/probe_plugin, entry point `echo`) is not installed")
    assert "echo" in r.out
    assert "show" in r.out
    for param in ("i: int", "f: float", "b: bool", "l: list", "d: dict", "s: str"):
        assert param in r.out


def test_set_status_records_an_audited_row_and_resume_honours_it(tmp_path):
    rb = write_runbook(tmp_path, """
        [first]
        type = "Command"
        command_name = "echo first >> side.log"

        [flaky]
        type = "Command"
        command_name = "echo flaky >> side.log; exit 1"

        [last]
        type = "Command"
        command_name = "echo last >> side.log"
    """)
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1
    r = pb(tmp_path, "set-status", "1", "flaky", "succeeded", "--reason", "fixed by hand", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "flaky" in r.out and "succeeded" in r.out
    row = attempts(dbp, node="flaky")[-1]
    assert row["status"] == "succeeded"
    assert row["decision"] == "set-status"
    assert "@" in row["decided_by"]
    assert row["note"] == "fixed by hand"
    audit = [e for e in events(dbp, 1) if e["kind"] == "set-status"]
    assert len(audit) == 1
    assert audit[0]["node_id"] == "flaky" and "fixed by hand" in audit[0]["detail"] and "@" in audit[0]["who"]
    r2 = pb(tmp_path, "resume", rb, "1", "--state-path", dbp)
    assert r2.returncode == 0, r2.text
    assert (tmp_path / "side.log").read_text().splitlines() == ["first", "flaky", "last"]
    assert counts(dbp) == {"first": 1, "flaky": 2, "last": 1}


def test_set_status_unknown_node_is_refused(tmp_path):
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "false"\n')
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 1
    r = pb(tmp_path, "set-status", "1", "ghost", "succeeded", "--state-path", dbp)
    assert r.returncode == 2, r.text
    assert "ghost" in r.err and "a" in r.err
    assert len(attempts(dbp)) == 1


# -- configuration --------------------------------------------------------------------------------
def test_config_max_retries_changes_the_failure_menu(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[execution]\nmax_retries = 1\n")
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "exit 1"\n')
    dbp = tmp_path / "state.db"
    c = spawn(tmp_path, "run", rb, "--state-path", dbp, env={"PLAYBOOK_CONFIG": cfg})
    c.expect(r"Choose \[([a-z/]+)\]: ")
    assert c.match.group(1) == "s/a"  # one attempt allowed: no retry offered
    c.sendline("a")
    code, out = finish(c)
    assert code == 3, out


def test_env_max_retries_overrides_config(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[execution]\nmax_retries = 1\n")
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "exit 1"\n')
    c = spawn(tmp_path, "run", rb, "--state-path", tmp_path / "s.db",
              env={"PLAYBOOK_CONFIG": cfg, "PLAYBOOK_MAX_RETRIES": "2"})
    c.expect(r"Choose \[([a-z/]+)\]: ")
    assert c.match.group(1) == "r/s/a"
    c.sendline("a")
    finish(c)


def test_config_default_timeout(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[execution]\ndefault_timeout = 1\n")
    rb = write_runbook(tmp_path, '[slow]\ntype = "Command"\ncommand_name = "sleep 30"\n')
    dbp = tmp_path / "state.db"
    started = time.monotonic()
    r = pb(tmp_path, "run", rb, "--state-path", dbp, env={"PLAYBOOK_CONFIG": cfg})
    assert time.monotonic() - started < 10
    assert r.returncode == 1, r.text
    assert "timed out" in final(dbp)["slow"]["error"]


def test_config_parallel_execution(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[execution]\nparallel_execution = 4\n")
    body = "".join('[n%d]\ntype = "Command"\ncommand_name = "sleep 0.5"\ndepends_on = []\n\n' % i for i in range(4))
    rb = write_runbook(tmp_path, body)
    dbp = tmp_path / "s.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp, env={"PLAYBOOK_CONFIG": cfg})
    assert r.returncode == 0, r.text
    rows = attempts(dbp)
    assert len(rows) == 4
    # all four were running at once: each started before any of them ended
    assert max(a["started_at"] for a in rows) < min(a["ended_at"] for a in rows)


def test_config_database_path(tmp_path):
    target = tmp_path / "from-config" / "run.db"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[database]\npath = "%s"\n' % target)
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "true"\n')
    r = pb(tmp_path, "run", rb, env={"PLAYBOOK_CONFIG": cfg})
    assert r.returncode == 0, r.text
    assert runs(target)[0]["status"] == "succeeded"


def test_missing_config_file_is_a_clear_error(tmp_path):
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "true"\n')
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db", env={"PLAYBOOK_CONFIG": tmp_path / "nope.toml"})
    assert r.returncode == 2, r.text
    assert "nope.toml" in r.err
    assert "Traceback" not in r.text


def test_playbook_db_path_is_used_without_state_path(tmp_path):
    target = tmp_path / "env-db" / "nested" / "state.db"
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "echo hi"\n', title="envdb")
    env = {"PLAYBOOK_DB_PATH": target}
    r = pb(tmp_path, "run", rb, env=env)
    assert r.returncode == 0, r.text
    assert target.exists()
    assert runs(target)[0]["title"] == "envdb"
    assert not (tmp_path / "home" / ".config" / "playbook" / "run.db").exists()
    s = pb(tmp_path, "show", env=env)
    assert s.returncode == 0 and "envdb" in s.out


def test_default_state_path_is_under_home(tmp_path):
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "true"\n', title="homedb")
    r = pb(tmp_path, "run", rb)
    assert r.returncode == 0, r.text
    default = tmp_path / "home" / ".config" / "playbook" / "run.db"
    assert runs(default)[0]["title"] == "homedb"


def test_unwritable_state_path_is_exit_4_naming_the_option(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "echo ran >> side.log"\n')
    r = pb(tmp_path, "run", rb, "--state-path", blocker / "sub" / "run.db")
    assert r.returncode == 4, r.text
    assert "--state-path" in r.err
    assert "PLAYBOOK_DB_PATH" in r.err
    assert "Traceback" not in r.text
    assert not (tmp_path / "side.log").exists()
    r2 = pb(tmp_path, "run", rb, env={"PLAYBOOK_DB_PATH": blocker / "run.db"})
    assert r2.returncode == 4, r2.text
    assert "PLAYBOOK_DB_PATH" in r2.err


def test_state_path_that_is_not_a_database_is_exit_4(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("these are my notes, not a database\n")
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "true"\n')
    r = pb(tmp_path, "run", rb, "--state-path", bogus)
    assert r.returncode == 4, r.text
    assert "not a Playbook state database" in r.err
    assert bogus.read_text() == "these are my notes, not a database\n"


def test_report_html_and_junit_without_a_file_name_pick_one(tmp_path):
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "true"\n')
    dbp = tmp_path / "state.db"
    assert pb(tmp_path, "run", rb, "--state-path", dbp).returncode == 0
    r = pb(tmp_path, "report", "--html", "--junit", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert (tmp_path / "playbook-run-1.html").read_text().startswith("<!DOCTYPE html>")
    assert "<testsuite" in (tmp_path / "playbook-run-1.xml").read_text()
    r = pb(tmp_path, "report", "1", "--html", "named.html", "--state-path", dbp)
    assert r.returncode == 0 and (tmp_path / "named.html").exists()
