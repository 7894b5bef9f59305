"""Configuration (issue 5, item 1): discovery and precedence of every layer, environment sections,
environment-variable overrides, that each key changes behaviour, FILE:LINE errors with hints, and
`playbook config --show/--init/--validate/--template`.

Real files, real `playbook` processes (HOME and cwd in a tmp dir), real SQLite, a real
pseudo-terminal for prompts and colour. The system file (/etc/playbook/config.toml) is tested
in-process through the injectable path list, so no test writes outside its tmp dir.
"""

import json
import logging
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import (
    attempts,
    final,
    finish,
    make_env,
    pb,
    runs,
    spawn,
    write_runbook,
)

from playbook.runtime import session
from playbook.runtime import config
from playbook.runtime import runlog
from playbook.runtime import state

ECHO = '[a]\ntype = "Command"\ncommand_name = "echo hello-output"\n'
TWO = ECHO + '\n[b]\ntype = "Command"\ncommand_name = "echo second-output"\n'


def local_file(tmp_path, text):
    path = Path(tmp_path) / "playbook.toml"
    path.write_text(text)
    return path


def user_file(tmp_path, text):
    path = Path(tmp_path) / "home" / ".config" / "playbook" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def show(tmp_path, env=None):
    r = pb(tmp_path, "config", "--show", "--json", env=env)
    assert r.returncode == 0, r.text
    data = json.loads(r.out)
    return {"%s.%s" % (s, k): (v["value"], v["from"]) for s, keys in data["values"].items() for k, v in keys.items()}, data


def colour_codes(text):
    """SGR colour parameters (30-38, 90-97) found in the text's escape sequences."""
    found = []
    for params in re.findall(r"\x1b\[([0-9;]*)m", text):
        for part in params.split(";"):
            if part.isdigit() and (30 <= int(part) <= 38 or 90 <= int(part) <= 97):
                found.append(params)
    return found


# -- precedence ------------------------------------------------------------------------------------
def test_every_layer_in_process_system_user_local_environment_section_env_var(tmp_path):
    system = tmp_path / "etc.toml"
    system.write_text(
        "[database]\ntimeout = 11\nbackup_count = 9\n[execution]\nmax_retries = 7\ndefault_timeout = 70\n"
        "[ui]\ncolor_theme = \"light\"\n"
        "[environments.prod.execution]\nmax_retries = 2\n"
    )
    user = tmp_path / "user.toml"
    user.write_text("[database]\ntimeout = 22\n[execution]\nmax_retries = 6\n[environments.prod]\nui.color_theme = \"dark\"\n")
    local = tmp_path / "local.toml"
    local.write_text("[execution]\nmax_retries = 5\n")
    paths = [str(local), str(user), str(system)]

    cfg = config.load(environ={}, paths=paths)
    assert cfg.get("execution", "max_retries") == 5  # local beats user beats system
    assert cfg.origin("execution", "max_retries") == "%s:2" % local
    assert cfg.get("database", "timeout") == 22  # user beats system, key by key
    assert cfg.get("database", "backup_count") == 9  # only the system file sets it
    assert cfg.origin("database", "backup_count") == "%s:3" % system
    assert cfg.get("execution", "default_timeout") == 70
    assert cfg.get("ui", "color_theme") == "light"
    assert cfg.get("logging", "level") == "INFO" and cfg.origin("logging", "level") == "default"

    # PLAYBOOK_ENV: the environment section of any file beats every file's plain keys
    cfg = config.load(environ={"PLAYBOOK_ENV": "prod"}, paths=paths)
    assert cfg.get("execution", "max_retries") == 2
    assert cfg.origin("execution", "max_retries") == "%s:10 [environments.prod]" % system
    assert cfg.get("ui", "color_theme") == "dark"  # dotted key under [environments.prod]
    assert cfg.origin("ui", "color_theme") == "%s:6 [environments.prod]" % user

    # environment variables beat the environment section
    cfg = config.load(environ={"PLAYBOOK_ENV": "prod", "PLAYBOOK_MAX_RETRIES": "4", "PLAYBOOK_DEFAULT_TIMEOUT": "1.5"}, paths=paths)
    assert cfg.get("execution", "max_retries") == 4
    assert cfg.origin("execution", "max_retries") == "environment variable PLAYBOOK_MAX_RETRIES"
    assert cfg.get("execution", "default_timeout") == 1.5

    # only the system file: it applies; without files, the defaults
    assert config.load(environ={}, paths=[str(tmp_path / "none.toml"), str(system)]).get("execution", "max_retries") == 7
    assert config.load(environ={}, paths=[]).values == config.DEFAULTS


