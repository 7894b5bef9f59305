"""The SQLite state store: real database files, real subprocesses."""

import os
import pathlib
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from playbook.runtime import state
from playbook.runtime.state import LockedError, StateError, Store

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "state" / "run.db")


@pytest.fixture
def store(db_path):
    with Store(db_path) as s:
        yield s


def new_run(store, title="deploy", source="/srv/deploy.toml", **kwargs):
    return store.create_run(title, source, "hash1", '{"plan_version": 1}', {"env": "prod"}, **kwargs)


def old_run(store):
    """A run recorded as a version before schema 6 records one (no uid, origin or signers)."""
    cursor = store._db.execute(
        "INSERT INTO runs (title, source, plan_hash, plan, variables, status, started_at) "
        "VALUES ('deploy', '/srv/deploy.toml', 'hash1', '{\"plan_version\": 1}', '{}', 'running', '2026-01-01T00:00:00.000Z')"
    )
    return cursor.lastrowid


def user_version(store):
    """The schema version of an open store's database, read with a connection of its own."""
    con = sqlite3.connect(store.path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def python(code):
    """Run `code` in a fresh interpreter that can import playbook; returns the Popen."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def end(proc):
    """Kill `proc` (from `python`) if it still runs, reap it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


# --- paths, opening, migrations ----------------------------------------------------------


def test_now_iso_format():
    assert ISO.match(state.now_iso())


def test_now_iso_is_the_current_time_each_call(monkeypatch):
    """The text of a whole second is kept between calls: a new second gets its own."""
    clock = [1700000000.25]
    monkeypatch.setattr(state.time, "time", lambda: clock[0])
    assert state.now_iso() == "2023-11-14T22:13:20.250Z"
    clock[0] = 1700000000.999
    assert state.now_iso() == "2023-11-14T22:13:20.999Z"
    clock[0] = 1700000061.5
    assert state.now_iso() == "2023-11-14T22:14:21.500Z"
    clock[0] = 1600000000.0  # backwards too (the clock was set)
    assert state.now_iso() == "2020-09-13T12:26:40.000Z"


def test_create_sets_version_wal_and_reopens(db_path):
    with Store(db_path) as s:
        assert user_version(s) == len(state.MIGRATIONS)
        assert s._db.execute("PRAGMA journal_mode").fetchone()["journal_mode"] == "wal"
        assert s._db.execute("PRAGMA synchronous").fetchone()["synchronous"] == 1  # NORMAL
        assert s._db.execute("PRAGMA foreign_keys").fetchone()["foreign_keys"] == 1
        assert s._db.execute("PRAGMA busy_timeout").fetchone()["timeout"] == 5000
        run_id = new_run(s)
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(state.MIGRATIONS)
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "attempts", "events"} <= tables
    calls = []
    with Store(db_path, before_migrate=lambda *a: calls.append(a)) as s:
        assert s.get_run(run_id)["title"] == "deploy"
    assert calls == []  # nothing to migrate


def test_database_file_is_private(db_path):
    Store(db_path).close()
    assert os.stat(db_path).st_mode & 0o077 == 0


def test_newer_schema_is_refused(db_path):
    Store(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match="written by a newer Playbook") as info:
        Store(db_path)
    assert db_path in str(info.value)
    assert info.value.exit_code == 4


def test_non_database_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not sqlite, just some text that is long enough\n" * 20)
    with pytest.raises(StateError) as info:
        Store(str(path))
    message = str(info.value)
    assert str(path) in message and "not a Playbook state database" in message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("content", [b"x", b"short text\n"])
def test_short_non_database_file_is_left_alone(tmp_path, content):
    path = tmp_path / "tiny.txt"
    path.write_bytes(content)
    with pytest.raises(StateError, match="not a Playbook state database"):
        Store(str(path))
    assert path.read_bytes() == content  # SQLite would have turned it into a database


def test_other_programs_database_is_refused(tmp_path):
    path = str(tmp_path / "other.db")
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE contacts (name TEXT)")
    with pytest.raises(StateError, match="another program"):
        Store(path)
    with sqlite3.connect(path) as raw:
        tables = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["contacts"]


