"""A secret never stands in a command's text (compiler/shell.py `_Walk.secret`, `_through_env`;
runtime/templating.py ENV_WORD / ENV_SINGLE / ENV_DOUBLE, `render_command`, `command_env`).

The text of a Command step is the argv of `sh -c`, which every local user reads with `ps`. A
value read from a `secret = true` variable (or derived from one: `| upper`, a `{% for %}` or
`{% set %}` name bound from it) is therefore replaced by a reference to a private variable of
the command's environment ("$PLAYBOOK_SECRET_1", '"$PLAYBOOK_SECRET_1"', ${PLAYBOOK_SECRET_1}),
and the value goes into that environment alone. Places where that cannot hold are refused at
`validate`: `| raw`, and a `shell` that is not a shell (its text would be its argv).

Real parts throughout: the installed `playbook` console script; the real compiler, renderer and
process runner (`executors.run_command`) driven in-process by the property test; the real sh,
dash and bash of this machine; a real second OS user (`nobody`, through `runuser`) reading the
process table with `ps` while a step runs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import alive, kill_quietly, pb, pb_start, wait_for, wait_gone, write_runbook
from conftest import stop_process

from playbook.compiler import source
from playbook.compiler.plan import compile_source
from playbook.compiler.source import CompileError
from playbook.runtime import executors, templating
from playbook.runtime import variables as var_mod

RUNBOOK = "rb.playbook.toml"
REF = "PLAYBOOK_SECRET_1"
PS_WORD = re.compile(r"\bps\b")


def _runbook_text(command, shell=None, extra_variables="", env=None):
    """A one-step runbook: TOKEN secret, OTHER plain, the step `s` running `command`."""
    lines = [
        '[runbook]\ntitle = "secret argv"\n',
        "[variables]",
        "TOKEN = { required = true, secret = true }",
        'OTHER = "other"',
        extra_variables,
        "",
        "[s]",
        'type = "Command"',
    ]
    if shell is not None:
        lines.append("shell = %s" % json.dumps(shell))
    if env is not None:
        lines.append("env = { %s }" % ", ".join("%s = %s" % (k, json.dumps(v)) for k, v in env.items()))
    lines.append("command_name = %s" % json.dumps(command))
    return "\n".join(lines) + "\n"


def _write(tmp_path, text):
    path = Path(tmp_path) / RUNBOOK
    path.write_text(text, encoding="utf-8")
    return path


def _place(text, needle):
    """(line, col), from 1, of the first `needle` in `text` as it is in the file."""
    offset = text.index(needle)
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _error_lines(output):
    return [line for line in output.splitlines() if ": error: " in line]


def _compile(text, pairs=(), bake=True):
    sources = var_mod.Sources.gather(list(pairs))
    return compile_source(source.parse(text, RUNBOOK), sources, bake=bake).plan, sources


def _rendered(text, values):
    """The plan of `text` and its one node rendered with `values` (NAME -> str), as `run` does."""
    plan, sources = _compile(text, ["%s=%s" % item for item in values.items()])
    resolved = var_mod.resolve(plan.variables, sources, fixed=plan.values)
    return plan, templating.render_node(plan.nodes[0], resolved)


# -- validate: what is refused --------------------------------------------------------------------
@pytest.mark.parametrize(
    "command, shown",
    [
        ("echo {{ TOKEN | raw }}", "{{ TOKEN | raw }}"),
        ("echo start {{ TOKEN | upper | raw }} end", "{{ TOKEN | upper | raw }}"),
    ],
    ids=["raw", "raw-of-a-derived-value"],
)
def test_validate_refuses_a_secret_marked_raw(tmp_path, command, shown):
    text = _runbook_text(command)
    path = _write(tmp_path, text)
    proc = pb(tmp_path, "validate", path.name)
    assert proc.returncode == 2, proc.text
    line, col = _place(text, shown)
    errors = _error_lines(proc.text)
    assert len(errors) == 1, proc.text
    assert errors[0].startswith("%s:%d:%d: error: " % (RUNBOOK, line, col)), errors[0]
    assert "TOKEN" in errors[0] and PS_WORD.search(errors[0]), errors[0]


@pytest.mark.parametrize(
    "shell",
    ["/usr/bin/python3", "perl -e"],
)
def test_validate_refuses_a_secret_in_the_text_of_a_shell_that_is_not_a_shell(tmp_path, shell):
    # `shell = "/usr/bin/python3"` runs `python3 -c TEXT`: the JSON literal would be its argv.
    command = "print({{ TOKEN | tojson }})"
    text = _runbook_text(command, shell=shell)
    path = _write(tmp_path, text)
    proc = pb(tmp_path, "validate", path.name)
    assert proc.returncode == 2, proc.text
    line, col = _place(text, "{{ TOKEN | tojson }}")
    errors = _error_lines(proc.text)
    assert len(errors) == 1, proc.text
    assert errors[0].startswith("%s:%d:%d: error: " % (RUNBOOK, line, col)), errors[0]
    assert "secret TOKEN" in errors[0] and PS_WORD.search(errors[0]), errors[0]
    # the refusal is about the secret: the same command with a plain variable is valid
    plain = _write(tmp_path, _runbook_text(command.replace("TOKEN", "OTHER"), shell=shell))
    assert pb(tmp_path, "validate", plain.name).returncode == 0


@pytest.mark.parametrize("key", ["PLAYBOOK_SECRET_1", "PLAYBOOK_SECRET_TOKEN"])
def test_validate_refuses_a_runbook_env_key_with_the_private_prefix(tmp_path, key):
    text = _runbook_text("echo {{ TOKEN }}", env={key: "x", "FINE": "y"})
    path = _write(tmp_path, text)
    proc = pb(tmp_path, "validate", path.name)
    assert proc.returncode == 2, proc.text
    errors = _error_lines(proc.text)
    assert len(errors) == 1, proc.text
    line, _ = _place(text, "env = {")
    assert re.match(r"%s:%d:\d+: error: " % (re.escape(RUNBOOK), line), errors[0]), errors[0]
    assert key in errors[0] and "PLAYBOOK_SECRET_" in errors[0], errors[0]
    # only the prefix is Playbook's: a key that merely contains it is the author's
    other = _write(tmp_path, _runbook_text("echo {{ TOKEN }}", env={"MY_" + key: "x"}))
    assert pb(tmp_path, "validate", other.name).returncode == 0


# -- validate: what is accepted, and the quoting the plan records -------------------------------
ACCEPTED = [
    ("word", "echo {{ TOKEN }}", None, ("env-word",)),
    ("single-quoted", "echo 'x{{ TOKEN }}y'", None, ("env-single",)),
    ("double-quoted", 'echo "x{{ TOKEN }}y"', None, ("env-double",)),
    ("command-substitution", 'echo "$(printf %s {{ TOKEN }})"', None, ("env-word",)),
    ("double-in-substitution", 'v=$(printf %s "{{ TOKEN }}"); echo "$v"', None, ("env-double",)),
    ("option-value", "deploy --token={{ TOKEN }}", None, ("env-word",)),
    ("beside-a-plain-value", "deploy {{ OTHER }} {{ TOKEN }}", None, ("plain", "env-word")),
    ("derived", "echo {{ TOKEN | upper }}", None, ("env-word",)),
    ("for-name", "echo {% for c in TOKEN %}{{ c }}{% endfor %}", None, ("env-word",)),
    ("set-name", "{% set t = TOKEN %}echo {{ t }}", None, ("env-word",)),
    ("bash", "echo {{ TOKEN }}", "/bin/bash", ("env-word",)),
    ("sh-script", "#!/bin/sh\nprintf %s {{ TOKEN }}\n", None, ("env-word",)),
    ("python-script", "#!/usr/bin/env python3\nprint({{ TOKEN | tojson }})\n", None, ("json",)),
    # a script reaches its interpreter through a pipe, never argv: | raw there is the author's choice
    ("raw-in-a-sh-script", "#!/bin/sh\nprintf %s {{ TOKEN | raw }}\n", None, ("raw",)),
]


@pytest.mark.parametrize("command, shell, quoting", [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_validate_accepts_a_secret_where_it_can_travel_outside_the_text(tmp_path, command, shell, quoting):
    text = _runbook_text(command, shell=shell)
    path = _write(tmp_path, text)
    proc = pb(tmp_path, "validate", path.name)
    assert proc.returncode == 0, proc.text
    assert _error_lines(proc.text) == [], proc.text
    plan, _ = _compile(text)
    assert plan.nodes[0].command_quoting == quoting


# -- plan shows the reference, never the value ----------------------------------------------------
def test_plan_shows_the_reference_and_never_the_value(tmp_path):
    value = "plan-secret-%s" % secrets.token_hex(8)
    command = "deploy --token {{ TOKEN }} --shout '{{ TOKEN | upper }}' --in \"x{{ TOKEN }}\""
    path = _write(tmp_path, _runbook_text(command))

    proc = pb(tmp_path, "plan", path.name, "--var", "TOKEN=" + value)
    assert proc.returncode == 0, proc.text
    expected = "deploy --token \"$PLAYBOOK_SECRET_1\" --shout ''\"$PLAYBOOK_SECRET_2\"'' --in \"x${PLAYBOOK_SECRET_3}\""
    assert expected in proc.out, proc.out
    # `| upper` is not recognised by the masker: only the reference keeps it out
    for shown in (value, value.upper(), value[len("plan-") :]):
        assert shown not in proc.text

    proc = pb(tmp_path, "plan", path.name, "--var", "TOKEN=" + value, "--json")
    assert proc.returncode == 0, proc.text
    (node,) = json.loads(proc.out)["nodes"]
    assert node["command"] == expected
    assert node["command_quoting"] == ["env-word", "env-single", "env-double"]
    for shown in (value, value.upper()):
        assert shown not in proc.text


# -- the value arrives byte for byte, through real shells ---------------------------------------
SHELLS = [name for name in ("sh", "dash", "bash") if shutil.which(name)]

# Every kind of place, in one command. `$( )` drops trailing newlines: its output ends in ".".
PROPERTY_COMMAND = (
    "printf '%s|' {{ T }} 'a{{ T }}b' \"c{{ T }}d\" \"$(printf '%s.' {{ T }})\" --opt={{ T }} ~{{ T }}"
    " {{ T | upper }} 'x'{% for c in T %}{{ c }}{% endfor %}'y' > out"
)
PROPERTY_QUOTING = ("env-word", "env-single", "env-double", "env-word", "env-word", "env-word", "env-word", "env-word")
PROPERTY_TEXT = (
    "printf '%s|' \"$PLAYBOOK_SECRET_1\" 'a'\"$PLAYBOOK_SECRET_2\"'b' \"c${PLAYBOOK_SECRET_3}d\""
    " \"$(printf '%s.' \"$PLAYBOOK_SECRET_4\")\" --opt=\"$PLAYBOOK_SECRET_5\" ~\"$PLAYBOOK_SECRET_6\""
    " \"$PLAYBOOK_SECRET_7\" 'x'@LOOP@'y' > out"
)


def _property_runbook(shell):
    return (
        '[runbook]\ntitle = "p"\nshell = %s\n\n[variables]\nT = { required = true, secret = true }\n\n'
        '[s]\ntype = "Command"\ncommand_name = %s\n' % (json.dumps(shell), json.dumps(PROPERTY_COMMAND))
    )


def _property_text(value):
    """The command's text for `value`: a function of its length alone (one reference a character)."""
    return PROPERTY_TEXT.replace("@LOOP@", "".join('"$PLAYBOOK_SECRET_%d"' % (8 + k) for k in range(len(value))))


