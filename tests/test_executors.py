"""The Command process runner, on real subprocesses.

Time limits are generous (seconds) so that the tests hold on a busy 2-core machine. No test
leaves a process behind: every process a test starts inherits a mark in its environment, and
``leaves_no_process`` fails the test if a marked process is still alive afterwards.
"""

import dataclasses
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from playbook.runtime import executors
from playbook.runtime.executors import (
    CommandResult,
    group_alive,
    process_start_ticks,
    run_command,
    stop_group,
    terminate_all,
    terminate_group,
)

HAVE_BASH = shutil.which("bash") is not None
HAVE_PYTHON3 = shutil.which("python3") is not None
needs_bash = pytest.mark.skipif(not HAVE_BASH, reason="bash not installed")
needs_python3 = pytest.mark.skipif(not HAVE_PYTHON3, reason="python3 not on PATH")


@pytest.fixture(params=["pidfd", "polling"])
def exit_detection(request, monkeypatch):
    """Run a test with pidfd exit detection and with the polling fallback (old kernels)."""
    if request.param == "pidfd":
        if not executors._USE_PIDFD:
            pytest.skip("no pidfd on this system")
    else:
        monkeypatch.setattr(executors, "_USE_PIDFD", False)
    return request.param


def _alive(pid):
    """Is ``pid`` a live process? A zombie (not reaped by a lazy init) counts as dead."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    return data[data.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def _survivors(pids, within=5.0):
    """The pids still alive after waiting up to ``within`` seconds for them to go."""
    deadline = time.monotonic() + within
    while True:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _pids(text):
    return [int(word) for word in text.split() if word.isdigit()]


_MARK = "PLAYBOOK_TEST_PROCESS_MARK"
_marks = itertools.count()


def _marked(needle):
    """The live pids whose environment holds ``needle``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                if needle in b"\0" + f.read() and _alive(int(name)):
                    found.append(int(name))
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def leaves_no_process(monkeypatch):
    """Fail a test that leaves a process it started alive (and kill what it left)."""
    mark = "%d-%d" % (os.getpid(), next(_marks))
    monkeypatch.setenv(_MARK, mark)
    yield
    needle = ("\0%s=%s\0" % (_MARK, mark)).encode()
    deadline = time.monotonic() + 5
    left = _marked(needle)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _marked(needle)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "the test left processes running"


@pytest.fixture
def reaper():
    """Kill any pid a failing test left behind."""
    pids = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# --------------------------------------------------------------------------- results


def test_exit_codes(exit_detection):
    ok = run_command("true")
    assert ok.exit_code == 0 and ok.ok and ok.error is None and not ok.timed_out
    failed = run_command("exit 3")
    assert failed.exit_code == 3 and not failed.ok and failed.error is None
    assert failed.duration >= 0


def test_result_shape():
    assert dataclasses.is_dataclass(CommandResult)
    assert [f.name for f in dataclasses.fields(CommandResult)] == [
        "exit_code", "stdout", "stderr", "stdout_truncated", "stderr_truncated",
        "timed_out", "interrupted", "error", "duration", "note",
    ]
    assert CommandResult(exit_code=0, stdout="x") == CommandResult(exit_code=0, stdout="x")
    assert CommandResult(exit_code=0) != CommandResult(exit_code=1)
    result = CommandResult(exit_code=0)
    assert result.ok
    assert not CommandResult(exit_code=0, timed_out=True).ok
    assert not CommandResult(exit_code=0, interrupted=True).ok
    assert not CommandResult(exit_code=0, error="x").ok
    assert not CommandResult().ok
    assert set(result.to_dict()) >= {
        "exit_code", "stdout", "stderr", "stdout_truncated", "stderr_truncated",
        "timed_out", "interrupted", "error", "duration",
    }
    assert "exit_code=0" in repr(result)


def test_stdout_and_stderr_are_separate(exit_detection):
    result = run_command("echo out; echo err >&2; echo out2")
    assert result.stdout == "out\nout2\n"
    assert result.stderr == "err\n"
    assert not result.stdout_truncated and not result.stderr_truncated


