"""Helpers shared by the command-line tests (tests/test_cli_*.py and others); this module holds no tests.

Everything here drives real parts: the installed `playbook` console script as a subprocess,
real SQLite files (read back with sqlite3), real pseudo-terminals through pexpect.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
COMPAT = REPO_ROOT.parent / "shared" / "compat-runbooks"
VENV_BIN = Path(sys.executable).parent

TIMEOUT = 60  # seconds a whole playbook process may take before the test gives up
PTY_TIMEOUT = 20  # seconds pexpect waits for one expected text


def playbook_exe():
    exe = VENV_BIN / "playbook"
    if exe.exists():
        return str(exe)
    found = shutil.which("playbook", path=str(VENV_BIN) + os.pathsep + os.environ.get("PATH", ""))
    if not found:
        pytest.skip("the playbook console script is not installed next to %s" % sys.executable)
    return found


def compat(name):
    """A file of the 1.x compatibility corpus, or skip when the corpus is not beside the repo."""
    path = COMPAT / name
    if not path.is_file():
        pytest.skip("compat corpus file %s not found (../shared/compat-runbooks beside the repo)" % name)
    return path


def make_env(tmp_path, extra=None, path_first=None):
    """The one environment policy of every `playbook` a test starts (conftest.clean_env): HOME
    in tmp, no colour, no PLAYBOOK_* or DISPLAY leaking in from outside."""
    from conftest import clean_env

    return clean_env(Path(tmp_path) / "home", extra, path_first)


def write_runbook(tmp_path, body, name="rb.playbook.toml", title="rt"):
    """Write a runbook; a `[runbook]` table is added when the body has none."""
    text = textwrap.dedent(body).lstrip("\n")
    if "[runbook]" not in text:
        text = '[runbook]\ntitle = "%s"\n\n' % title + text
    path = Path(tmp_path) / name
    path.write_text(text, encoding="utf-8")
    return path


def pb(tmp_path, *args, env=None, timeout=TIMEOUT, path_first=None):
    """Run `playbook ARGS` without a terminal (stdin /dev/null, output captured)."""
    proc = subprocess.run(
        [playbook_exe()] + [str(a) for a in args],
        cwd=str(tmp_path),
        env=make_env(tmp_path, env, path_first),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
    )
    proc.out = proc.stdout.decode("utf-8", "replace")
    proc.err = proc.stderr.decode("utf-8", "replace")
    proc.text = proc.out + proc.err
    return proc


STARTED: list = []  # processes pb_start started: conftest stops any still running after each test


def pb_start(tmp_path, *args, env=None, path_first=None):
    """Start `playbook ARGS` in the background without a terminal; returns the Popen. It is
    stopped after the test if still running (conftest's autouse `_stop_started`)."""
    proc = subprocess.Popen(
        [playbook_exe()] + [str(a) for a in args],
        cwd=str(tmp_path),
        env=make_env(tmp_path, env, path_first),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    STARTED.append(proc)
    return proc


def spawn(tmp_path, *args, env=None, path_first=None):
    """`playbook ARGS` on a real pseudo-terminal (pexpect)."""
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        playbook_exe(),
        [str(a) for a in args],
        cwd=str(tmp_path),
        env=make_env(tmp_path, env, path_first),
        encoding="utf-8",
        codec_errors="replace",
        timeout=PTY_TIMEOUT,
        dimensions=(50, 200),
    )
    return child


def finish(child, timeout=PTY_TIMEOUT):
    """Wait for a pexpect child to end; returns (exit status, everything it printed)."""
    import pexpect

    child.expect(pexpect.EOF, timeout=timeout)
    child.close()
    return child.exitstatus, child.before


# -- the state database -------------------------------------------------------------------------
def db(path):
    con = sqlite3.connect(str(path), timeout=10)
    con.row_factory = sqlite3.Row
    return con


def q(path, sql, params=()):
    con = db(path)
    try:
        return [dict(r) for r in con.execute(sql, params)]
    finally:
        con.close()


def runs(path):
    return q(path, "SELECT * FROM runs ORDER BY id")


def run_row(path, run_id=None):
    rows = runs(path)
    if run_id is None:
        return rows[-1]
    return next(r for r in rows if r["id"] == run_id)


def attempts(path, run_id=None, node=None):
    sql = "SELECT * FROM attempts WHERE 1 = 1"
    params = []
    if run_id is not None:
        sql += " AND run_id = ?"
        params.append(run_id)
    if node is not None:
        sql += " AND node_id = ?"
        params.append(node)
    return q(path, sql + " ORDER BY id", params)


def final(path, run_id=None):
    """{node: its latest attempt row} of a run (the latest run by default)."""
    if run_id is None:
        run_id = run_row(path)["id"]
    result = {}
    for row in attempts(path, run_id):
        result[row["node_id"]] = row
    return result


def status_of(path, run_id=None):
    return {node: row["status"] for node, row in final(path, run_id).items()}


def counts(path, run_id=None):
    """{node: number of attempt rows}"""
    result = {}
    for row in attempts(path, run_id):
        result[row["node_id"]] = result.get(row["node_id"], 0) + 1
    return result


def events(path, run_id=None):
    if run_id is None:
        return q(path, "SELECT * FROM events ORDER BY id")
    return q(path, "SELECT * FROM events WHERE run_id = ? ORDER BY id", (run_id,))


def db_bytes(path):
    """The bytes of the database and of its WAL and shared-memory files, if present."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(path) + suffix)
        if p.exists():
            data += p.read_bytes()
    return data


def integrity(path):
    con = sqlite3.connect(str(path))
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


# -- processes ----------------------------------------------------------------------------------
def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))


def read_pid(path, timeout=15.0):
    """Wait until `path` holds a pid, return it."""

    def get():
        try:
            text = Path(path).read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    return wait_for(get, timeout, what="pid file %s" % path)


def alive(pid):
    """True if `pid` is a live process (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return False
    state = data[data.rfind(b")") + 2 :].split()[0]
    return state not in (b"Z", b"X")


def wait_gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def kill_quietly(pid, group=False):
    try:
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def json_lines(text):
    """Every non-empty line parsed as JSON (an assertion names the first line that is not)."""
    objects = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError("line %d is not JSON: %r" % (number, line)) from None
        assert isinstance(obj, dict), "line %d is not a JSON object: %r" % (number, line)
        objects.append(obj)
    return objects


def by_title(workflows, title):
    """A workflow's statistics by its title (workflows are keyed by runbook identity)."""
    (found,) = [w for w in workflows.values() if w["title"] == title]
    return found