def _property_output(value):
    pieces = [value, "a%sb" % value, "c%sd" % value, value + ".", "--opt=" + value, "~" + value, value.upper(), "x%sy" % value]
    return "".join(piece + "|" for piece in pieces).encode("utf-8")


FRAGMENTS = [
    "'", '"', "\\", "$(", ")", "$(touch CANARY)", "`touch CANARY`", "`", "\n", "\r\n", "\t", " ",
    "{{ T }}", "{{", "}}", "{% if true %}", "%", "%s", "%%", "-n", "-", "--", "-e",
    "$", "${", "}", "$PLAYBOOK_SECRET_1", "${PLAYBOOK_SECRET_2}", "'\"$PLAYBOOK_SECRET_1\"'",
    "; touch CANARY", "*", "~", "#", "!", "é", "😀", "\u2028", "ß", "EOF",
]
SECRET_VALUES = st.one_of(
    st.sampled_from(["", "-n", "--", "-e", "--help", "\n", "'", '"', "\\"]),
    st.lists(
        st.one_of(
            st.sampled_from(FRAGMENTS),
            st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6),
        ),
        min_size=1,
        max_size=8,
    ).map("".join),
)


def test_the_property_command_text_is_what_the_property_test_expects():
    # the template the property test runs, checked once: its places and its text for one value
    text = _property_runbook(shutil.which("sh") or "/bin/sh")
    plan, sources = _compile(text, ["T=ab"])
    node = templating.render_node(plan.nodes[0], var_mod.resolve(plan.variables, sources, fixed=plan.values))
    assert plan.nodes[0].command_quoting == PROPERTY_QUOTING
    assert str(node.command) == _property_text("ab")


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(value=SECRET_VALUES)
def test_a_hostile_secret_arrives_byte_for_byte_and_never_in_the_text(value):
    expected_text = _property_text(value)
    expected_env = {"PLAYBOOK_SECRET_%d" % k: value for k in range(1, 7)}
    expected_env["PLAYBOOK_SECRET_7"] = value.upper()
    expected_env.update(("PLAYBOOK_SECRET_%d" % (8 + k), c) for k, c in enumerate(value))
    with tempfile.TemporaryDirectory() as root:
        for name in SHELLS:
            text = _property_runbook(shutil.which(name))
            sources = var_mod.Sources.gather(["T=" + value])
            plan = compile_source(source.parse(text, "x.playbook.toml"), sources, bake=True).plan
            assert plan.values == {}  # a secret is never baked
            assert plan.nodes[0].command_quoting == PROPERTY_QUOTING
            node = templating.render_node(plan.nodes[0], var_mod.resolve(plan.variables, sources, fixed=plan.values))

            command = node.command
            assert isinstance(command, templating.CommandText)
            # the value never stands in the text (the argv of `sh -c`): it occurs there no more
            # often than in the fixed reference text (never, unless it is a piece of that text,
            # such as "$PLAYBOOK_SECRET_1") ...
            if value:
                assert str(command).count(value) == expected_text.count(value)
            # ... which is the whole text: it depends on the value's length alone
            assert str(command) == expected_text
            assert command.private_env == expected_env
            assert templating.command_env(node) == expected_env

            folder = os.path.join(root, name)
            os.mkdir(folder)
            result = executors.run_command(
                command, shell=node.shell or plan.runbook.get("shell"), env=templating.command_env(node), cwd=folder, timeout=60
            )
            assert (result.error, result.exit_code, result.stderr) == (None, 0, ""), (name, result)
            with open(os.path.join(folder, "out"), "rb") as f:
                assert f.read() == _property_output(value), name
            assert os.listdir(folder) == ["out"], name  # no payload ran (no CANARY)