def test_on_output_gets_every_chunk_in_order_per_stream():
    seen = {"stdout": [], "stderr": []}
    result = run_command(
        "i=1; while [ $i -le 300 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done",
        on_output=lambda stream, text: seen[stream].append(text),
    )
    expected_out = "".join("o%d\n" % i for i in range(1, 301))
    expected_err = "".join("e%d\n" % i for i in range(1, 301))
    assert "".join(seen["stdout"]) == expected_out == result.stdout
    assert "".join(seen["stderr"]) == expected_err == result.stderr


def test_tail_is_kept_and_truncation_flagged():
    result = run_command(
        "printf '0123456789%.0s' 1 2 3 4 5 6 7 8 9 10; echo short >&2", tail_bytes=15
    )
    assert result.stdout == "567890123456789"
    assert result.stdout_truncated
    assert result.stderr == "short\n"
    assert not result.stderr_truncated


def test_big_output_streams_completely_but_keeps_only_the_tail():
    total = [0]

    def count(stream, text):
        total[0] += len(text)

    result = run_command(
        "head -c 5000000 /dev/zero | tr '\\0' a", on_output=count, tail_bytes=1000
    )
    assert result.ok
    assert total[0] == 5000000
    assert result.stdout == "a" * 1000
    assert result.stdout_truncated


def test_the_tail_stays_bounded_while_a_long_line_streams():
    """One 5 MB line without a newline: the runner never holds more than the tail (plus the
    chunk just read) of it."""
    held = []

    def on_output(stream, text):
        with executors._RUNNING_LOCK:
            runs = list(executors._RUNNING)
        held.append(max(sum(len(c) for c in s.chunks) for run in runs for s in run.streams))

    result = run_command("head -c 5000000 /dev/zero | tr '\\0' a", on_output=on_output)
    assert len(held) > 10
    assert max(held) <= 65536
    assert result.stdout == "a" * 65536 and result.stdout_truncated


def test_zero_tail_bytes_keeps_nothing():
    result = run_command("echo hi", tail_bytes=0)
    assert result.stdout == "" and result.stdout_truncated


def test_tail_never_starts_inside_a_character():
    # 100 two-byte characters; an odd cut would land on a continuation byte.
    result = run_command(
        "i=0; while [ $i -lt 100 ]; do printf '\\303\\251'; i=$((i+1)); done", tail_bytes=11
    )
    assert result.stdout_truncated
    assert result.stdout == "\u00e9" * 5


def test_invalid_utf8_becomes_replacement_character():
    seen = []
    result = run_command("printf 'a\\377b'", on_output=lambda s, t: seen.append(t))
    assert result.stdout == "a\ufffdb"
    assert "".join(seen) == "a\ufffdb"


def test_multibyte_character_split_across_reads_survives():
    seen = []
    result = run_command(
        "printf '\\303'; sleep 0.3; printf '\\251\\n'", on_output=lambda s, t: seen.append(t)
    )
    assert "".join(seen) == "\u00e9\n"
    assert "\ufffd" not in "".join(seen)
    assert result.stdout == "\u00e9\n"


def test_incomplete_character_at_end_of_stream_is_flushed():
    seen = []
    result = run_command("printf 'x\\303'", on_output=lambda s, t: seen.append(t))
    assert "".join(seen) == "x\ufffd"
    assert result.stdout == "x\ufffd"


def test_output_is_text_not_markup():
    result = run_command("printf '\\033[31mred\\033[0m [/] [bold]x[/bold] {{ y }}\\n'")
    assert result.stdout == "\x1b[31mred\x1b[0m [/] [bold]x[/bold] {{ y }}\n"


def test_single_quoted_dollar_stays_literal():
    result = run_command("echo '$HOME' \"${HOME:+set}\"")
    assert result.stdout == "$HOME set\n"


def test_killed_by_signal_is_reported():
    result = run_command("kill -9 $$")
    assert result.exit_code == -signal.SIGKILL
    assert result.error == "killed by SIGKILL"
    assert not result.timed_out and not result.ok


# --------------------------------------------------------------------------- environment


def test_env_is_merged_over_the_environment(monkeypatch):
    monkeypatch.setenv("PB_INHERITED", "inherited")
    monkeypatch.setenv("PB_DROPPED", "here")
    result = run_command(
        'printf "%s|%s|%s" "$PB_X" "$PB_INHERITED" "${PB_DROPPED-unset}"',
        env={"PB_X": "a 'b' $c", "PB_DROPPED": None},
    )
    assert result.stdout == "a 'b' $c|inherited|unset"


