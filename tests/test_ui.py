"""What the runtime shows (runtime/ui.py): command output on real subprocesses, real
pseudo-terminals (live, and dead: master closed, hung up) and the `playbook run` command."""

from __future__ import annotations

import errno
import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from playbook.runtime import ui as ui_mod
from playbook.runtime.executors import run_command
from playbook.runtime.plan import Node

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_executors import leaves_no_process  # noqa: F401  (autouse: no test leaves a process)
from cli_support import (
    finish,
    make_env,
    pb,
    playbook_exe,
    spawn,
    write_runbook,
)

ESC = "\x1b"
# Everything a hostile or careless command may print: colour, clear screen and cursor home, a
# window title, an OSC 8 hyperlink, backspaces, a carriage return, a bell.
NASTY = (
    r"printf '\033[31mred\033[0m plain\n'; printf '\033[2J\033[Hcleared\n'; "
    r"printf '\033]0;pwned title\007titled\n'; "
    r"printf '\033]8;;https://evil.example/\033\\click\033]8;;\033\\\n'; "
    r"printf 'rm -rf /\b\b\b\b\b\b\b\bls      \n'; printf '10%%\r100%%\n'; printf 'bell\007\n'"
)
NASTY_SHOWN = [
    "red plain",
    "cleared",
    "titled",
    "click",
    "rm -rf /" + "\u2408" * 8 + "ls      ",
    "10%",
    "100%",
    "bell\u2407",
]


def _node():
    return Node("n", "Command", command="x")


def _run_through(ui, command, **kwargs):
    """Run ``command`` for real, its output going to ``ui`` as the engine sends it."""
    node = _node()
    result = run_command(
        command,
        on_output=lambda stream, text: ui.event("node_output", node=node, stream=stream, text=text),
        **kwargs,
    )
    ui.event("node_finished", node=node, status="succeeded", attempt=1, duration=result.duration)
    return result


def _plain():
    out = io.StringIO()
    return ui_mod.PlainUI(out=out, err=out, timestamps=False), out


def _output_lines(text):
    return [line[len("  │ ") :] for line in text.splitlines() if line.startswith("  │ ")]


# --------------------------------------------------------------------------- output policy


def test_command_output_is_shown_not_obeyed():
    ui, out = _plain()
    result = _run_through(ui, NASTY)
    assert result.ok
    assert _output_lines(out.getvalue()) == NASTY_SHOWN
    assert ESC not in out.getvalue() and "\b" not in out.getvalue() and "\r" not in out.getvalue()


def test_stderr_and_an_unfinished_last_line_are_cleaned_too():
    ui, out = _plain()
    _run_through(ui, r"printf 'e\033[2Kr\b\n' >&2; printf 'no newline\033[1'")
    lines = out.getvalue().splitlines()
    assert "  │ ! er\u2408" in lines
    assert "  │ no newline\u241b[1" in lines


def test_a_long_line_is_shown_completely_in_pieces_with_bounded_memory():
    ui, out = _plain()
    node = _node()
    held = []

    def on_output(stream, text):
        ui.event("node_output", node=node, stream=stream, text=text)
        held.append(sum(lines.size for lines in ui._lines.values()))

    size = 10 * ui_mod.LINE_LIMIT + 123
    result = run_command("head -c %d /dev/zero | tr '\\0' a; echo; echo next" % size, on_output=on_output)
    ui.event("node_finished", node=node, status="succeeded", attempt=1, duration=result.duration)
    lines = _output_lines(out.getvalue())
    assert lines == ["a" * ui_mod.LINE_LIMIT] * 10 + ["a" * 123, "next"]
    assert max(held) <= ui_mod.LINE_LIMIT


def test_a_long_coloured_line_is_never_cut_inside_a_colour():
    text = (ESC + "[31mab" + ESC + "[0m") * 20000
    lines = ui_mod._Lines(True)
    shown = lines.feed(text + "\n")
    assert len(shown) >= 240000 // ui_mod.LINE_LIMIT and "".join(shown) == text
    for line in shown:
        assert len(line) <= ui_mod.LINE_LIMIT
        assert line.count(ESC) == line.count("m")  # every colour sequence whole
    assert lines.flush() == []