def test_default_discovery_list_and_playbook_config_alone(tmp_path):
    env = {"HOME": str(tmp_path / "h")}
    assert config.candidates(env, cwd=str(tmp_path)) == [
        str(tmp_path / "playbook.toml"),
        str(tmp_path / "h" / ".config" / "playbook" / "config.toml"),
        "/etc/playbook/config.toml",
    ]
    env["PLAYBOOK_CONFIG"] = str(tmp_path / "only.toml")
    assert config.candidates(env, cwd=str(tmp_path)) == [str(tmp_path / "only.toml")]


def test_local_beats_user_and_playbook_config_replaces_both_via_the_cli(tmp_path):
    local_file(tmp_path, "[execution]\nmax_retries = 5\n")
    user_file(tmp_path, "[execution]\nmax_retries = 6\ndefault_timeout = 60\n[logging]\nlevel = \"DEBUG\"\n")
    values, data = show(tmp_path)
    assert values["execution.max_retries"] == (5, "%s:2" % (tmp_path / "playbook.toml"))
    assert values["execution.default_timeout"][0] == 60
    assert values["logging.level"] == ("DEBUG", "%s:5" % (tmp_path / "home/.config/playbook/config.toml"))
    assert [f["found"] for f in data["files"]][:2] == [True, True]

    only = tmp_path / "custom.toml"
    only.write_text("[execution]\nmax_retries = 9\n")
    values, data = show(tmp_path, env={"PLAYBOOK_CONFIG": only})
    assert values["execution.max_retries"] == (9, "%s:2" % only)
    assert values["execution.default_timeout"] == (300, "default")  # the user file is not read
    assert [f["path"] for f in data["files"]] == [str(only)]

    # environment variables beat files; --show says so
    values, _ = show(tmp_path, env={"PLAYBOOK_DB_PATH": tmp_path / "x.db", "PLAYBOOK_LOG_LEVEL": "warning",
                                    "PLAYBOOK_LOG_FILE": tmp_path / "l.log", "PLAYBOOK_PARALLEL": "true"})
    assert values["database.path"] == (str(tmp_path / "x.db"), "environment variable PLAYBOOK_DB_PATH")
    assert values["logging.level"] == ("WARNING", "environment variable PLAYBOOK_LOG_LEVEL")
    assert values["logging.file_path"][1] == "environment variable PLAYBOOK_LOG_FILE"
    assert values["execution.parallel_execution"] == (4, "environment variable PLAYBOOK_PARALLEL")


def test_playbook_env_selects_a_section_and_a_typo_is_an_error(tmp_path):
    user_file(tmp_path, "[execution]\nmax_retries = 3\n\n[environments.production.execution]\nmax_retries = 1\n")
    values, data = show(tmp_path, env={"PLAYBOOK_ENV": "production"})
    assert data["environment"] == "production"
    assert values["execution.max_retries"][0] == 1
    assert "[environments.production]" in values["execution.max_retries"][1]
    rb = write_runbook(tmp_path, ECHO)
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db", env={"PLAYBOOK_ENV": "prodution"})
    assert r.returncode == 2, r.text
    assert "did you mean 'production'?" in r.err and "PLAYBOOK_ENV" in r.err
    assert not (tmp_path / "s.db").exists()