def test_cwd(tmp_path):
    result = run_command("pwd -P", cwd=tmp_path)
    assert result.stdout.strip() == os.path.realpath(str(tmp_path))


def test_missing_cwd_is_an_error_not_an_exception(tmp_path):
    missing = str(tmp_path / "nope")
    result = run_command("true", cwd=missing)
    assert result.error == "cannot start: working directory %s does not exist" % missing
    assert result.exit_code is None and not result.ok


def test_cwd_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    result = run_command("true", cwd=str(path))
    assert result.error == "cannot start: working directory %s is not a directory" % path


def test_stdin_is_devnull_so_a_step_never_waits_for_input():
    code = (
        "from playbook.runtime.executors import run_command as r\n"
        "print(repr(r('cat').stdout)); print(repr(r('#!/bin/sh\\nread x; echo got=$x').stdout))\n"
        "import sys; print(repr(sys.stdin.read()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input="hello\nworld\n", capture_output=True, text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    # Neither command sees the runner's stdin (it stays for the operator's answers).
    assert out.stdout.splitlines() == ["''", "'got=\\n'", "'hello\\nworld\\n'"]


# --------------------------------------------------------------------------- shells and scripts


def test_missing_shell_is_an_error_not_an_exception():
    result = run_command("echo hi", shell="/nonexistent/sh")
    assert result.error == "cannot start: /nonexistent/sh not found"
    assert result.exit_code is None and not result.ok


def test_invalid_shell_string():
    result = run_command("echo hi", shell="bash 'unbalanced")
    assert result.error.startswith("cannot start: invalid shell")


def test_shell_with_arguments():
    result = run_command("false; echo after", shell="/bin/sh -e")
    assert result.exit_code == 1 and result.stdout == ""


@needs_bash
def test_shell_bash():
    result = run_command('echo "${BASH_VERSION:+bash}"; [[ x == x ]] && echo ok', shell="bash")
    assert result.stdout == "bash\nok\n"


@needs_bash
def test_shebang_bash_after_leading_newline(exit_detection):
    script = '\n  #!/usr/bin/env bash\necho "${BASH_VERSION:+bash}"\necho "$0"\n'
    result = run_command(script, shell="/nonexistent/ignored")
    lines = result.stdout.splitlines()
    assert result.ok, result
    assert lines[0] == "bash"
    assert lines[1].startswith(("/dev/fd/", "/proc/self/fd/"))


@needs_bash
def test_shebang_with_an_argument():
    result = run_command("#!/bin/bash -e\nfalse\necho not reached\n")
    assert result.exit_code == 1 and result.stdout == ""


@needs_python3
def test_shebang_python():
    script = (
        "#!/usr/bin/env python3\nimport sys\nprint('python', sys.version_info[0])\nsys.exit(5)\n"
    )
    result = run_command(script)
    assert result.stdout == "python 3\n"
    assert result.exit_code == 5


@needs_python3
def test_long_python_script(exit_detection):
    filler = "# %s\n" % ("x" * 100)
    script = "#!/usr/bin/env python3\n" + filler * 2000 + "print('end of a long script')\n"
    assert len(script) > 200000
    result = run_command(script)
    assert result.ok, result
    assert result.stdout == "end of a long script\n"


def test_long_shell_script(exit_detection):
    lines = ["echo line %d %s" % (i, "y" * 30) for i in range(3000)]
    script = "#!/bin/sh\n" + "\n".join(lines) + "\necho done\n"
    assert len(script) > 100000
    result = run_command(script, tail_bytes=1 << 20)
    assert result.ok, result
    out = result.stdout.splitlines()
    assert len(out) == 3001 and out[-1] == "done" and out[1234] == "line 1234 " + "y" * 30


def test_script_that_stops_reading_early():
    script = "#!/bin/sh\necho first\nexit 7\n" + "echo never\n" * 50000
    result = run_command(script)
    assert result.exit_code == 7 and result.stdout == "first\n"


def test_shebang_missing_interpreter():
    result = run_command("#!/nonexistent/interp\necho hi\n")
    assert result.error == "cannot start: /nonexistent/interp not found"
    assert result.exit_code is None


def test_empty_shebang_line():
    result = run_command("#!\necho hi\n")
    assert result.error == "cannot start: the #! line names no interpreter"


def test_shebang_writes_no_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    result = run_command("#!/bin/sh\necho $0\n", cwd=str(tmp_path))
    assert result.ok
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- process groups


def test_timeout_kills_the_whole_group(exit_detection, reaper):
    result = run_command(
        "sleep 300 & echo $!; sleep 300 & echo $!; echo $$; sleep 300", timeout=1
    )
    pids = _pids(result.stdout)
    reaper.extend(pids)
    assert len(pids) == 3
    assert result.timed_out and not result.ok
    assert result.error == "timed out after 1 s (process group terminated)"
    assert result.exit_code is not None and result.exit_code != 0
    assert 0.9 < result.duration < 30
    assert _survivors(pids) == []


def test_timeout_escalates_to_sigkill(exit_detection, reaper):
    # `trap '' TERM` makes the shell and its children ignore SIGTERM.
    result = run_command(
        "trap '' TERM; sleep 300 & echo $!; echo $$; sleep 300", timeout=0.5, kill_grace=0.5
    )
    pids = _pids(result.stdout)
    reaper.extend(pids)
    assert result.timed_out
    assert result.error == "timed out after 0.5 s (process group killed)"
    assert result.exit_code == -signal.SIGKILL
    assert _survivors(pids) == []


def test_background_job_holding_the_pipes_does_not_hang(exit_detection, reaper):
    started = time.monotonic()
    result = run_command("sleep 100 & echo $!; echo hi")
    elapsed = time.monotonic() - started
    pids = _pids(result.stdout)
    reaper.extend(pids)
    assert result.ok, result
    assert result.stdout.endswith("hi\n")
    assert elapsed < 2.0
    assert "terminated" in result.note
    assert _survivors(pids) == []


def test_background_job_not_holding_the_pipes_is_terminated(exit_detection, reaper):
    result = run_command("sleep 100 >/dev/null 2>&1 & echo $!")
    pids = _pids(result.stdout)
    reaper.extend(pids)
    assert result.ok and len(pids) == 1
    assert _survivors(pids) == []


def test_background_job_ignoring_sigterm_gets_sigkill(reaper):
    started = time.monotonic()
    result = run_command("trap '' TERM; sleep 100 >/dev/null 2>&1 & echo $!", kill_grace=0.3)
    pids = _pids(result.stdout)
    reaper.extend(pids)
    assert result.ok
    assert time.monotonic() - started < 10
    assert _survivors(pids) == []


def test_keyboard_interrupt_kills_the_group_and_is_reraised(reaper):
    pids = []
    timers = []

    def on_output(stream, text):
        pids.extend(_pids(text))
        if len(pids) >= 2 and not timers:
            timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
            timers.append(timer)
            timer.start()

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as info:
        run_command("echo $$; sleep 300 & echo $!; sleep 300", on_output=on_output, timeout=60)
    reaper.extend(pids)
    assert time.monotonic() - started < 30
    partial = info.value.command_result
    assert partial.interrupted and not partial.ok
    assert partial.error.startswith("interrupted by KeyboardInterrupt (process group")
    assert _pids(partial.stdout) == pids
    assert len(pids) == 2
    assert _survivors(pids) == []


def test_exception_from_on_output_kills_the_group(reaper):
    pids = []

    def on_output(stream, text):
        pids.extend(_pids(text))
        if len(pids) >= 2:
            raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError) as info:
        run_command("echo $$; sleep 300 & echo $!; sleep 300", on_output=on_output, timeout=60)
    reaper.extend(pids)
    assert info.value.command_result.interrupted
    assert _survivors(pids) == []


