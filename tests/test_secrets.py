"""Secrets are masked at every boundary (runtime/secrets.py): console, --json, the state
database, `show`, the three reports, the run-event log and `view-dag --run`, including error
texts, skip reasons and questions. Each test provokes a path where the value once leaked, then
reads every text that left the runner.

Real parts: `playbook` processes, the SQLite file read back column by column.
"""

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import pb, write_runbook

from playbook.runtime.secrets import MASK, Masker, MaskedUI

SECRET = "s3cr3t-Tok3n-9f1c"


def _database_texts(dbp):
    """Every text value of every column of every table."""
    con = sqlite3.connect(str(dbp))
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in con.execute('SELECT * FROM "%s"' % table):
                for value in row:
                    if isinstance(value, (str, bytes)):
                        yield "%s: %s" % (table, value if isinstance(value, str) else value.decode("utf-8", "replace"))
    finally:
        con.close()


def _everything(tmp_path, dbp, first):
    """The console of the run, then show, show --output, the reports, the log and the DOT."""
    texts = [first.text]
    for args in (("show",), ("show", "--last", "--output"), ("show", "--last", "--json"), ("info",)):
        r = pb(tmp_path, *args, "--state-path", dbp)
        assert r.returncode == 0, r.text
        texts.append(r.text)
    for kind in ("--html", "--junit", "--json"):
        out = tmp_path / ("report" + kind.replace("--", "."))
        r = pb(tmp_path, "report", "--last", kind, out, "--state-path", dbp)
        assert r.returncode == 0, r.text
        texts.append(out.read_text(encoding="utf-8"))
    r = pb(tmp_path, "view-dag", "--run", "1", "--format", "dot", "-o", "-", "--state-path", dbp)
    assert r.returncode == 0, r.text
    texts.append(r.text)
    log = tmp_path / "events.log"
    if log.exists():
        texts.append(log.read_text(encoding="utf-8"))
    texts.extend(_database_texts(dbp))
    return texts


def _log_config(tmp_path):
    cfg = tmp_path / "playbook.toml"
    cfg.write_text('[logging]\nfile_path = "%s"\nlevel = "DEBUG"\n' % (tmp_path / "events.log"), encoding="utf-8")
    return {"PLAYBOOK_CONFIG": str(cfg)}


def _assert_masked(texts):
    leaks = [t for t in texts if SECRET in t]
    assert not leaks, "the secret leaked:\n" + "\n---\n".join(t[:500] for t in leaks)


VARS = '[variables]\nTOKEN = { required = true, secret = true }\n\n'

PATHS = {
    # an error starting a step names its working directory
    "cwd": '[a]\ntype = "Command"\ncommand_name = "true"\ncwd = "/nonexistent/{{ TOKEN }}"\n',
    # a `when` whose value is the secret text: the skip reason quotes what it gave
    "when": '[a]\ntype = "Command"\ncommand_name = "true"\nwhen = "TOKEN"\n',
    # an approval question carrying the secret, approved with --auto-approve
    "question": '[a]\ntype = "Manual"\ndescription = "about {{ TOKEN }}"\nprompt_after = "ok {{ TOKEN }}?"\n',
    # the secret printed by the command, in output and in the failure
    "output": '[a]\ntype = "Command"\ncommand_name = "echo {{ TOKEN }}; echo {{ TOKEN }} >&2; exit 3"\n',
    # a plugin's error message and a Function's result
    "plugin": '[a]\ntype = "Function"\nplugin = "python"\nfunction = "throw"\n'
    'function_params = { message = "bad {{ TOKEN }}" }\n',
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_secret_never_leaves_the_runner(tmp_path, path):
    rb = write_runbook(tmp_path, VARS + PATHS[path], title="masking {{ TOKEN }}")
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--var", "TOKEN=" + SECRET, "--auto-approve", "--state-path", dbp, env=_log_config(tmp_path))
    assert "Traceback" not in r.text
    assert r.returncode in (0, 1), r.text
    texts = _everything(tmp_path, dbp, r)
    assert any(MASK in t for t in texts)  # the value was there to be masked
    _assert_masked(texts)


@pytest.mark.parametrize(
    "body",
    [
        '[a]\ntype = "Command"\ncommand_name = "echo {{ {}[TOKEN] }}"\n',
        '[a]\ntype = "Command"\ncommand_name = "true"\ntimeout = "{{ TOKEN }}"\n',
    ],
    ids=["lookup", "timeout"],
)
def test_render_errors_never_print_the_secret(tmp_path, body):
    rb = write_runbook(tmp_path, VARS + body)
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--var", "TOKEN=" + SECRET, "--state-path", dbp)
    assert r.returncode == 2, r.text
    assert "Traceback" not in r.text
    assert MASK in r.text
    _assert_masked([r.text])


def test_json_events_are_masked(tmp_path):
    rb = write_runbook(tmp_path, VARS + PATHS["output"])
    dbp = tmp_path / "state.db"
    r = pb(tmp_path, "run", rb, "--json", "--var", "TOKEN=" + SECRET, "--state-path", dbp)
    assert r.returncode == 1, r.text
    assert MASK in r.stdout.decode()
    _assert_masked([r.text])


# -- the masker itself -----------------------------------------------------------------------------
def test_masker_masks_text_values_and_the_cut_start_of_a_tail():
    m = Masker(["hunter2", "", None, "hunter2-long"])
    assert m.text("a hunter2-long b hunter2") == "a *** b ***"
    assert m.value({"k": ["x hunter2", 3, None], "hunter2": True}) == {"k": ["x ***", 3, None], "***": True}
    assert m.tail("ter2 and more") == "*** and more"
    assert m.tail("nothing") == "nothing"
    assert not Masker([]) and Masker([]).text("x") == "x"


class _Recorder:
    interactive = False

    def __init__(self):
        self.events = []

    def event(self, kind, **data):
        self.events.append((kind, data))


def test_streamed_output_is_masked_when_the_secret_arrives_split():
    from playbook.runtime.plan import Node

    inner = _Recorder()
    ui = MaskedUI(inner, Masker(["hunter2"]))
    node = Node("a", "Command", command="echo hunter2")
    for piece in ("xx hun", "te", "r2 yy\nhu", "nt"):
        ui.event("node_output", node=node, stream="stdout", text=piece)
    ui.event("node_finished", node=node, status="succeeded", attempt=1, duration=0.0, fields={})
    printed = "".join(d["text"] for k, d in inner.events if k == "node_output")
    assert printed == "xx *** yy\nhunt"
    assert all(d["node"].command == "echo ***" for k, d in inner.events)