def test_texts_from_outside_are_shown_not_obeyed():
    """Ids, names, variables and errors reach the console through the same policy."""
    ui, out = _plain()
    node = Node("n", "Command", command="x", name="evil" + ESC + "]0;title\x07name")
    ui.event("node_started", node=node, attempt=1, command="echo " + ESC + "[2J")
    ui.event("message", text="a\bb")
    ui.error("bad" + ESC + "[H")
    assert ESC not in out.getvalue() and "\b" not in out.getvalue()
    assert "evilname" in out.getvalue() and "a\u2408b" in out.getvalue()


# --------------------------------------------------------------------------- a live terminal


@pytest.fixture
def pty():
    """(master fd, slave file): a real pseudo-terminal; both closed afterwards."""
    master, slave = os.openpty()
    slave_file = os.fdopen(slave, "w", encoding="utf-8")
    ends = {"master": master}
    yield ends, slave_file
    for fd in ends.values():
        if fd is not None:
            os.close(fd)
    slave_file.close()


def _drain(master):
    os.set_blocking(master, False)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except (BlockingIOError, OSError):
            return data.decode("utf-8", "replace")
        if not chunk:
            return data.decode("utf-8", "replace")
        data += chunk


@pytest.fixture
def colour_env(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


def test_terminal_ui_keeps_colour_and_drops_everything_else(pty, colour_env):
    ends, slave = pty
    ui = ui_mod.TerminalUI(out=slave)
    assert ui.keep_sgr
    _run_through(ui, NASTY)
    shown = _drain(ends["master"])
    assert re.search(r"\x1b\[[0-9;]*31mred", shown)  # the command's colour, rendered by rich
    for sequence in ("[2J", "[H", "]0;", "]8;", "evil.example", "\b", "\x07"):
        assert sequence not in shown
    assert "rm -rf /" + "\u2408" * 8 + "ls" in shown


def test_terminal_ui_without_colour_drops_the_commands_colour_too(pty, colour_env):
    ends, slave = pty
    ui = ui_mod.TerminalUI(out=slave, color=False)
    assert not ui.keep_sgr
    _run_through(ui, NASTY)
    shown = _drain(ends["master"])
    assert "red plain" in shown
    assert not re.search(r"\x1b\[[0-9;]*31m", shown)  # (rich keeps its own dim: NO_COLOR)


# --------------------------------------------------------------------------- a dead console


def _dead_ui(kind, slave):
    if kind == "plain":
        return ui_mod.PlainUI(out=slave, err=slave)
    return ui_mod.TerminalUI(out=slave)


@pytest.mark.parametrize("kind", ["plain", "terminal"])
def test_a_terminal_whose_master_is_closed_never_stops_the_ui(kind, pty, colour_env):
    ends, slave = pty
    ui = _dead_ui(kind, slave)
    ui.line("before")
    assert "before" in _drain(ends["master"])
    os.close(ends.pop("master"))
    with pytest.raises(OSError) as info:  # the terminal really is gone
        os.write(os.dup(slave.fileno()), b"x")
    assert info.value.errno == errno.EIO
    node = _node()
    ui.event("node_started", node=node, attempt=1, command="x")
    result = _run_through(ui, "echo one; echo two >&2")
    ui.error("after")
    ui.event("run_finished", run_id=1, status="succeeded", exit_code=0)
    assert result.ok
    assert ui.output_lost and not ui.interactive
    os.write(slave.fileno(), b"now /dev/null\n")  # the descriptor no longer fails
    slave.flush()
    if kind == "terminal":
        with pytest.raises(EOFError):
            ui.confirm(node, "go on?")
        with pytest.raises(EOFError):
            ui.ask_variable("X", {"secret": True})


def test_a_reader_that_leaves_never_stops_the_ui():
    read, write = os.pipe()
    out = os.fdopen(write, "w")
    ui = ui_mod.PlainUI(out=out, err=out)
    ui.line("first")
    os.close(read)
    for _ in range(3):
        ui.line("x" * 100000)  # EPIPE
    assert ui.output_lost
    out.close()


def test_other_write_errors_are_not_swallowed():
    full = open("/dev/full", "w")
    ui = ui_mod.PlainUI(out=full, err=full)
    with pytest.raises(OSError) as info:
        ui.line("x")
    assert info.value.errno == errno.ENOSPC
    assert not ui.output_lost
    with pytest.raises(OSError):
        full.close()  # what failed is still buffered


HUNG_UP_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from playbook.runtime import ui as ui_mod
    from playbook.runtime.plan import Node

    ui = ui_mod.{kind}()
    seen = []

    def on_hangup(*_):
        ui.hang_up()
        seen.append("lost" if ui.output_lost else "not lost")

    signal.signal(signal.SIGHUP, on_hangup)
    node = Node("n", "Command", command="x")
    ui.line("ready")
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    print("print() works too")  # the first write since the hang-up
    sys.stdout.flush()
    for _ in range(100):
        ui.event("node_output", node=node, stream="stdout", text="after\\n")
    ui.error("still fine")
    try:
        ui.confirm(node, "asked?")
        seen.append("asked")
    except EOFError:
        seen.append("not asked")
    seen.append(str(ui.interactive))
    with open(sys.argv[1], "w") as f:
        f.write(" ".join(seen))
    """
)


def _controlling_terminal():
    """In the child: make the pty on stdin the session's controlling terminal."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.parametrize("kind", ["PlainUI", "TerminalUI"])
def test_a_hung_up_terminal_never_stops_the_ui(kind, tmp_path):
    """A real session whose terminal hangs up (its master closed: SIGHUP, then EIO); the
    runner's SIGHUP handler calls ui.hang_up(); nothing written afterwards fails, not at exit
    either."""
    script = tmp_path / "child.py"
    script.write_text(HUNG_UP_CHILD.replace("{kind}", kind))
    marker = tmp_path / "marker"
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker)], stdin=slave, stdout=slave, stderr=slave,
        env=make_env(tmp_path, {"TERM": "xterm"}), start_new_session=True,
        preexec_fn=_controlling_terminal,
    )
    os.close(slave)
    seen = b""
    while b"ready" not in seen:
        chunk = os.read(master, 4096)
        assert chunk, seen
        seen += chunk
    os.close(master)  # the terminal goes away
    assert proc.wait(30) == 0
    assert marker.read_text() == "lost not asked False"