def _group_members(pgid):
    """'pid state' of every process /proc lists in group ``pgid``: for failure messages."""
    return [
        "%d %s" % (pid, fields[0].decode())
        for pid, fields in executors._all_stats() or ()
        if int(fields[2]) == pgid
    ]


def test_terminate_group(reaper):
    # `exec`: once the line is read, the shell forks nothing more. dash blocks signals around
    # the vfork of a foreground command, so a SIGTERM landing just then ends the shell but
    # misses the child it starts; only SIGKILL would end that one (run_command does escalate).
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 300 & echo $!; exec sleep 300"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    child = int(proc.stdout.readline())
    reaper.extend([proc.pid, child])
    before = _group_members(proc.pid)
    ended = terminate_group(proc.pid, grace=5, proc=proc)
    assert ended is True, "group before: %s; after SIGKILL: %s" % (before, _group_members(proc.pid))
    assert proc.wait(10) == -signal.SIGTERM
    proc.stdout.close()
    assert _survivors([child]) == []
    # A group that no longer exists is fine.
    assert terminate_group(proc.pid, grace=0.1) is True


def test_terminate_group_escalates(reaper):
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "trap '' TERM; echo ready; sleep 300"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    proc.stdout.readline()
    reaper.append(proc.pid)
    assert terminate_group(proc.pid, grace=0.3, proc=proc) is False
    assert proc.wait(10) == -signal.SIGKILL
    proc.stdout.close()