def test_empty_file_becomes_a_database(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with Store(str(path)) as s:
        assert user_version(s) == len(state.MIGRATIONS)


@pytest.mark.parametrize("under", ["file", "proc"])
def test_unwritable_location(tmp_path, under):
    if under == "file":
        blocker = tmp_path / "plain-file"
        blocker.write_text("x")
        path = str(blocker / "sub" / "run.db")
    else:
        path = "/proc/playbook-test/run.db"
    with pytest.raises(StateError) as info:
        Store(path)
    message = str(info.value)
    assert path in message and "--state-path" in message and "PLAYBOOK_DB_PATH" in message
    assert "\n" not in message


def test_directory_as_database_path(tmp_path):
    with pytest.raises(StateError, match="--state-path"):
        Store(str(tmp_path))


def test_before_migrate_only_for_existing_older_database(db_path, monkeypatch):
    base = len(state.MIGRATIONS)
    calls = []
    Store(db_path, before_migrate=lambda *a: calls.append(a)).close()
    assert calls == []  # a new database is not "migrated from" anything

    with Store(db_path) as s:
        run_id = new_run(s)

    def to_2(db):
        db.execute("ALTER TABLE runs ADD COLUMN labels TEXT")

    monkeypatch.setattr(state, "MIGRATIONS", state.MIGRATIONS + [to_2])
    with Store(db_path, before_migrate=lambda *a: calls.append(a)) as s:
        assert user_version(s) == base + 1
        assert "labels" in s.get_run(run_id)
    assert calls == [(os.path.abspath(db_path), base)]

    with Store(db_path, before_migrate=lambda *a: calls.append(a)):
        pass
    assert len(calls) == 1  # already current

    fresh = os.path.join(os.path.dirname(db_path), "fresh.db")
    with Store(fresh, before_migrate=lambda *a: calls.append(a)) as s:
        assert user_version(s) == base + 1
    assert len(calls) == 1


def test_failed_migration_rolls_back(db_path, monkeypatch):
    Store(db_path).close()

    def broken(db):
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr(state, "MIGRATIONS", state.MIGRATIONS + [broken])
    with pytest.raises(RuntimeError):
        Store(db_path)
    monkeypatch.undo()
    with Store(db_path) as s:
        assert user_version(s) == len(state.MIGRATIONS)
        assert s._db.execute("SELECT name FROM sqlite_master WHERE name='half_done'").fetchone() is None


def test_version_1_database_gains_process_columns(db_path, monkeypatch):
    """A database written before attempts recorded their process group is migrated in place:
    its rows keep their values and have no process recorded."""
    monkeypatch.setattr(state, "MIGRATIONS", state.MIGRATIONS[:1])
    with Store(db_path) as s:
        s._db.execute("INSERT INTO runs (title, started_at) VALUES ('old', '2026-01-01T00:00:00.000Z')")
        run_id = s._db.execute("SELECT id FROM runs").fetchone()["id"]
        attempt = s.start_attempt(run_id, "a", 1)
        s.finish_attempt(attempt, "succeeded", exit_code=0, stdout="old\n")
    monkeypatch.undo()
    with Store(db_path) as s:
        assert user_version(s) == len(state.MIGRATIONS)
        assert s.get_run(run_id)["runbook_id"] is None  # older runs have no runbook identity
        row = s.attempts(run_id)[0]
        assert (row["stdout"], row["pgid"], row["proc_start"]) == ("old\n", None, None)
        second = s.start_attempt(run_id, "b", 1)
        s.set_attempt_process(second, 4242, 987654)
        row = s.attempts(run_id, "b")[0]
        assert (row["pgid"], row["proc_start"], row["status"]) == (4242, 987654, "running")


def test_version_4_database_keeps_its_attempts_and_their_ids(db_path, monkeypatch):
    """Schema 5 rebuilds the attempts table (no AUTOINCREMENT, no index of running attempts):
    every row and every id survives, a running attempt is still found, new ids follow on."""
    monkeypatch.setattr(state, "MIGRATIONS", state.MIGRATIONS[:4])
    with Store(db_path) as s:
        run_id = old_run(s)
        first = s.start_attempt(run_id, "a", 1)
        s.set_attempt_process(first, 4242, 987654)
        s.finish_attempt(first, "failed", exit_code=3, stdout="out\n", stderr="err\n", stdout_truncated=True, output={"k": [1]}, error="boom")
        s.record_skip(run_id, "b", "when was false")
        running = s.start_attempt(run_id, "c", 1)
        before = s.attempts(run_id)
        sql = s._db.execute("SELECT sql FROM sqlite_master WHERE name = 'attempts'").fetchone()["sql"]
        assert "AUTOINCREMENT" in sql
    monkeypatch.undo()
    with Store(db_path) as s:
        assert user_version(s) == len(state.MIGRATIONS)
        assert s.attempts(run_id) == before
        names = {row["name"] for row in s._db.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'attempts'")}
        assert names == {"attempts", "attempts_run_node"}
        sql = s._db.execute("SELECT sql FROM sqlite_master WHERE name = 'attempts'").fetchone()["sql"]
        assert "AUTOINCREMENT" not in sql
        assert s._db.execute("SELECT count(*) AS n FROM sqlite_sequence WHERE name = 'attempts'").fetchone()["n"] == 0
        assert s.mark_interrupted(run_id) == ["c"]
        assert s.start_attempt(run_id, "d", 1) == running + 1
        assert s._db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert s._db.execute("PRAGMA integrity_check").fetchone()["integrity_check"] == "ok"


def test_closed_store_raises(db_path):
    s = Store(db_path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StateError, match="closed"):
        s.runs()


# --- runs --------------------------------------------------------------------------------


def test_run_lifecycle(store):
    run_id = new_run(store, host="web1", user="alice")
    with store.lock_run(run_id):  # driven: shown as running
        run = store.get_run(run_id)
        assert store.driven(run_id)
    assert run["status"] == "running" and run["trigger"] == "run"
    assert store.get_run(run_id)["status"] == "interrupted"  # recorded running, nobody drives it
    assert not store.driven(run_id)
    assert run["plan"] == '{"plan_version": 1}'
    assert run["variables"] == {"env": "prod"}
    assert (run["host"], run["user"]) == ("web1", "alice")
    assert ISO.match(run["started_at"]) and run["ended_at"] is None

    store.set_run_status(run_id, "failed", exit_code=1)
    run = store.get_run(run_id)
    assert run["status"] == "failed" and run["exit_code"] == 1 and ISO.match(run["ended_at"])

    store.set_run_trigger(run_id, "resume")
    store.set_run_status(run_id, "running", ended=False)
    with store.lock_run(run_id):
        run = store.get_run(run_id)
    assert run["trigger"] == "resume" and run["status"] == "running" and run["ended_at"] is None
    assert run["variables"] == {"env": "prod"}

    assert store.get_run(999) is None
    with pytest.raises(StateError, match="no run 999"):
        store.set_run_status(999, "failed")
    with pytest.raises(ValueError):
        store.set_run_status(run_id, "exploded")


def test_create_run_defaults_host_and_user(store):
    run = store.get_run(new_run(store))
    assert run["host"] == state.current_host() and run["user"] == state.current_user()


def test_runs_listing_and_latest(store):
    a = new_run(store, title="deploy")
    b = new_run(store, title="backup", source="/srv/backup.toml")
    c = new_run(store, title="deploy")
    store.set_run_status(a, "failed", 1)
    store.set_run_status(b, "aborted", 3)
    store.set_run_status(c, "succeeded", 0)

    assert [r["id"] for r in store.runs()] == [c, b, a]
    assert [r["id"] for r in store.runs(title="deploy")] == [c, a]
    assert [r["id"] for r in store.runs(limit=1)] == [c]
    assert "plan" not in store.runs()[0]
    assert store.runs(since="2999-01-01T00:00:00.000Z") == []
    assert len(store.runs(since="2000-01-01T00:00:00.000Z")) == 3

    assert store.latest_run()["id"] == b
    assert store.latest_run(source="/srv/deploy.toml")["id"] == a
    assert store.latest_run(title="deploy", statuses=None)["id"] == c
    assert store.latest_run(title="nothing") is None
    assert store.latest_run(source="/srv/deploy.toml")["plan"] == '{"plan_version": 1}'
    d = store.create_run("deploy", "/srv/deploy.toml", "hash2", '{"plan_version": 1}', {})
    store.set_run_status(d, "failed", 1)
    assert store.latest_run(plan_hash="hash2")["id"] == d  # resume finds runs of the same plan
    assert store.latest_run(plan_hash="hash1")["id"] == b
    assert store.latest_run(plan_hash="hash3") is None


# --- attempts ----------------------------------------------------------------------------


def test_attempt_lifecycle(store):
    run_id = new_run(store)
    attempt_id = store.start_attempt(run_id, "build", 1)
    row = store.attempts(run_id)[0]
    assert row["id"] == attempt_id and row["status"] == "running" and row["ended_at"] is None

    store.finish_attempt(
        attempt_id,
        "failed",
        exit_code=2,
        stdout="out",
        stderr="err",
        stderr_truncated=True,
        error="exit status 2",
        output={"answer": 42},
    )
    row = store.attempts(run_id, "build")[0]
    assert row["status"] == "failed" and row["exit_code"] == 2
    assert (row["stdout"], row["stderr"], row["error"]) == ("out", "err", "exit status 2")
    assert (row["stdout_truncated"], row["stderr_truncated"]) == (0, 1)
    assert row["output"] == {"answer": 42}
    assert ISO.match(row["ended_at"]) and row["duration"] >= 0

    store.set_attempt_decision(attempt_id, "retry", "alice@web1")
    assert store.next_attempt_number(run_id, "build") == 2
    second = store.start_attempt(run_id, "build", 2)
    store.finish_attempt(second, "succeeded", exit_code=0, output="done")
    rows = store.attempts(run_id, "build")
    assert [r["attempt"] for r in rows] == [1, 2]
    assert rows[0]["decision"] == "retry" and rows[0]["decided_by"] == "alice@web1"
    assert rows[1]["output"] == "done"

    with pytest.raises(TypeError, match="colour"):
        store.finish_attempt(second, "succeeded", colour="red")
    with pytest.raises(TypeError, match="colour"):  # not once the known ones were seen together
        store.finish_attempt(second, "succeeded", colour="red", exit_code=0, output="done")
    store.finish_attempt(second, "failed", exit_code=0, output=None, stdout_truncated="yes")
    row = store.attempts(run_id, "build")[1]
    assert (row["status"], row["exit_code"], row["output"], row["stdout_truncated"]) == ("failed", 0, None, 1)
    with pytest.raises(ValueError):
        store.finish_attempt(second, "running")
    with pytest.raises(StateError, match="no attempt"):
        store.finish_attempt(123456, "failed")


def test_duration_comes_from_started_at(store):
    run_id = new_run(store)
    attempt_id = store.start_attempt(run_id, "wait", 1)
    store._db.execute(
        "UPDATE attempts SET started_at = '2020-01-01T00:00:00.000Z' WHERE id = ?", (attempt_id,)
    )
    store.finish_attempt(attempt_id, "succeeded")
    row = store.attempts(run_id)[0]
    assert row["duration"] > 100_000_000  # years, in seconds


def test_record_skip_numbering(store):
    run_id = new_run(store)
    first = store.record_skip(run_id, "cleanup", "condition: has_failed('deploy') is false")
    row = store.attempts(run_id, "cleanup")[0]
    assert row["id"] == first and row["attempt"] == 1 and row["status"] == "skipped"
    assert row["duration"] == 0 and row["started_at"] == row["ended_at"]
    assert row["skip_reason"].startswith("condition")

    attempt_id = store.start_attempt(run_id, "deploy", 1)
    store.finish_attempt(attempt_id, "failed", exit_code=1)
    store.record_skip(run_id, "deploy", "operator", decision="skip", decided_by="bob@web1")
    rows = store.attempts(run_id, "deploy")
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "failed"), (2, "skipped")]
    assert rows[1]["decision"] == "skip" and rows[1]["decided_by"] == "bob@web1"
    assert store.next_attempt_number(run_id, "deploy") == 3
    assert store.next_attempt_number(run_id, "never-ran") == 1