# --------------------------------------------------------------------------- playbook run

NASTY_RUNBOOK = '''
[show]
type = "Command"
command_name = """{command}"""
'''


def _nasty_runbook(tmp_path):
    return write_runbook(tmp_path, NASTY_RUNBOOK.format(command=NASTY.replace("\\", "\\\\")))


def test_playbook_run_without_a_terminal_shows_output_plainly(tmp_path):
    book = _nasty_runbook(tmp_path)
    proc = pb(tmp_path, "run", book, "--state-path", tmp_path / "s.db")
    assert proc.returncode == 0, proc.text
    assert _output_lines(proc.out) == NASTY_SHOWN
    for char in (ESC, "\b", "\r", "\x07"):
        assert char not in proc.out


def test_playbook_run_on_a_terminal_keeps_colour_only(tmp_path):
    book = _nasty_runbook(tmp_path)
    child = spawn(tmp_path, "run", book, "--state-path", tmp_path / "s.db",
                  env={"NO_COLOR": None, "TERM": "xterm-256color"})
    status, shown = finish(child)
    assert status == 0, shown
    assert re.search(r"\x1b\[[0-9;]*31mred", shown)
    for sequence in (ESC + "[2J", ESC + "]0;", ESC + "]8;", "evil.example", "\b", "\x07"):
        assert sequence not in shown
    assert "100%" in shown


@pytest.mark.parametrize("stdin", ["none", "terminal"])
def test_playbook_run_goes_on_when_its_reader_leaves(tmp_path, stdin):
    """`playbook run … | head -1`: the rest of the output goes nowhere, the run succeeds."""
    book = write_runbook(tmp_path, '''
        [loud]
        type = "Command"
        command_name = "seq 1 20000; sleep 0.3"

        [after]
        type = "Command"
        command_name = "seq 1 20000 && touch after.done"
        depends_on = ["loud"]
        ''')
    master = None
    if stdin == "terminal":  # TerminalUI: prompts need a terminal on stdin
        master, slave = os.openpty()
        stdin_fd = slave
    else:
        stdin_fd = subprocess.DEVNULL
    proc = subprocess.Popen(
        [playbook_exe(), "run", str(book), "--state-path", str(tmp_path / "s.db")],
        cwd=str(tmp_path), env=make_env(tmp_path), stdin=stdin_fd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    if master is not None:
        os.close(slave)
    proc.stdout.readline()
    proc.stdout.close()  # the reader leaves
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.stderr.close()
    assert proc.wait(60) == 0, err
    if master is not None:
        os.close(master)
    assert (tmp_path / "after.done").exists()
    assert "Traceback" not in err and "Exception ignored" not in err