# --------------------------------------------------------------------------- interactive


def test_interactive_uses_the_terminal(capfd):
    result = run_command("echo hi-from-interactive; echo to-stderr >&2; exit 4", interactive=True)
    out, err = capfd.readouterr()
    assert "hi-from-interactive" in out and "to-stderr" in err
    assert result.exit_code == 4
    assert result.stdout == "" and result.stderr == ""
    assert "not captured" in result.note


def test_process_groups():
    check = "#!%s\nimport os, sys\nsys.exit(0 if %s else 1)\n"
    own = "os.getpgrp() == os.getpid() == os.getsid(0)"
    assert run_command(check % (sys.executable, own)).ok
    ours = "os.getpgrp() == %d" % os.getpgrp()
    assert run_command(check % (sys.executable, ours), interactive=True).ok


_WHAT_THE_SHELL_GOT = (
    'read -r stat < /proc/$$/stat; set -- $stat; echo "ids $1 $5 $6"; '
    "sed -n 's/^SigIgn:[[:space:]]*/ignored /p' /proc/$$/status; "
    'echo "stdin $(readlink /proc/$$/fd/0)"; '
    "for fd in %s; do [ -e /dev/fd/$fd ] && echo leaked $fd; done; true"
)


@pytest.mark.parametrize("how", ["plain", "cwd", "shell-by-name"])
def test_every_way_of_starting_gives_the_same_process(how, tmp_path):
    """With or without a working directory, the shell named by path or by name: a session and
    group of its own, stdin /dev/null, SIGPIPE and SIGXFSZ not ignored (Python ignores SIGPIPE),
    and no descriptor of ours, even an inheritable one."""
    inherited = os.pipe()
    for fd in inherited:
        os.set_inheritable(fd, True)
    try:
        command = _WHAT_THE_SHELL_GOT % " ".join(map(str, inherited))
        kwargs = {"cwd": tmp_path} if how == "cwd" else {"shell": "sh"} if how == "shell-by-name" else {}
        result = run_command(command, **kwargs)
    finally:
        executors._close(inherited)
    assert result.ok, result
    lines = result.stdout.splitlines()
    pid, group, session = lines[0].split()[1:]
    assert lines[0].startswith("ids ") and pid == group == session
    ignored = int(lines[1].split()[1], 16)
    assert lines[1].startswith("ignored ") and not ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1))
    assert lines[2:] == ["stdin /dev/null"]


def test_commands_leave_the_runner_no_descriptor_and_get_none_of_its_own():
    """Per command, every descriptor the runner opens (pipes, pidfd, the poll) is closed again;
    the one /dev/null it keeps for the commands' stdin is opened once and never passed on."""
    assert run_command("true").ok
    kept = executors._devnull()
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(20):
        assert run_command("echo out; echo err >&2").ok
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert executors._devnull() == kept
    result = run_command(_WHAT_THE_SHELL_GOT % kept)
    assert result.ok and result.stdout.splitlines()[2:] == ["stdin /dev/null"]


def test_interactive_shebang(capfd):
    result = run_command("\n#!/bin/sh\necho interactive-script\n", interactive=True)
    assert result.ok
    assert "interactive-script" in capfd.readouterr().out