# -- [execution] --------------------------------------------------------------------------------------
def test_default_timeout_from_the_local_file_beats_the_user_file_and_env_beats_both(tmp_path):
    user_file(tmp_path, "[execution]\ndefault_timeout = 100\n")
    local_file(tmp_path, "[execution]\ndefault_timeout = 1\n")
    rb = write_runbook(tmp_path, '[slow]\ntype = "Command"\ncommand_name = "sleep 30"\n')
    dbp = tmp_path / "s.db"
    started = time.monotonic()
    r = pb(tmp_path, "run", rb, "--state-path", dbp)
    assert time.monotonic() - started < 10
    assert r.returncode == 1, r.text
    assert "timed out after 1 s" in final(dbp)["slow"]["error"]
    quick = write_runbook(tmp_path, '[s]\ntype = "Command"\ncommand_name = "sleep 1.5"\n', name="q.playbook.toml")
    r = pb(tmp_path, "run", quick, "--state-path", dbp, env={"PLAYBOOK_DEFAULT_TIMEOUT": "10"})
    assert r.returncode == 0, r.text


def test_max_retries_from_the_user_file_removes_retry_and_decisions_are_logged(tmp_path):
    log = tmp_path / "logs" / "runs.log"
    user_file(tmp_path, '[execution]\nmax_retries = 1\n[logging]\nfile_path = "%s"\n' % log)
    rb = write_runbook(tmp_path, '[a]\ntype = "Command"\ncommand_name = "exit 1"\n')
    c = spawn(tmp_path, "run", rb, "--state-path", tmp_path / "s.db")
    c.expect(r"Choose \[([a-z/]+)\]: ")
    assert c.match.group(1) == "s/a"
    c.sendline("a")
    code, out = finish(c)
    assert code == 3, out
    text = log.read_text()
    assert re.search(r"run 1: a decision: abort by \S+@\S+", text), text
    assert "WARNING run 1: a failed (attempt 1" in text


def test_parallel_execution_from_an_environment_section(tmp_path):
    user_file(tmp_path, "[environments.fast]\nexecution.parallel_execution = 4\n")
    body = "".join('[n%d]\ntype = "Command"\ncommand_name = "sleep 0.6"\ndepends_on = []\n\n' % i for i in range(4))
    rb = write_runbook(tmp_path, body)
    dbp = tmp_path / "s.db"
    r = pb(tmp_path, "run", rb, "--state-path", dbp, env={"PLAYBOOK_ENV": "fast"})
    assert r.returncode == 0, r.text
    rows = attempts(dbp)
    assert max(a["started_at"] for a in rows) < min(a["ended_at"] for a in rows)  # all four at once
    assert config.load(environ={}, paths=[str(_write(tmp_path / "t.toml", "[execution]\nparallel_execution = true\n"))]).get(
        "execution", "parallel_execution") == 4
    assert config.load(environ={}, paths=[str(_write(tmp_path / "f.toml", "[execution]\nparallel_execution = false\n"))]).get(
        "execution", "parallel_execution") == 1


def _write(path, text):
    Path(path).write_text(text)
    return path


