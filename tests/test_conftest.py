"""tests/conftest.py: the fixtures that start `playbook` (real processes, a real pty) and the
end-of-run line for tests left out because ../shared/compat-runbooks is absent."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from conftest import TESTS_DIR, stop_process

pytest_plugins = ["pytester"]

SLOW = """[runbook]
title = "slow"

[slow]
type = "Command"
command_name = "echo $$ > sh.pid; sleep 300"
"""

GATE = """[runbook]
title = "gate"

[gate]
type = "Manual"
description = "Look at the dashboards"
"""


def test_playbook_runs_the_console_script_with_home_in_tmp(playbook, tmp_path):
    ran = playbook("--version")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("playbook, version ")
    (tmp_path / "gate.playbook.toml").write_text(GATE)
    code, out, err = playbook("run", "gate.playbook.toml", "--auto-approve")
    assert code == 0, out + err
    assert (tmp_path / "home" / ".config" / "playbook" / "run.db").is_file()  # the default state path


def test_playbook_passes_input_and_a_clean_environment(playbook, tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYBOOK_DB_PATH", "/nonexistent/outside.db")
    monkeypatch.setenv("DROP_ME", "1")
    probe = (
        "import os, sys; names = ('DROP_ME', 'EXTRA'); "
        "print(sys.stdin.read(), os.environ['HOME'], sorted(k for k in os.environ if 'PLAYBOOK' in k or k in names), os.getcwd())"
    )
    ran = playbook("-c", probe, exe=sys.executable, input="typed", env={"DROP_ME": None, "EXTRA": "x"})
    assert ran == (0, "typed %s ['EXTRA'] %s\n" % (tmp_path / "home", tmp_path), "")


def _read_pid(path: Path) -> int:
    for _ in range(400):  # the command writes it as soon as it starts
        if path.is_file() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError("%s was never written" % path)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_playbook_start_teardown_stops_the_runner_and_its_command(playbook_start, tmp_path):
    (tmp_path / "slow.playbook.toml").write_text(SLOW)
    proc = playbook_start("run", "slow.playbook.toml", "--state-path", "state.db")
    shell = _read_pid(tmp_path / "sh.pid")
    assert proc.poll() is None and not _gone(shell)
    stop_process(proc)  # what the fixture's teardown does with a process still running
    assert proc.returncode == 130  # SIGTERM: the runner stopped its command, interrupted, resumable
    for _ in range(100):
        if _gone(shell):
            break
        time.sleep(0.05)
    assert _gone(shell)


def test_spawn_playbook_runs_on_a_terminal(spawn_playbook, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    (tmp_path / "gate.playbook.toml").write_text(GATE)
    child = spawn_playbook("run", "gate.playbook.toml", "--state-path", "state.db")
    child.expect("Continue")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# -- the line for a missing ../shared -------------------------------------------------------------
INNER_TESTS = '''
import pytest
from conftest import compat_path


def test_uses_the_fixture(compat_dir):
    assert compat_dir.is_dir()


def test_uses_the_helper():
    assert compat_path().is_dir()


def test_own_skip_in_another_file():
    pytest.skip("compat corpus file x.playbook.toml not found (../shared/compat-runbooks beside the repo)")


def test_unrelated_skip():
    pytest.skip("Graphviz `dot` is not installed")


def test_plain():
    assert True
'''


def _inner_checkout(pytester, with_shared):
    tests = pytester.path / "repo" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(TESTS_DIR / "conftest.py", tests / "conftest.py")
    (tests / "test_inner.py").write_text(INNER_TESTS)
    if with_shared:
        (pytester.path / "shared" / "compat-runbooks").mkdir(parents=True)
    return tests


def test_missing_corpus_is_reported_in_one_line_at_the_end(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)  # a developer's machine: skips stay skips
    tests = _inner_checkout(pytester, with_shared=False)
    result = pytester.runpytest_subprocess(str(tests), "-q", "-ra", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=4)
    absent = pytester.path / "shared" / "compat-runbooks"
    line = "3 tests need ../shared/compat-runbooks, which is absent (%s): not run" % absent
    assert result.outlines.count(line) == 1
    assert result.outlines.index(line) == len(result.outlines) - 2  # just above "1 passed, 4 skipped"


def test_no_line_when_the_corpus_is_there(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    tests = _inner_checkout(pytester, with_shared=True)
    result = pytester.runpytest_subprocess(str(tests), "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, skipped=2)
    assert not [line for line in result.outlines if "compat-runbooks" in line]


def test_under_ci_a_missing_declared_dependency_fails_and_other_skips_stay(pytester, monkeypatch):
    monkeypatch.setenv("CI", "1")
    tests = _inner_checkout(pytester, with_shared=False)
    result = pytester.runpytest_subprocess(str(tests), "-q", "-ra", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=3, failed=1)  # `dot` missing fails; the corpus's skips stay
    assert any("test_unrelated_skip" in line and "skipped under CI" in line for line in result.outlines), result.outlines


# -- the lines for processes left running ---------------------------------------------------------
LEAKING_TESTS = '''
import subprocess
import sys


def test_leaks():
    proc = subprocess.Popen(["sleep", "60"])
    with open(%r, "w") as f:
        f.write(str(proc.pid))


def test_cleans_up(playbook_start):
    playbook_start("-c", "import time; time.sleep(60)", exe=sys.executable)  # the fixture stops it
'''


def test_processes_left_running_are_named_with_their_test(pytester):
    tests = pytester.path / "repo" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(TESTS_DIR / "conftest.py", tests / "conftest.py")
    pid_file = pytester.path / "leaked.pid"
    (tests / "test_inner.py").write_text(LEAKING_TESTS % str(pid_file))
    result = pytester.runpytest_subprocess(str(tests), "-q", "-p", "no:cacheprovider")
    pid = int(pid_file.read_text())
    try:
        result.assert_outcomes(passed=2)
        left = [line for line in result.outlines if line.startswith("left running: ")]
        assert left == ["left running: pid %d `sleep 60`, started by repo/tests/test_inner.py::test_leaks (call)" % pid]
    finally:
        os.kill(pid, 9)