def _timed_out_interactive(tmp_path, reaper, command, **kwargs):
    """Run an interactive ``command`` that writes pids to ``{pids}``; (result, those pids)."""
    pids = tmp_path / "pids"
    result = run_command(command.format(pids=pids), interactive=True, **kwargs)
    started = _pids(pids.read_text())
    reaper.extend(started)
    return result, started


def test_interactive_timeout(exit_detection, tmp_path, reaper):
    result, started = _timed_out_interactive(
        tmp_path, reaper, "echo $$ > {pids}; sleep 300 & echo $! >> {pids}; sleep 300", timeout=0.5
    )
    assert len(started) == 2
    assert result.timed_out
    assert result.error == "timed out after 0.5 s (process terminated)"
    assert result.exit_code == -signal.SIGTERM
    # The command shares our process group, so its children were found and signalled
    # one by one: the background job and the foreground `sleep` are gone with the shell.
    assert _survivors(started) == []


def test_interactive_timeout_escalates_to_sigkill_for_the_whole_tree(tmp_path, reaper):
    result, started = _timed_out_interactive(
        tmp_path, reaper,
        "trap '' TERM; echo $$ > {pids}; sh -c 'trap \"\" TERM; sleep 300' & echo $! >> {pids}; "
        "sleep 300",
        timeout=0.5, kill_grace=0.5,
    )
    assert result.error == "timed out after 0.5 s (process killed)"
    assert result.exit_code == -signal.SIGKILL
    assert _survivors(started) == []


def test_interactive_timeout_spares_what_left_the_session(tmp_path, reaper):
    # the pid is written from inside the new session: the timeout comes after the setsid
    result, (daemon,) = _timed_out_interactive(
        tmp_path, reaper,
        "setsid sh -c 'echo $$ > {pids}; exec sleep 300' & "
        "while [ ! -s {pids} ]; do sleep 0.01; done; sleep 300",
        timeout=3,
    )
    assert result.timed_out
    assert _alive(daemon)  # it left the session on purpose: not the command's to end
    os.kill(daemon, signal.SIGKILL)
    assert _survivors([daemon]) == []


def test_interactive_child_killed_by_sigint_raises_keyboard_interrupt():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as info:
        run_command("kill -INT $$; sleep 5", interactive=True, timeout=30)
    assert info.value.command_result.interrupted
    assert info.value.command_result.exit_code == -signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before


def test_interactive_ignores_sigint_while_the_command_runs():
    # The terminal's Ctrl-C goes to the whole foreground group: here only our process gets it
    # (the command sends it to its parent), and it must not interrupt the command: the command
    # decides what Ctrl-C means.
    result = run_command("kill -INT $PPID; sleep 0.5; echo done", interactive=True, timeout=30)
    assert result.ok


# --------------------------------------------------------------------------- terminate_all


def _run_in_thread(command, **kwargs):
    """Start run_command in a worker thread; returns (thread, results list, pids list)."""
    results, pids = [], []
    kwargs.setdefault("timeout", 60)
    thread = threading.Thread(
        target=lambda: results.append(
            run_command(command, on_output=lambda s, t: pids.extend(_pids(t)), **kwargs)
        )
    )
    thread.start()
    return thread, results, pids


def test_terminate_all_ends_commands_running_in_other_threads(reaper):
    # `exec`: nothing more is forked after the pids are printed (see test_terminate_group)
    runs = [_run_in_thread("echo $$; sleep 300 & echo $!; exec sleep 300") for _ in range(2)]
    deadline = time.monotonic() + 30
    while any(len(pids) < 2 for _, _, pids in runs) and time.monotonic() < deadline:
        time.sleep(0.02)
    for _, _, pids in runs:
        reaper.extend(pids)
    assert terminate_all(grace=5) == 2
    for thread, results, pids in runs:
        thread.join(30)
        assert not thread.is_alive()
        (result,) = results
        assert result.interrupted and not result.ok and not result.timed_out
        assert result.error == "interrupted (process group terminated)"
        assert _survivors(pids) == []
    assert terminate_all() == 0