def test_interactive_timeout_aborts_an_unanswered_prompt_and_the_run_resumes(tmp_path):
    log = tmp_path / "runs.log"
    local_file(tmp_path, '[execution]\ninteractive_timeout = 1\n[logging]\nlevel = "DEBUG"\nfile_path = "%s"\n' % log)
    rb = write_runbook(tmp_path, ECHO + '\n[gate]\ntype = "Manual"\ndescription = "check it"\nprompt_after = "Ship it?"\n')
    dbp = tmp_path / "s.db"
    started = time.monotonic()
    c = spawn(tmp_path, "run", rb, "--state-path", dbp)
    c.expect(r"Ship it\? \[y/n\]")
    code, out = finish(c)
    assert code == 3, out
    assert time.monotonic() - started < 10
    assert "no answer within 1 s" in out
    assert runs(dbp)[-1]["status"] == "aborted"
    text = log.read_text()
    assert "gate asks: Ship it?" in text and "gate: no answer within 1 s" in text
    r = pb(tmp_path, "resume", rb, "--auto-approve", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert runs(dbp)[-1]["status"] == "succeeded"


# -- [database] -------------------------------------------------------------------------------------
def test_database_path_flag_beats_env_beats_file(tmp_path):
    local_file(tmp_path, '[database]\npath = "%s"\n' % (tmp_path / "from-file" / "run.db"))
    rb = write_runbook(tmp_path, ECHO)
    assert pb(tmp_path, "run", rb).returncode == 0
    assert len(runs(tmp_path / "from-file" / "run.db")) == 1
    assert pb(tmp_path, "run", rb, env={"PLAYBOOK_DB_PATH": tmp_path / "env.db"}).returncode == 0
    assert len(runs(tmp_path / "env.db")) == 1
    assert pb(tmp_path, "run", rb, "--state-path", tmp_path / "flag.db", env={"PLAYBOOK_DB_PATH": tmp_path / "env.db"}).returncode == 0
    assert len(runs(tmp_path / "flag.db")) == 1 and len(runs(tmp_path / "env.db")) == 1


def test_database_timeout_is_the_busy_timeout(tmp_path):
    dbp = tmp_path / "s.db"
    cfg = config.load(environ={}, paths=[str(_write(tmp_path / "c.toml", "[database]\ntimeout = 0.5\n"))])
    store = session.open_store(str(dbp), cfg)
    assert store._db.execute("PRAGMA busy_timeout").fetchone()["timeout"] == 500
    holder = sqlite3.connect(str(dbp), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        with pytest.raises(state.StateError, match="locked"):
            store.create_run("t", "src", "hash", "{}", {})
        assert 0.4 < time.monotonic() - started < 3
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()
    default = session.open_store(str(dbp), config.load(environ={}, paths=[]))
    assert default._db.execute("PRAGMA busy_timeout").fetchone()["timeout"] == 30000
    default.close()


def test_backup_before_a_schema_migration_rotated_to_backup_count(tmp_path, monkeypatch):
    dbp = tmp_path / "run.db"
    with state.Store(dbp) as s:
        s.create_run("before", "src", "hash", "{}", {})
    old_version = len(state.MIGRATIONS)
    # a newer Playbook: one more migration, so this database is one schema behind
    monkeypatch.setattr(state, "MIGRATIONS", state.MIGRATIONS + [lambda db: db.execute("CREATE TABLE extra (x)")])
    cfg = config.load(environ={}, paths=[str(_write(tmp_path / "c.toml", "[database]\nbackup_count = 2\n"))])
    made = []
    for _ in range(4):
        before = {p.name for p in tmp_path.glob("run.db.bak-*")}
        store = session.open_store(str(dbp), cfg)
        assert store._db.execute("PRAGMA user_version").fetchone()["user_version"] == old_version + 1
        store.close()
        after = {p.name for p in tmp_path.glob("run.db.bak-*")}
        assert len(after - before) == 1
        made.append((after - before).pop())
        assert len(after) == min(len(made), 2)
        con = sqlite3.connect(str(dbp))
        con.execute("DROP TABLE extra")
        con.execute("PRAGMA user_version = %d" % old_version)
        con.close()
    backups = sorted(tmp_path.glob("run.db.bak-*"), key=lambda p: state._backup_order(str(p)))
    assert [p.name for p in backups] == made[-2:]  # the newest two kept
    assert re.match(r"run\.db\.bak-\d{8}T\d{6}Z(-\d+)?$", backups[-1].name)
    con = sqlite3.connect(str(backups[-1]))
    try:  # the copy is the database as it was before the migration
        assert con.execute("PRAGMA user_version").fetchone()[0] == old_version
        assert con.execute("SELECT title FROM runs").fetchall() == [("before",)]
    finally:
        con.close()
    assert oct(backups[-1].stat().st_mode & 0o777) == "0o600"

    for path in tmp_path.glob("run.db.bak-*"):
        path.unlink()
    off = config.load(environ={}, paths=[str(_write(tmp_path / "off.toml", "[database]\nbackup_enabled = false\n"))])
    session.open_store(str(dbp), off).close()
    assert not list(tmp_path.glob("run.db.bak-*"))


# -- [logging] --------------------------------------------------------------------------------------
def test_log_file_levels_and_no_output(tmp_path):
    log = tmp_path / "runs.log"
    rb = write_runbook(tmp_path, ECHO + '\n[bad]\ntype = "Command"\ncommand_name = "echo bad-output; exit 4"\n'
                       '\n[fix]\ntype = "Command"\ncommand_name = "true"\ndepends_on = ["bad:failure"]\n')
    local_file(tmp_path, '[logging]\nfile_path = "%s"\n' % log)
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db")
    assert r.returncode == 1, r.text
    info = log.read_text()
    assert "INFO run 1: started 'rt' (3 steps)" in info
    assert "INFO run 1: a started (Command, attempt 1)" in info and "INFO run 1: a succeeded" in info
    assert "WARNING run 1: bad failed (attempt 1" in info and "exit code 4" in info
    assert "WARNING run 1: finished failed (exit code 1)" in info
    assert "output" not in info.replace("following", "")  # no command output, at any level
    assert "command:" not in info  # DEBUG only

    log.unlink()
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db", env={"PLAYBOOK_LOG_LEVEL": "WARNING"})
    warning = log.read_text()
    assert "bad failed" in warning and "started" not in warning and "a succeeded" not in warning

    other = tmp_path / "env.log"
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db", env={"PLAYBOOK_LOG_FILE": other, "PLAYBOOK_LOG_LEVEL": "DEBUG"})
    debug = other.read_text()
    assert "DEBUG run 3: a command: echo hello-output" in debug
    assert "\nhello-output" not in debug and "bad-output\n" not in debug

    local_file(tmp_path, "[logging]\nfile_path = \"\"\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db").returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no log file anywhere


def test_log_file_rotates_at_max_size_keeping_backup_count(tmp_path):
    log = tmp_path / "r.log"
    local_file(tmp_path, '[logging]\nfile_path = "%s"\nmax_size_mb = 0.001\nbackup_count = 2\n' % log)
    body = "".join('[n%d]\ntype = "Command"\ncommand_name = "true"\n\n' % i for i in range(30))
    rb = write_runbook(tmp_path, body)
    assert pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db").returncode == 0
    names = sorted(p.name for p in tmp_path.glob("r.log*"))
    assert names == ["r.log", "r.log.1", "r.log.2"]
    for path in tmp_path.glob("r.log*"):
        assert path.stat().st_size <= 1100
    assert "finished succeeded" in log.read_text()


def test_logging_ui_forwards_everything(tmp_path):
    seen = []

    class Fake:
        interactive = True
        show_output = True

        def event(self, kind, **data):
            seen.append(kind)

        def confirm(self, node, question):
            return True

    logger = logging.Logger("t")
    wrapped = runlog.LoggingUI(Fake(), logger)
    assert wrapped.interactive is True
    wrapped.show_output = False
    assert wrapped._ui.show_output is False
    wrapped.event("message", text="hi")
    assert seen == ["message"]
    assert wrapped.confirm(SimpleNamespace(id="n"), "ok?") is True


# -- [ui] -------------------------------------------------------------------------------------------
def test_show_timestamps_and_compact_output(tmp_path):
    rb = write_runbook(tmp_path, ECHO)
    local_file(tmp_path, "[ui]\nshow_timestamps = true\n")
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db")
    assert re.search(r"^\d\d:\d\d:\d\d ✓ a succeeded", r.out, re.M), r.out
    assert "hello-output" in r.out
    local_file(tmp_path, "[ui]\nshow_timestamps = false\ncompact_output = true\n")
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db")
    assert re.search(r"^✓ a succeeded", r.out, re.M), r.out
    assert not re.search(r"^\d\d:\d\d:\d\d", r.out, re.M)
    assert "│ hello-output" not in r.out and "✓ a succeeded" in r.out
    assert final(tmp_path / "s.db")["a"]["stdout"].strip() == "hello-output"  # still recorded


def test_progress_bar_on_a_terminal_and_plain_turns_it_off(tmp_path):
    rb = write_runbook(tmp_path, TWO)
    c = spawn(tmp_path, "run", rb, "--state-path", tmp_path / "s.db")
    code, out = finish(c)
    assert code == 0, out
    assert "1/2 steps" in out and "2/2 steps" in out and "━" in out
    local_file(tmp_path, '[ui]\nprogress_style = "plain"\n')
    c = spawn(tmp_path, "run", rb, "--state-path", tmp_path / "s.db")
    code, out = finish(c)
    assert code == 0, out
    assert "/2 steps" not in out  # no progress bar (the run header still says "2 steps")


def test_color_theme_on_a_terminal(tmp_path):
    rb = write_runbook(tmp_path, ECHO)
    colour = {"TERM": "xterm-256color", "NO_COLOR": None, "COLORTERM": None}
    outputs = {}
    for theme in ("auto", "dark", "light", "none"):
        local_file(tmp_path, '[ui]\ncolor_theme = "%s"\n' % theme)
        c = spawn(tmp_path, "run", rb, "--state-path", tmp_path / "s.db", env=colour)
        code, out = finish(c)
        assert code == 0, out
        outputs[theme] = out
    assert colour_codes(outputs["auto"])
    assert "\x1b[" not in outputs["none"]  # no colour, no styling at all
    assert any("92" in p.split(";") for p in colour_codes(outputs["dark"]))  # bright green
    assert any(p.endswith("38;5;22") or "38;5;22" in p for p in colour_codes(outputs["light"]))  # dark green
    local_file(tmp_path, '[ui]\ncolor_theme = "dark"\n')
    c = spawn(tmp_path, "run", rb, "--state-path", tmp_path / "s.db", env=dict(colour, NO_COLOR="1"))
    code, out = finish(c)
    assert code == 0 and not colour_codes(out)  # NO_COLOR wins


# -- mistakes -----------------------------------------------------------------------------------------
def test_unknown_keys_and_wrong_types_name_file_and_line_and_the_run_refuses(tmp_path):
    path = local_file(
        tmp_path,
        "# comment\n[execution]\nmax_retry = 2\ndefault_timeout = \"10\"\n\n[ui]\ncolor_theme = \"drak\"\n"
        "show_timestamps = \"false\"\n[logs]\nlevel = \"INFO\"\n\n[environments.prod]\nexecution.max_retries = 1.5\n",
    )
    rb = write_runbook(tmp_path, ECHO)
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db")
    assert r.returncode == 2, r.text
    err = r.err
    assert "%s:3: unknown key 'max_retry' in [execution] (did you mean 'max_retries'?)" % path in err
    assert "%s:4: execution.default_timeout must be a number, not a string (\"10\") (write default_timeout = 10, without quotes)" % path in err
    assert "%s:7: ui.color_theme must be one of" % path in err and "did you mean 'dark'?" in err
    assert "%s:8: ui.show_timestamps must be true or false" % path in err
    assert "%s:9: unknown section [logs] (its keys belong in [logging])" % path in err
    assert "%s:13: [environments.prod] execution.max_retries must be an integer, not a float (1.5)" % path in err
    assert "Traceback" not in r.text
    assert not (tmp_path / "s.db").exists()  # nothing was run

    local_file(tmp_path, "[execution]\nmax_retries = \n")
    r = pb(tmp_path, "show", "--state-path", tmp_path / "s.db")
    assert r.returncode == 2 and "playbook.toml:2: invalid TOML" in r.err

    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db", env={"PLAYBOOK_CONFIG": tmp_path / "c.toml", "PLAYBOOK_MAX_RETRIES": "many"})
    assert r.returncode == 2
    assert "c.toml" in r.err and "no such file" in r.err
    assert "PLAYBOOK_MAX_RETRIES" in r.err and "'many' is not an integer" in r.err


def test_durations_and_sizes_are_finite_and_bounded_with_file_and_line(tmp_path):
    path = _write(tmp_path / "c.toml", (
        "[database]\ntimeout = 1e308\n"
        "[execution]\ndefault_timeout = nan\ninteractive_timeout = 9223372036854775807\n"
        "[logging]\nmax_size_mb = inf\n"
        "[environments.prod.execution]\ndefault_timeout = -1\n"
    ))
    problems = config.gather(environ={}, paths=[str(path)])[2]
    assert [p.format() for p in problems] == [
        "%s:2: database.timeout must be at most 604800 seconds (7 days)" % path,
        "%s:4: execution.default_timeout must be zero or a positive number of seconds" % path,
        "%s:5: execution.interactive_timeout must be at most 604800 seconds (7 days)" % path,
        "%s:7: logging.max_size_mb must be at most 1048576, not inf" % path,
        "%s:9: [environments.prod] execution.default_timeout must be zero or a positive number of seconds" % path,
    ]
    fine = _write(tmp_path / "fine.toml", "[execution]\ndefault_timeout = 604800\ninteractive_timeout = 0\n")
    cfg = config.load(environ={}, paths=[str(fine)])
    assert (cfg.get("execution", "default_timeout"), cfg.get("execution", "interactive_timeout")) == (604800, 0)


@pytest.mark.parametrize("text", ["1e308", "1e23", "9223372036854775807", "inf", "nan", "-5", "604801"])
def test_playbook_default_timeout_is_bounded(tmp_path, text):
    problems = config.gather(environ={"PLAYBOOK_DEFAULT_TIMEOUT": text}, paths=[])[2]
    (problem,) = problems
    assert problem.format().startswith(
        "environment variable PLAYBOOK_DEFAULT_TIMEOUT: PLAYBOOK_DEFAULT_TIMEOUT (execution.default_timeout) must be "
    )
    assert ("at most 604800 seconds" in problem.message) != ("zero or a positive number" in problem.message)


def test_bounded_durations_via_playbook_config_validate_and_run(tmp_path):
    local_file(tmp_path, "[execution]\ndefault_timeout = 1e308\n")
    r = pb(tmp_path, "config", "--validate")
    assert r.returncode == 2
    expected = "%s:2: error: execution.default_timeout must be at most 604800 seconds (7 days)"
    assert expected % (tmp_path / "playbook.toml") in r.err
    local_file(tmp_path, "[execution]\ndefault_timeout = 60\n")
    rb = write_runbook(tmp_path, ECHO)
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "s.db", env={"PLAYBOOK_DEFAULT_TIMEOUT": "1e308"})
    assert r.returncode == 2, r.text
    assert "PLAYBOOK_DEFAULT_TIMEOUT (execution.default_timeout) must be at most 604800 seconds (7 days)" in r.err
    assert "Traceback" not in r.text and not (tmp_path / "s.db").exists()


def test_value_ranges_and_runbook_named_playbook_toml(tmp_path):
    problems = config.gather(environ={}, paths=[str(_write(tmp_path / "c.toml",
        "[execution]\nmax_retries = 0\n[logging]\nlevel = \"LOUD\"\n[database]\nbackup_count = 0\n"))])[2]
    text = "\n".join(p.format() for p in problems)
    assert "c.toml:2: execution.max_retries must be at least 1" in text
    assert "c.toml:4: logging.level must be one of" in text
    assert "c.toml:6: database.backup_count must be at least 1" in text
    problems = config.gather(environ={}, paths=[str(_write(tmp_path / "playbook.toml", "[runbook]\ntitle = \"x\"\n"))])[2]
    assert "looks like a runbook" in problems[0].format()


# -- playbook config ----------------------------------------------------------------------------------
def test_config_show_text_names_every_origin(tmp_path):
    local_file(tmp_path, "[execution]\nmax_retries = 5\n")
    r = pb(tmp_path, "config", env={"PLAYBOOK_LOG_LEVEL": "DEBUG"})
    assert r.returncode == 0, r.text
    assert re.search(r"max_retries\s+= 5\s+# %s:2" % re.escape(str(tmp_path / "playbook.toml")), r.out)
    assert re.search(r'level\s+= "DEBUG"\s+# environment variable PLAYBOOK_LOG_LEVEL', r.out)
    assert re.search(r"backup_count\s+= 5\s+# default", r.out)
    assert "(not found)" in r.out


def test_config_init_creates_extends_and_refuses_to_overwrite(tmp_path):
    target = tmp_path / "home" / ".config" / "playbook" / "config.toml"
    r = pb(tmp_path, "config", "--init", "production")
    assert r.returncode == 0, r.text
    assert "created %s" % target in r.out
    assert "[environments.production]" in target.read_text()
    values, data = show(tmp_path, env={"PLAYBOOK_ENV": "production"})
    assert data["environment"] == "production"

    text = target.read_text().replace("# execution.max_retries = 3", "execution.max_retries = 1")
    target.write_text("[execution]\nmax_retries = 4\n\n" + text.split("\n\n", 1)[1])
    r = pb(tmp_path, "config", "--init", "staging")
    assert r.returncode == 0 and "added [environments.staging]" in r.out
    content = target.read_text()
    assert "max_retries = 4" in content and "[environments.production]" in content and "[environments.staging]" in content

    r = pb(tmp_path, "config", "--init", "production")
    assert r.returncode == 2
    assert "exists already" in r.err and "--force" in r.err
    assert target.read_text() == content
    assert show(tmp_path, env={"PLAYBOOK_ENV": "production"})[0]["execution.max_retries"][0] == 1
    r = pb(tmp_path, "config", "--init", "production", "--force")
    assert r.returncode == 0 and "replaced" in r.out
    assert show(tmp_path, env={"PLAYBOOK_ENV": "production"})[0]["execution.max_retries"][0] == 4
    assert target.read_text().count("[environments.production]") == 1
    assert "[environments.staging]" in target.read_text()

    custom = tmp_path / "etc" / "custom.toml"
    r = pb(tmp_path, "config", "--init", "dev", env={"PLAYBOOK_CONFIG": custom})
    assert r.returncode == 0 and "[environments.dev]" in custom.read_text()


def test_config_validate(tmp_path):
    r = pb(tmp_path, "config", "--validate")
    assert r.returncode == 0 and "no configuration file found" in r.out
    local_file(tmp_path, "[execution]\nmax_retries = 2\n")
    user = user_file(tmp_path, "[environments.prod.ui]\ncompact = true\n")
    r = pb(tmp_path, "config", "--validate")
    assert r.returncode == 2, r.text
    assert "%s:2: error: unknown key 'compact' in [environments.prod.ui] (did you mean 'compact_output'?)" % user in r.err
    r = pb(tmp_path, "config", "--validate", "--json")
    data = json.loads(r.out)
    assert r.returncode == 2 and data["valid"] is False and data["problems"][0]["line"] == 2
    user.write_text("[environments.prod.ui]\ncompact_output = true\n")
    r = pb(tmp_path, "config", "--validate")
    assert r.returncode == 0, r.text
    assert "ok %s" % (tmp_path / "playbook.toml") in r.out and "ok %s" % user in r.out


def test_config_template_lists_every_key_with_its_default(tmp_path):
    out = tmp_path / "template.toml"
    r = pb(tmp_path, "config", "--template", out)
    assert r.returncode == 0, r.text
    text = out.read_text()
    assert text == (Path(__file__).resolve().parents[1] / "templates" / "config.toml").read_text()
    cfg = config.load(environ={}, paths=[str(out)])  # a valid configuration: the defaults
    assert cfg.values == config.DEFAULTS
    lines = text.splitlines()
    for section, keys in config.DEFAULTS.items():
        assert "[%s]" % section in lines
        for key in keys:
            index = next(i for i, line in enumerate(lines) if line.startswith("%s = " % key) and
                         section == next(l for l in reversed(lines[:i]) if l.startswith("["))[1:-1])
            assert lines[index - 1].startswith("# "), key  # each key is explained
    assert pb(tmp_path, "config", "--template", out).returncode == 2  # no overwrite
    assert pb(tmp_path, "config", "--template", out, "--force").returncode == 0
    assert pb(tmp_path, "config", "--template", "-").out == text


# -- bundles read the same files ------------------------------------------------------------------------
def test_a_bundle_reads_the_configuration_on_the_server(tmp_path):
    rb = write_runbook(tmp_path, ECHO)
    bundle = tmp_path / "x.pyz"
    r = pb(tmp_path, "compile", rb, "-o", bundle, "--no-bytecode")
    assert r.returncode == 0, r.text
    server = tmp_path / "server"
    server.mkdir()
    local_file(server, '[database]\npath = "state/run.db"\n[ui]\nshow_timestamps = false\ncompact_output = true\n')
    r = run_bundle(server, bundle, "run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^✓ a succeeded", r.stdout, re.M) and "│ hello-output" not in r.stdout
    assert runs(server / "state" / "run.db")[0]["status"] == "succeeded"
    local_file(server, "[ui]\nshow_timestamp = false\n")
    r = run_bundle(server, bundle, "run")
    assert r.returncode == 2
    assert "%s:2: unknown key 'show_timestamp' in [ui] (did you mean 'show_timestamps'?)" % (server / "playbook.toml") in r.stderr


def run_bundle(cwd, bundle, *args):
    return subprocess.run([str(bundle)] + list(args), cwd=str(cwd), env=make_env(cwd), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