# -- a second OS user reads the process table while the step runs -------------------------------
def _as_nobody(*argv):
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )


def _process_table():
    """{pid: (ppid, args)} as the user nobody sees it with `ps` (full width)."""
    ran = _as_nobody("ps", "-ww", "-eo", "pid=,ppid=,args=")
    assert ran.returncode == 0, ran.stderr
    table = {}
    for line in ran.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            table[int(parts[0])] = (int(parts[1]), parts[2] if len(parts) == 3 else "")
    return table, ran.stdout


def _descendants(table, root):
    found, todo = [], [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent:
                found.append(pid)
                todo.append(pid)
    return found


def _fifo_writer(proc, path):
    """(fd,) of the fifo opened for writing once a reader waits on it (the step is running); None
    before. A runner that ended first fails the test with what it printed."""
    if proc.poll() is not None:
        out, err = proc.communicate(timeout=30)
        raise AssertionError("playbook ended (%s) before its step ran: %s" % (proc.returncode, (out + err).decode("utf-8", "replace")))
    try:
        return (os.open(path, os.O_WRONLY | os.O_NONBLOCK),)
    except OSError:  # ENXIO: no reader yet
        return None


def _step(kind, fifo, got, mark):
    if kind == "sh-c":
        return "command_name = %s" % json.dumps(
            ": %s; read line < %s; printf '%%s' {{ TOKEN }} > %s" % (mark, shlex.quote(fifo), shlex.quote(got))
        )
    if kind == "sh-script":
        script = "#!/bin/sh\n: %s\nread line < %s\nprintf '%%s' {{ TOKEN }} > %s\n" % (mark, shlex.quote(fifo), shlex.quote(got))
    else:
        script = (
            "#!/usr/bin/env python3\n# %s\nopen(%s).read()\n"
            "open(%s, 'w', encoding='utf-8', newline='').write({{ TOKEN | tojson }})\n" % (mark, json.dumps(fifo), json.dumps(got))
        )
    return "command_name = %s" % json.dumps(script)


@pytest.mark.parametrize("kind", ["sh-c", "sh-script", "python-script"])
def test_another_user_never_sees_the_secret_in_ps_while_the_step_runs(tmp_path, kind):
    if os.geteuid() != 0:
        pytest.skip("needs root, to run `ps` as a second user (runuser -u nobody)")
    for tool in ("runuser", "ps"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed" % tool)
    try:
        import pwd

        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("there is no user nobody")

    core = "pbT0k%s" % secrets.token_hex(12)  # what must never be seen
    secret = core + " it's \"$HOME\" `id` \\"
    mark = "pbmark%s" % secrets.token_hex(6)
    fifo, got = str(tmp_path / "go.fifo"), str(tmp_path / "got")
    os.mkfifo(fifo)
    write_runbook(
        tmp_path,
        """
        [variables]
        TOKEN = { required = true, secret = true }

        [s]
        type = "Command"
        %s
        """
        % _step(kind, fifo, got, mark),
    )
    # --vars-env keeps the secret off every argv, playbook's own included
    proc = pb_start(tmp_path, "run", RUNBOOK, "--vars-env", "PBTEST_", "--no-interactive-vars", env={"PBTEST_TOKEN": secret})
    writer = None
    steps = []
    try:
        (writer,) = wait_for(lambda: _fifo_writer(proc, fifo), timeout=60, what="the step to wait on its fifo")
        table, raw = _process_table()
        steps = _descendants(table, proc.pid)
        assert steps, "nobody sees no process of the run: %r" % table.get(proc.pid)

        # nobody sees the runner and its step, and the secret nowhere
        assert "--vars-env PBTEST_" in table[proc.pid][1]
        assert core.encode() not in raw
        step_args = [table[pid][1] for pid in steps]
        if kind == "sh-c":
            (shown,) = [args for args in step_args if mark in args]
            assert '"$%s"' % REF in shown, shown  # the reference stands where the value would
        else:
            assert any(re.search(r"/dev/fd/\d+$", args) for args in step_args), step_args  # the script: a pipe
            assert not any(mark in args for args in step_args), step_args
        # the environment, where the value waits, is not nobody's to read
        for pid in steps:
            denied = _as_nobody("cat", "/proc/%d/environ" % pid)
            assert denied.returncode != 0 and core.encode() not in denied.stdout
        if kind != "python-script":
            (step,) = [pid for pid in steps if "/dev/fd/" in table[pid][1] or mark in table[pid][1]]
            with open("/proc/%d/environ" % step, "rb") as f:
                assert ("%s=%s" % (REF, secret)).encode() in f.read().split(b"\0")

        os.write(writer, b"go\n")
        os.close(writer)
        writer = None
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (out + err).decode("utf-8", "replace")
        assert Path(got).read_bytes() == secret.encode()  # and it arrived, exactly
        assert core.encode() not in out + err  # masked on the console too
    finally:
        if writer is not None:
            os.close(writer)
        stop_process(proc)
        for pid in steps:  # a step still alive (its runner failed to stop it): its process group
            if alive(pid):
                kill_quietly(pid, group=True)
                wait_gone(pid)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# -- a secret must arrive or be refused, never arrive empty ------------------------------------
@pytest.mark.parametrize(
    "shell, command",
    [
        ("/usr/bin/env -i /bin/sh", "printf '%s' {{ TOKEN }} > out"),
        (None, "#!/usr/bin/env -S -i /bin/sh\nprintf '%s' {{ TOKEN }} > out\n"),
    ],
    ids=["shell-setting", "script"],
)
def test_a_secret_is_refused_or_arrives_through_a_shell_that_clears_the_environment(tmp_path, shell, command):
    """`env -i` (or -u) in front of the shell would clear the variable the secret travels in:
    refused at validate time, never an empty value at run time."""
    value = "arrive-%s" % secrets.token_hex(6)
    text = _runbook_text(command, shell=shell)
    with pytest.raises(CompileError) as refused:
        _rendered(text, {"TOKEN": value})
    message = str(refused.value) + "".join(d.format() for d in refused.value.diagnostics)
    assert "TOKEN" in message and "env -i" in message and "arrive empty" in message


def test_the_loop_object_of_a_for_over_a_secret_counts_as_secret(tmp_path):
    value = "QZJQZJ"
    command = "printf '%s' {% for c in TOKEN %}{% if not loop.first %}{{ loop.previtem }}{% endif %}{% endfor %} > out"
    text = _runbook_text(command, extra_variables='loop = "unused"')
    _, node = _rendered(text, {"TOKEN": value})
    assert not set("QZJ") & set(str(node.command)), str(node.command)
    assert templating.command_env(node) == {"PLAYBOOK_SECRET_%d" % i: c for i, c in enumerate("QZJQZ", 1)}