def test_terminate_all_escalates_to_sigkill(reaper):
    thread, results, pids = _run_in_thread("trap '' TERM; echo $$; sleep 300 & echo $!; sleep 300")
    deadline = time.monotonic() + 30
    while len(pids) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    reaper.extend(pids)
    terminate_all(grace=0.3)
    thread.join(30)
    (result,) = results
    assert result.interrupted
    assert result.exit_code == -signal.SIGKILL
    assert result.error == "interrupted (process group killed)"
    assert _survivors(pids) == []


# --------------------------------------------------------------------------- process identity


def test_on_start_gives_the_group_and_its_start_before_waiting():
    seen = []

    def on_start(pgid, start_ticks):
        # called while the command runs: the group is there, and it is the command's own
        seen.append((pgid, start_ticks, group_alive(pgid, start_ticks), os.getpgid(pgid)))

    result = run_command("sleep 0.3; echo done", on_start=on_start)
    assert result.ok and result.stdout == "done\n"
    ((pgid, start_ticks, alive, group),) = seen
    assert alive and group == pgid
    assert isinstance(start_ticks, int) and start_ticks > 0
    assert start_ticks >= process_start_ticks(os.getpid())
    assert not group_alive(pgid, start_ticks)  # ended with the command


def test_on_start_is_not_called_without_a_group_of_its_own_or_a_start():
    calls = []
    assert run_command("true", interactive=True, on_start=lambda *a: calls.append(a)).ok
    assert run_command("true", cwd="/nonexistent", on_start=lambda *a: calls.append(a)).error
    assert run_command("true", shell="/nonexistent/sh", on_start=lambda *a: calls.append(a)).error
    assert calls == []


def test_an_exception_from_on_start_ends_the_command(reaper):
    groups = []

    def on_start(pgid, start_ticks):
        groups.append((pgid, start_ticks))
        raise OSError("database is full")

    with pytest.raises(OSError) as info:
        run_command("sleep 300", on_start=on_start)
    reaper.extend(pgid for pgid, _ in groups)
    assert info.value.command_result.interrupted
    ((pgid, start_ticks),) = groups
    assert not group_alive(pgid, start_ticks)


def test_start_ticks_name_one_process():
    assert process_start_ticks(os.getpid()) == process_start_ticks(os.getpid())
    proc = subprocess.Popen(["sleep", "300"])
    try:
        assert process_start_ticks(proc.pid) >= process_start_ticks(os.getpid())
    finally:
        proc.kill()
        proc.wait()
    assert process_start_ticks(proc.pid) is None  # no such process any more


@pytest.fixture
def fresh_clock_trust(monkeypatch):
    """The boot-clock start times unconfirmed again, as in a new process (restored after)."""
    monkeypatch.setattr(executors, "_clock_trust", executors._ClockTrust())
    return executors._clock_trust


@pytest.mark.skipif(executors._boot_ns() is None, reason="no boot-time clock here")
def test_start_ticks_from_the_boot_clock_are_what_proc_says(fresh_clock_trust, monkeypatch):
    """on_start's start time comes from the boot clock read around the fork once /proc has
    confirmed it; it must be exactly /proc's, command after command (each checked here)."""
    proc_reads = []
    monkeypatch.setattr(executors, "process_start_ticks", lambda pid: proc_reads.append(pid) or process_start_ticks(pid))
    seen = []
    commands = 2 * executors._RECHECK_EVERY + 5
    for _ in range(commands):
        assert run_command("true", on_start=lambda pgid, ticks: seen.append((ticks, process_start_ticks(pgid)))).ok
    assert len(seen) == commands
    assert all(given == actual for given, actual in seen)
    assert 3 <= len(proc_reads) < commands / 2  # the first, a check every _RECHECK_EVERY, forks astride a tick
    assert fresh_clock_trust.confirmed is True


@pytest.mark.skipif(executors._boot_ns() is None, reason="no boot-time clock here")
def test_start_ticks_come_from_proc_when_the_clock_disagrees_once(fresh_clock_trust, monkeypatch):
    """A clock that /proc contradicts (another tick length, say) is never used again."""
    monkeypatch.setattr(executors, "_NS_PER_TICK", executors._NS_PER_TICK * 7)
    monkeypatch.setattr(executors, "_boot_ns", lambda: 10**15)  # one tick before and after the fork
    seen = []
    for _ in range(3):
        assert run_command("true", on_start=lambda pgid, ticks: seen.append((ticks, process_start_ticks(pgid)))).ok
    assert executors._clock_trust.never and not executors._clock_trust.confirmed
    assert all(given == actual for given, actual in seen)