def test_attempt_numbers_give_each_nodes_highest_attempt_in_one_run(store):
    run_id = new_run(store)
    other = new_run(store)
    assert store.attempt_numbers(run_id) == {}
    for number in (1, 2):
        store.finish_attempt(store.start_attempt(run_id, "deploy", number), "failed", exit_code=1)
    store.record_skip(run_id, "deploy", "operator", decision="skip", decided_by="bob@web1")
    store.record_skip(run_id, "cleanup", "condition: false")
    store.start_attempt(other, "deploy", 7)  # another run's attempts do not count
    assert store.attempt_numbers(run_id) == {"deploy": 3, "cleanup": 1}
    assert store.attempt_numbers(other) == {"deploy": 7}
    assert all(store.next_attempt_number(run_id, node) == n + 1 for node, n in store.attempt_numbers(run_id).items())


def test_final_attempts_pick_latest(store):
    run_id = new_run(store)
    other = new_run(store)
    for number, status in enumerate(["failed", "failed", "succeeded"], start=1):
        store.finish_attempt(store.start_attempt(run_id, "a", number), status)
    store.finish_attempt(store.start_attempt(run_id, "b", 1), "succeeded")
    store.finish_attempt(store.start_attempt(run_id, "b", 2), "failed")
    store.finish_attempt(store.start_attempt(other, "a", 1), "failed")
    final = store.final_attempts(run_id)
    assert set(final) == {"a", "b"}
    assert (final["a"]["attempt"], final["a"]["status"]) == (3, "succeeded")
    assert (final["b"]["attempt"], final["b"]["status"]) == (2, "failed")
    assert store.final_attempts(other)["a"]["status"] == "failed"
    assert store.final_attempts(999) == {}