@pytest.mark.skipif(executors._boot_ns() is None, reason="no boot-time clock here")
def test_start_ticks_come_from_proc_when_the_fork_may_be_in_either_tick(fresh_clock_trust, monkeypatch):
    readings = iter(range(0, 10**9, executors._NS_PER_TICK))  # a tick apart: the fork is in one or the other
    monkeypatch.setattr(executors, "_boot_ns", lambda: next(readings))
    fresh_clock_trust.confirmed = True
    seen = []
    for _ in range(3):
        assert run_command("true", on_start=lambda pgid, ticks: seen.append((ticks, process_start_ticks(pgid)))).ok
    assert all(given == actual for given, actual in seen)
    assert (fresh_clock_trust.confirmed, fresh_clock_trust.since_check) == (True, 0)  # /proc each time, not a check


CRASHING_RUNNER = """
import sys
from playbook.runtime.executors import run_command

def on_start(pgid, start_ticks):
    with open(sys.argv[1], "w") as f:
        f.write("%d %d" % (pgid, start_ticks))

run_command("sleep 300 & sleep 300", on_start=on_start)
"""


def test_a_command_outliving_a_killed_runner_is_seen_and_stopped(tmp_path, reaper):
    """The crash case: the runner dies of SIGKILL, its command's group lives on."""
    record = tmp_path / "group"
    runner = subprocess.Popen([sys.executable, "-c", CRASHING_RUNNER, str(record)])
    deadline = time.monotonic() + 30
    while not record.exists() or not record.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    pgid, start_ticks = map(int, record.read_text().split())
    reaper.append(pgid)
    runner.kill()
    runner.wait()
    assert group_alive(pgid, start_ticks)
    assert not group_alive(pgid, start_ticks + 1)  # the same pid, another start: reused
    assert stop_group(pgid, start_ticks, grace=5) is True
    assert not group_alive(pgid, start_ticks)
    assert stop_group(pgid, start_ticks) is True  # nothing left to stop


def test_a_group_whose_leader_has_gone_is_alive_while_a_member_is(reaper):
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    start_ticks = process_start_ticks(proc.pid)
    member = int(proc.stdout.readline())
    reaper.append(member)
    proc.stdout.close()
    assert proc.wait(10) == 0
    assert group_alive(proc.pid, start_ticks)
    assert stop_group(proc.pid, start_ticks, grace=5)
    assert _survivors([member]) == []
    assert not group_alive(proc.pid, start_ticks)


def test_stop_group_escalates_to_sigkill(reaper):
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "trap '' TERM; echo ready; sleep 300"],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    reaper.append(proc.pid)
    proc.stdout.readline()
    proc.stdout.close()
    assert stop_group(proc.pid, process_start_ticks(proc.pid), grace=0.3)
    assert proc.wait(10) == -signal.SIGKILL


def test_group_alive_refuses_groups_that_are_not_a_commands():
    assert not group_alive(0, None)
    assert not group_alive(1, None)
    assert not group_alive(os.getpgrp(), None)
    assert stop_group(os.getpgrp(), None)  # and so never signals them


def test_process_identity_without_proc(tmp_path, monkeypatch, reaper):
    """Where /proc is missing (a macOS workstation), ps gives the start time instead."""
    if shutil.which("ps") is None:
        pytest.skip("ps not installed")
    monkeypatch.setattr(executors, "_PROC", str(tmp_path / "no-proc"))
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    reaper.append(proc.pid)
    start = process_start_ticks(proc.pid)
    assert isinstance(start, int) and abs(start - time.time()) < 300
    assert process_start_ticks(proc.pid) == start
    assert group_alive(proc.pid, start)
    assert group_alive(proc.pid, None)
    assert not group_alive(proc.pid, start - 3600)  # started at another time: reused
    proc.kill()
    proc.wait()
    assert not group_alive(proc.pid, start)