def test_mark_interrupted(store):
    run_id = new_run(store)
    other = new_run(store)
    store.finish_attempt(store.start_attempt(run_id, "done", 1), "succeeded")
    store.start_attempt(run_id, "x", 1)
    store.start_attempt(run_id, "y", 1)
    store.start_attempt(other, "z", 1)
    assert store.mark_interrupted(run_id) == ["x", "y"]
    final = store.final_attempts(run_id)
    assert final["x"]["status"] == final["y"]["status"] == "interrupted"
    assert ISO.match(final["x"]["ended_at"]) and final["x"]["duration"] is not None
    assert final["done"]["status"] == "succeeded"
    assert store.final_attempts(other)["z"]["status"] == "running"
    assert store.mark_interrupted(run_id) == []


def test_set_node_status_adds_attempt_and_event(store):
    run_id = new_run(store)
    store.finish_attempt(store.start_attempt(run_id, "deploy", 1), "failed", exit_code=1)
    attempt_id = store.set_node_status(run_id, "deploy", "succeeded", "carol@ops", "fixed by hand")
    row = store.final_attempts(run_id)["deploy"]
    assert row["id"] == attempt_id and row["attempt"] == 2 and row["status"] == "succeeded"
    assert row["decision"] == "set-status" and row["decided_by"] == "carol@ops"
    assert row["note"] == "fixed by hand" and row["skip_reason"] is None

    store.set_node_status(run_id, "smoke", "skipped", "carol@ops", "not needed")
    assert store.final_attempts(run_id)["smoke"]["skip_reason"] == "not needed"

    events = store.events(run_id)
    assert [(e["kind"], e["node_id"], e["who"]) for e in events] == [
        ("set-status", "deploy", "carol@ops"),
        ("set-status", "smoke", "carol@ops"),
    ]
    assert "fixed by hand" in events[0]["detail"]
    with pytest.raises(ValueError):
        store.set_node_status(run_id, "deploy", "running", "carol@ops", "no")
    with pytest.raises(StateError, match="no run 999"):
        store.set_node_status(999, "deploy", "succeeded", "carol@ops", "no")
    assert store._db.in_transaction is False


def test_events(store):
    run_id = new_run(store)
    store.add_event(run_id, "approval", "approved", who="alice@web1", node_id="gate")
    store.add_event(run_id, "resume", {"from_run": 3})
    events = store.events(run_id)
    assert [e["kind"] for e in events] == ["approval", "resume"]
    assert events[0]["node_id"] == "gate" and events[0]["who"] == "alice@web1"
    assert events[1]["node_id"] is None and events[1]["detail"] == '{"from_run": 3}'
    assert ISO.match(events[0]["at"])
    assert store.events(999) == []


def test_foreign_keys_enforced(store):
    with pytest.raises(StateError, match="FOREIGN KEY"):
        store.start_attempt(999, "x", 1)


# --- crash safety ------------------------------------------------------------------------


def test_running_attempt_survives_sigkill(db_path):
    proc = python(
        """
        import os
        from playbook.runtime.state import Store
        store = Store(%r)
        run_id = store.create_run("deploy", "src", "h", "{}", {})
        store.start_attempt(run_id, "migrate-db", 1)
        os.kill(os.getpid(), 9)
        """
        % db_path
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    with Store(db_path) as s:
        assert s._db.execute("PRAGMA integrity_check").fetchone()["integrity_check"] == "ok"
        run = s.runs()[0]
        assert run["status"] == "interrupted"  # recorded running; its runner is gone
        assert s._db.execute("SELECT status FROM runs").fetchone()["status"] == "running"
        (row,) = s.attempts(run["id"])
        assert (row["node_id"], row["status"]) == ("migrate-db", "running")
        assert s.mark_interrupted(run["id"]) == ["migrate-db"]


# --- locking -----------------------------------------------------------------------------


def test_lock_excludes_other_process_until_it_dies(db_path):
    Store(db_path).close()
    proc = python(
        """
        import sys, time
        from playbook.runtime.state import Store
        lock = Store(%r).lock_run(1)
        print("locked", flush=True)
        time.sleep(60)
        """
        % db_path
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with Store(db_path) as s:
            with pytest.raises(LockedError) as info:
                s.lock_run(1)
            message = str(info.value)
            assert "run 1 is being driven by another process" in message
            assert "pid %d on host %s" % (proc.pid, state.current_host()) in message
            assert isinstance(info.value, StateError)

            with s.lock_run(2) as other:  # other runs are free
                assert other.held

            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            with s.lock_run(1) as lock:
                assert lock.held
                with open(lock.path) as f:
                    assert f.read().split()[0] == str(os.getpid())
            assert not lock.held
    finally:
        end(proc)


def pgids(store, run_id):
    """{node_id: (pgid, proc_start)} as the database holds them (without the lock file)."""
    rows = store._db.execute("SELECT node_id, pgid, proc_start FROM attempts WHERE run_id = ?", (run_id,))
    return {row["node_id"]: (row["pgid"], row["proc_start"]) for row in rows}


def test_processes_recorded_in_the_lock_file_move_into_the_database_on_release(store):
    """A driver records its commands in the lock file (no transaction); readers see them at
    once, and on release they go into the attempts that may still run, not the finished ones."""
    run_id = new_run(store)
    lock = store.lock_run(run_id)
    done = store.start_attempt(run_id, "done", 1)
    lock.record_process(done, 4001, 11)
    store.finish_attempt(done, "succeeded", exit_code=0)
    running = store.start_attempt(run_id, "running", 1)
    lock.record_process(running, 4002, None)
    stopped = store.start_attempt(run_id, "stopped", 1)
    lock.record_process(stopped, 4003, 33)
    store.finish_attempt(stopped, "interrupted", error="interrupted by a signal")
    with open(lock.path) as f:
        assert f.read().splitlines()[1:] == [
            "attempt %d 4001 11" % done, "attempt %d 4002 -" % running, "attempt %d 4003 33" % stopped]
    assert pgids(store, run_id) == {"done": (None, None), "running": (None, None), "stopped": (None, None)}
    shown = {a["node_id"]: (a["pgid"], a["proc_start"]) for a in store.attempts(run_id)}
    assert shown == {"done": (None, None), "running": (4002, None), "stopped": (4003, 33)}
    assert store.final_attempts(run_id)["running"]["pgid"] == 4002
    lock.release()
    assert pgids(store, run_id) == {"done": (None, None), "running": (4002, None), "stopped": (4003, 33)}
    with open(lock.path) as f:
        assert f.read() == ""


def test_processes_of_a_killed_driver_are_adopted_by_the_next_lock(db_path):
    """The driver is SIGKILLed: its records stay in the lock file, `attempts` reads them there,
    and the next lock_run writes them into the database before it takes the file over. A line
    the driver had not finished is ignored."""
    with Store(db_path) as s:
        run_id = new_run(s)
        first = s.start_attempt(run_id, "a", 1)
        s.finish_attempt(first, "failed", exit_code=1)
        second = s.start_attempt(run_id, "b", 1)
    proc = python(
        """
        import os, time
        from playbook.runtime.state import Store
        lock = Store(%r).lock_run(%d)
        lock.record_process(%d, 5001, 77)
        lock.record_process(%d, 5002, 88)
        os.pwrite(lock._fd, b"attempt %d 9", lock._end)  # cut short by the kill
        print("recorded", flush=True)
        time.sleep(60)
        """
        % (db_path, run_id, first, second, second)
    )
    try:
        assert proc.stdout.readline().strip() == "recorded"
        with Store(db_path) as s:
            with pytest.raises(LockedError, match="pid %d" % proc.pid):
                s.lock_run(run_id)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert pgids(s, run_id) == {"a": (None, None), "b": (None, None)}
            assert [a["pgid"] for a in s.attempts(run_id)] == [None, 5002]
            with s.lock_run(run_id) as lock:
                assert pgids(s, run_id) == {"a": (None, None), "b": (5002, 88)}
                with open(lock.path) as f:
                    assert f.read() == "%d %s\n" % (os.getpid(), state.current_host())
    finally:
        end(proc)


def test_processes_recorded_by_many_threads_at_once_are_all_kept(store):
    """--parallel: worker threads record their commands at the same time; no line is lost or
    torn."""
    import threading

    run_id = new_run(store)
    lock = store.lock_run(run_id)
    ids = [store.start_attempt(run_id, "n%d" % i, 1) for i in range(8 * 150)]

    def record(part):
        for attempt in part:
            lock.record_process(attempt, 100000 + attempt, 10**9 + attempt)

    threads = [threading.Thread(target=record, args=(ids[k::8],)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state._process_records(lock.path) == {a: (100000 + a, 10**9 + a) for a in ids}
    lock.release()
    assert {a["id"]: a["pgid"] for a in store.attempts(run_id)} == {a: 100000 + a for a in ids}


def test_a_process_the_lock_file_cannot_take_goes_into_the_database(store):
    run_id = new_run(store)
    lock = store.lock_run(run_id)
    attempt = store.start_attempt(run_id, "a", 1)
    held = lock._fd
    lock._fd = os.open(lock.path, os.O_RDONLY)  # writes fail (EBADF), as on a full disk
    try:
        lock.record_process(attempt, 6001, 99)
    finally:
        os.close(lock._fd)
        lock._fd = held
    assert pgids(store, run_id) == {"a": (6001, 99)}
    lock.release()
    assert pgids(store, run_id) == {"a": (6001, 99)}


def test_a_lock_file_without_its_holder_line_names_no_holder(db_path):
    """The holder's line could not be written (a full disk) but process records follow: the
    refusal names no holder rather than reading a record as one."""
    Store(db_path).close()
    path = db_path + ".locks/run-1.lock"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    proc = python(
        """
        import fcntl, os, time
        fd = os.open(%r, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"attempt 7 4242 99\\n", 0)
        print("locked", flush=True)
        time.sleep(60)
        """
        % path
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with Store(db_path) as s:
            with pytest.raises(LockedError) as info:
                s.lock_run(1)
        assert str(info.value) == "run 1 is being driven by another process; wait for it to finish or stop it"
    finally:
        end(proc)


def test_lock_within_one_process(store):
    lock = store.lock_run(5)
    with pytest.raises(LockedError, match="pid %d" % os.getpid()):
        store.lock_run(5)
    lock.release()
    lock.release()  # idempotent
    store.lock_run(5).release()


def test_lock_directory_unwritable(store, monkeypatch):
    os.makedirs(os.path.dirname(store.path), exist_ok=True)
    with open(store.path + ".locks", "w") as f:  # a file where the directory should be
        f.write("x")
    with pytest.raises(StateError, match="--state-path"):
        store.lock_run(1)


# --- statistics --------------------------------------------------------------------------


def make_run(store, title, status, seconds, nodes):
    """A finished run lasting `seconds`; nodes: [(node_id, [statuses...], duration)]."""
    run_id = store.create_run(title, "src", "h", "{}", {})
    start = "2026-01-01T00:00:00.000Z"
    end = "2026-01-01T00:%02d:%06.3fZ" % (seconds // 60, seconds % 60)
    store._db.execute(
        "UPDATE runs SET status = ?, started_at = ?, ended_at = ? WHERE id = ?",
        (status, start, end, run_id),
    )
    for node_id, statuses, duration in nodes:
        for number, node_status in enumerate(statuses, start=1):
            attempt_id = store.start_attempt(run_id, node_id, number)
            store.finish_attempt(attempt_id, node_status)
            store._db.execute("UPDATE attempts SET duration = ? WHERE id = ?", (duration, attempt_id))
    return run_id


def test_stats(store):
    r1 = make_run(store, "deploy", "succeeded", 10, [("build", ["succeeded"], 2.0), ("push", ["failed", "succeeded"], 4.0)])
    make_run(store, "deploy", "failed", 20, [("build", ["succeeded"], 4.0), ("push", ["failed", "failed", "failed"], 1.0)])
    make_run(store, "deploy", "succeeded", 40, [("build", ["succeeded"], 3.0)])
    make_run(store, "deploy", "aborted", 30, [("smoke", ["failed"], 0.5)])
    r5 = make_run(store, "backup", "succeeded", 5, [("dump", ["succeeded"], 5.0)])
    store.record_skip(r1, "notify", "disabled")
    store.set_node_status(r1, "build", "succeeded", "carol@ops", "again")  # not a retry
    store.add_event(r1, "approval", "push: approved: Go?", who="alice@web1", node_id="push")
    store.add_event(r1, "approval", "push: approved: Go?", who="bob@web1", node_id="push")
    store.add_event(r1, "approval", "push: rejected: Go?", who="carol@web1", node_id="push")
    store.add_event(r1, "approval", "push: needed, no terminal: Go?", node_id="push")
    store.add_event(r5, "approval", "dump: approved: Sure?", who="alice@web1", node_id="dump")
    store.add_event(r5, "decision", "retry", who="alice@web1", node_id="dump")

    stats = store.stats()
    assert set(stats) == {"deploy", "backup"}
    deploy = stats["deploy"]
    assert deploy["runs"] == 4
    assert deploy["by_status"] == {"succeeded": 2, "failed": 1, "aborted": 1}
    assert deploy["median_duration"] == pytest.approx(25.0)
    assert deploy["p95_duration"] == pytest.approx(40.0)
    assert deploy["most_failing"] == [("push", 4), ("smoke", 1)]
    assert deploy["most_retried"] == [("push", 3)]
    assert deploy["slowest"][0] == ("build", 3.0)
    assert dict(deploy["slowest"]) == {"build": 3.0, "push": 2.2, "smoke": 0.5}
    assert deploy["approvals_by"] == {"alice@web1": 1, "bob@web1": 1}

    backup = stats["backup"]
    assert backup["runs"] == 1 and backup["median_duration"] == pytest.approx(5.0)
    assert backup["approvals_by"] == {"alice@web1": 1}
    assert backup["most_failing"] == [] and backup["most_retried"] == []

    assert set(store.stats(title="backup")) == {"backup"}
    assert store.stats(since="2030-01-01T00:00:00.000Z") == {}


def test_stats_running_run_has_no_duration(store):
    run_id = new_run(store, title="live")
    with store.lock_run(run_id):  # a process drives it: running
        live = store.stats()["live"]
    assert live["by_status"] == {"running": 1} and live["median_duration"] is None
    # nothing drives it any more: the status `show` and `list` give, interrupted
    assert store.stats()["live"]["by_status"] == {"interrupted": 1}


# --- portability -------------------------------------------------------------------------


def test_module_is_standard_library_only():
    source = pathlib.Path(state.__file__).read_text()
    imports = set(re.findall(r"^(?:import|from) (\w+)", source, re.M))
    assert imports <= set(sys.stdlib_module_names)


def test_concurrent_first_open(tmp_path):
    path = str(tmp_path / "shared" / "run.db")
    code = """
        from playbook.runtime.state import Store
        with Store(%r) as s:
            s.create_run("t", "src", "h", "{}", {})
        print("ok")
        """ % path
    procs = [python(code) for _ in range(6)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, out.strip()) == (0, "ok"), err
    with Store(path) as s:
        assert len(s.runs()) == 6 and user_version(s) == len(state.MIGRATIONS)
