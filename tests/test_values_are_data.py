"""A variable's value is data, never a template.

A value holding `{{ … }}`, `{% … %}` or `{# … #}` is rendered exactly once: it appears literally
in every field rendered at run time (the runbook's title and description; a step's name,
description, command, env, cwd, function parameters and questions), in `plan` (text and JSON),
in what the state database records and in the reports. A second rendering would evaluate the
value: `--var 'TICKET={{ TOKEN | list | join(".") }}'` once copied the secret TOKEN past the
masking, spelled with dots, into the console, the database and the reports.

- The regression, end to end with the installed `playbook` (`run --json` without a terminal,
  `show`, `report --json` / `--html`), then the same attack through the other ways a run goes
  (fleet aside): the plain console, a run waiting for approvals, `approval request`, `approve`,
  `resume`, `report --junit`; `plan` (text and --json); a bundle with the value baked in.
- A property test in-process (real compiler, real SQLite, real `sh`, the real engine driven by
  a `Session` as `playbook run` drives it, the built-in `python` plugin): generated values
  through every templated field, in both ways a plan meets its values (bound when run, or baked
  in by `plan`/`compile`).
- The runbook's title and description rendered once in `validate`, `plan`, `run`, `show` and
  the report.
- Two faults found on the way, fixed, and kept as tests: a bundle's name rendered a baked value
  a second time; in a run with a secret, events could name the wrong step.
"""

from __future__ import annotations

import html
import json
import os
import sqlite3
import tempfile
from functools import lru_cache
from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from cli_support import db_bytes, events, json_lines, pb, write_runbook
from engine_fakes import RUNBOOK_NAME, WHO, ScriptedUI, table, toml_value, variables
from playbook.compiler import source
from playbook.compiler.plan import compile_source
from playbook.runtime import engine, preview, report, session, state
from playbook.runtime import variables as var_mod
from playbook.runtime.ui import plan_text

# -- the regression: a value that reads a secret when rendered a second time --------------------
TOKEN = "s3cr3t"
DOTTED = ".".join(TOKEN)  # what `TOKEN | list | join(".")` would have made of it
TICKET = '{{ TOKEN | list | join(".") }}'

ATTACK_RUNBOOK = """
[variables]
TOKEN = { required = true, secret = true }
TICKET = { required = true }

[check]
type = "Manual"
description = "Look at {{ TICKET }}"
prompt_after = "Ticket {{ TICKET }}?"

[go]
type = "Command"
prompt_before = "Go {{ TICKET }}?"
command_name = "echo {{ TICKET }}"
"""
ATTACK_VARS = ("--var", "TOKEN=%s" % TOKEN, "--var", "TICKET=%s" % TICKET)


def sqlite_dump(path: Path) -> str:
    """Every table of the SQLite file as SQL text (schema and rows)."""
    con = sqlite3.connect(str(path))
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def files_under(directory: Path) -> dict[str, bytes]:
    """Every file a test's commands left in `directory` (database, WAL, locks, reports, home)."""
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_no_secret(*texts: str | bytes, where: str = "") -> None:
    """Neither the secret nor its dotted spelling in any of `texts`."""
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        for secret in (TOKEN, DOTTED):
            assert secret.encode() not in data, "%r leaked%s: ...%r..." % (
                secret, " into " + where if where else "", _around(data, secret.encode()))


def _around(data: bytes, needle: bytes) -> bytes:
    at = data.find(needle)
    return data[max(0, at - 80) : at + 80]


def assert_no_secret_in_files(directory: Path) -> None:
    for path, data in files_under(directory).items():
        assert_no_secret(data, where=path)


def test_a_value_that_reads_a_secret_when_rendered_twice_stays_text_everywhere(tmp_path):
    """The reported attack: TICKET's value is a template that spells the secret TOKEN with dots.
    Rendered once, it is text: shown as written in the events, the audit trail, the database and
    the reports, and the secret appears nowhere, in no spelling."""
    rb = write_runbook(tmp_path, ATTACK_RUNBOOK)
    dbp = tmp_path / "state.db"
    ran = pb(tmp_path, "run", rb, "--auto-approve", *ATTACK_VARS, "--json", "--state-path", dbp)
    assert ran.returncode == 0, ran.text
    lines = json_lines(ran.out)
    manual_event = next(e for e in lines if e["event"] == "manual")
    assert manual_event["description"] == "Look at %s" % TICKET
    started = next(e for e in lines if e["event"] == "node_started" and e["node"] == "go")
    assert started["command"] == "echo '%s'" % TICKET  # quoted once: `echo` receives the text
    output = [e["text"] for e in lines if e["event"] == "node_output" and e["node"] == "go"]
    assert "".join(output) == TICKET + "\n"

    questions = [e["detail"] for e in events(dbp, 1) if e["kind"] == "approval"]
    assert questions == ["check: auto-approved: Ticket %s?" % TICKET, "go: auto-approved: Go %s?" % TICKET]

    shown = pb(tmp_path, "show", "--run", "1", "--state-path", dbp)
    assert shown.returncode == 0, shown.text
    assert "TICKET=%s" % TICKET in shown.out
    assert "check: auto-approved: Ticket %s?" % TICKET in shown.out
    assert "go: auto-approved: Go %s?" % TICKET in shown.out

    as_json = pb(tmp_path, "report", "1", "--json", "--state-path", dbp)
    assert as_json.returncode == 0, as_json.text
    doc = json.loads(as_json.out)
    assert doc["run"]["variables"] == {"TICKET": TICKET, "TOKEN": "***"}
    by_id = {n["id"]: n for n in doc["nodes"]}
    assert by_id["check"]["description"] == "Look at %s" % TICKET
    assert by_id["go"]["command"] == "echo '%s'" % TICKET
    assert by_id["go"]["stdout"] == TICKET
    assert [e["detail"] for e in doc["events"] if e["kind"] == "approval"] == questions

    page = tmp_path / "run1.html"
    as_html = pb(tmp_path, "report", "1", "--html", page, "--state-path", dbp)
    assert as_html.returncode == 0, as_html.text
    text = html.unescape(page.read_text(encoding="utf-8"))
    for shown_text in ("Look at %s" % TICKET, "Ticket %s?" % TICKET, "Go %s?" % TICKET, "echo '%s'" % TICKET):
        assert shown_text in text

    dump = sqlite_dump(dbp)
    assert "Ticket %s?" % TICKET.replace("'", "''") in dump
    for proc, what in ((ran, "run"), (shown, "show"), (as_json, "report --json"), (as_html, "report --html")):
        assert_no_secret(proc.stdout, proc.stderr, where=what)
    assert_no_secret(dump, db_bytes(dbp), where="the state database")
    assert_no_secret_in_files(tmp_path)


def test_the_value_stays_text_on_the_console_while_waiting_approving_and_resuming(tmp_path):
    """The same attack on the other ways a run goes: the plain console without a terminal, a run
    that waits for approvals (the question in the audit trail and in the approval request),
    `approve`, `resume` (the value now read back from the database, not from --var) and the
    JUnit report."""
    rb = write_runbook(tmp_path, ATTACK_RUNBOOK)
    dbp = tmp_path / "state.db"
    state_path = ("--state-path", dbp)
    done = []

    def step(*args, code=0):
        proc = pb(tmp_path, *args, *state_path)
        assert proc.returncode == code, proc.text
        done.append(proc)
        return proc

    first = step("run", rb, *ATTACK_VARS, code=3)  # waits for check's approval
    assert "Look at %s" % TICKET in first.out
    request = tmp_path / "request.json"
    step("approval", "request", "1", "check", "-o", request)
    assert json.loads(request.read_text(encoding="utf-8"))["question"] == "Ticket %s?" % TICKET
    step("approve", "1", "check")
    second = step("resume", rb, "1", "--var", "TOKEN=%s" % TOKEN, code=3)  # TICKET from the database
    assert "Look at %s" % TICKET in second.out
    step("approve", "1", "go")
    third = step("resume", rb, "1", "--var", "TOKEN=%s" % TOKEN)
    assert "go (Command): echo '%s'" % TICKET in third.out
    assert "\u2502 %s\n" % TICKET in third.out

    needed = [e["detail"] for e in events(dbp, 1) if e["kind"] == "approval-needed"]
    assert needed == ["check: needed, no terminal: Ticket %s?" % TICKET, "go: needed, no terminal: Go %s?" % TICKET]
    shown = step("show", "--run", "1")
    for detail in needed:
        assert detail in shown.out
    junit = tmp_path / "run1.xml"
    step("report", "1", "--junit", junit)
    assert "<system-out>%s</system-out>" % html.escape(TICKET, quote=False) in junit.read_text(encoding="utf-8")

    for proc in done:
        assert_no_secret(proc.stdout, proc.stderr, where=" ".join(map(str, proc.args[1:3])))
    assert_no_secret(sqlite_dump(dbp), where="the state database")
    assert_no_secret_in_files(tmp_path)


def test_plan_shows_the_value_as_text(tmp_path):
    """`playbook plan` (text and --json) with the attack's values: the questions and the command
    hold the value as written; the secret is masked, in no spelling."""
    rb = write_runbook(tmp_path, ATTACK_RUNBOOK)
    text = pb(tmp_path, "plan", rb, *ATTACK_VARS)
    assert text.returncode == 0, text.text
    assert "Values: TICKET=%s, TOKEN=***" % TICKET in text.out
    assert "asks: Ticket %s?" % TICKET in text.out
    assert "$ echo '%s'" % TICKET in text.out
    assert "asks before it runs: Go %s?" % TICKET in text.out
    as_json = pb(tmp_path, "plan", rb, *ATTACK_VARS, "--json")
    assert as_json.returncode == 0, as_json.text
    doc = json.loads(as_json.out)
    by_id = {n["id"]: n for n in doc["nodes"]}
    assert (by_id["check"]["description"], by_id["check"]["prompt_after"]) == ("Look at %s" % TICKET, "Ticket %s?" % TICKET)
    assert (by_id["go"]["prompt_before"], by_id["go"]["command"]) == ("Go %s?" % TICKET, "echo '%s'" % TICKET)
    assert doc["effective"]["values"]["TICKET"]["value"] == TICKET
    assert_no_secret(text.stdout, text.stderr, as_json.stdout, as_json.stderr, where="plan")


def test_a_bundle_with_the_value_baked_in_runs_it_as_text(tmp_path, playbook):
    """`playbook compile --var TICKET=…` bakes the value into the plan (rendered then, once);
    the bundle's run, plan, show and report on the host show it as written, and the secret,
    given on the host, appears nowhere (nor in the bundle)."""
    rb = write_runbook(tmp_path, ATTACK_RUNBOOK)
    bundle = tmp_path / "rb.pyz"
    built = pb(tmp_path, "compile", rb, "-o", bundle, "--no-bytecode", "--var", "TICKET=%s" % TICKET)
    assert built.returncode == 0, built.text
    dbp = tmp_path / "host.db"
    ran = playbook("run", "--auto-approve", "--var", "TOKEN=%s" % TOKEN, "--json", "--state-path", dbp, exe=bundle)
    assert ran.returncode == 0, ran.text
    lines = json_lines(ran.stdout)
    assert [e["description"] for e in lines if e["event"] == "manual"] == ["Look at %s" % TICKET]
    assert "".join(e["text"] for e in lines if e["event"] == "node_output") == TICKET + "\n"
    questions = [e["detail"] for e in events(dbp, 1) if e["kind"] == "approval"]
    assert questions == ["check: auto-approved: Ticket %s?" % TICKET, "go: auto-approved: Go %s?" % TICKET]
    plan = playbook("plan", "--var", "TOKEN=%s" % TOKEN, exe=bundle)
    assert plan.returncode == 0, plan.text
    assert "asks: Ticket %s?" % TICKET in plan.stdout and "$ echo '%s'" % TICKET in plan.stdout
    shown = playbook("show", "--run", "1", "--state-path", dbp, exe=bundle)
    assert "go: auto-approved: Go %s?" % TICKET in shown.stdout
    as_json = playbook("report", "1", "--json", "--state-path", dbp, exe=bundle)
    assert {n["id"]: n["stdout"] for n in json.loads(as_json.stdout)["nodes"]}["go"] == TICKET
    for proc in (built, ran, plan, shown, as_json):
        assert_no_secret(proc.stdout, proc.stderr)
    assert_no_secret(sqlite_dump(dbp), where="the host's state database")
    assert_no_secret_in_files(tmp_path)  # the bundle too


# -- the property: every templated field, generated values, in-process ---------------------------
SECRET = "q0w9e8r7"  # S, a secret the runbook declares: no rendering of a value may reveal it
SECRET_DOTTED = ".".join(SECRET)

# Characters of Jinja's delimiters and whitespace control, of shell quoting and expansion, and a
# few letters; "/" and newline too (a path separator, a line break in prompts and outputs).
ALPHABET = "{}%#-+'\"$\\ /\nabXYé"
NASTY = (
    "{{ 7*7 }}",
    "{% if true %}x{% endif %}",
    "{# c #}",
    "{{ previous_node('a').stdout }}",
    "{% raw %}",
    "}}{{",
    "{{",
    "{{ V }}",
    "{{ S }}",
    '{{ S | list | join(".") }}',
    "{%- if true -%} x {%- endif -%}",
    "{{ lipsum() }}",
    "$(echo no) `echo no` ${HOME}",
)
# A NUL character is refused by design (no command can receive one: templating.py refuses it when
# rendered), so the alphabet holds none, and the filter keeps it so if the alphabet changes. No
# other value is left out: values come with --var, not in the runbook's text, so none can make its
# TOML invalid, and each `{{ V }}` of a command is quoted for its place, so none can make the
# command invalid. (Values that cannot name a directory are kept too; see is_path_component.)
VALUES = st.one_of(
    st.sampled_from(NASTY),
    st.text(alphabet=ALPHABET, max_size=30),
    st.tuples(st.text(alphabet=ALPHABET, max_size=8), st.sampled_from(NASTY), st.text(alphabet=ALPHABET, max_size=8)).map("".join),
).filter(lambda value: "\x00" not in value)


def is_path_component(value: str) -> bool:
    """Whether "cwd-VALUE" can name one directory: no "/" (it would name a path of several),
    and not longer than a file name may be. For any other value the example runs the runbook
    without its two `cwd` steps (property_runbook(with_cwd=False)), and reports so in the
    hypothesis statistics ("cwd steps left out"); every other field is checked as always."""
    return "/" not in value and len(("cwd-" + value).encode("utf-8")) <= 255


def step(node_id: str, node_type: str, **fields) -> str:
    """A step's table (engine_fakes' builders take `name` for the table's own name)."""
    lines = ["[%s]" % node_id, "type = %s" % toml_value(node_type)]
    lines += ["%s = %s" % (key, toml_value(value)) for key, value in fields.items()]
    return "\n".join(lines) + "\n\n"


def property_runbook(with_cwd: bool) -> str:
    """`{{ V }}` in every templated field. The steps after `word` also read its output
    (`previous_node`), so their fields are rendered when they start, not when the plan is bound.
    Without `with_cwd` the two steps whose cwd holds the value are left out (see
    is_path_component)."""
    steps = [
        step("check", "Manual", depends_on=[], name="N {{ V }}", description="MD {{ V }}", prompt_after="Q {{ V }}?"),
        step(
            "word",
            "Command",
            name="CN {{ V }}",
            description="CD {{ V }}",
            prompt_before="B {{ V }}?",
            prompt_after="A {{ V }}?",
            command_name="printf '%s' {{ V }}",
        ),
        step("single", "Command", command_name="printf '%s' '{{ V }}'"),
        step("double", "Command", command_name="printf '%s' \"{{ V }}\""),
        step("envstep", "Command", command_name="printf '%s' \"$X\"", env={"X": "{{ V }}"}),
        step("incwd", "Command", command_name="pwd -P", cwd="{{ BASE }}/cwd-{{ V }}") if with_cwd else "",
        step("note", "Function", name="FN {{ V }}", description="FD {{ V }}", plugin="python", function="notify",
             function_params={"message": "{{ V }}"}),
        step("note_mixed", "Function", plugin="python", function="notify", function_params={"message": "m {{ V }} m"}),
        step(
            "late",
            "Command",
            prompt_before="LB {{ V }} {{ previous_node('word').status }}?",
            prompt_after="LA {{ V }}|{{ previous_node('word').stdout }}?",
            command_name="printf '%s|%s|%s' {{ V }} {{ previous_node('word').stdout }} \"$Y\"",
            env={"Y": "{{ previous_node('word').stdout }}|{{ V }}"},
        ),
        step("late_cwd", "Command", command_name="pwd -P", cwd="{{ BASE }}/cwd-{{ V }}{{ previous_node('word').stderr }}")
        if with_cwd
        else "",
        step("late_note", "Function", plugin="python", function="notify",
             function_params={"message": "{{ previous_node('word').stdout }}/{{ V }}"}),
        step("late_check", "Manual", prompt_after="LQ {{ V }}|{{ previous_node('word').stdout }}?"),
    ]
    return "".join(
        [
            table("runbook", title="T {{ V }}", description="D {{ V }}"),
            variables(V={"required": True}, BASE={"required": True}, S={"required": True, "secret": True}),
        ]
        + steps
    )


@lru_cache(maxsize=None)
def unbaked_plan(with_cwd: bool):
    """The plan `playbook run FILE` compiles: nothing baked, every value bound when run."""
    return compile_source(source.parse(property_runbook(with_cwd), RUNBOOK_NAME), var_mod.Sources(), bake=False).plan


def resume_command(verb, run_id, *words, file=None):
    return "playbook %s %s %s" % (verb, run_id, " ".join(words))


QUESTIONS_ASKED = 6  # check 1, word 2 (before, after), late 2, late_check 1


def run_in_process(directory: Path, value: str, baked: bool) -> dict:
    """Compile, bind and run the property runbook with V=value as `playbook run` does (baked:
    as a plan or bundle compiled with the value does), with the real command runner, a real
    SQLite file and a scripted operator who approves everything. Returns what was seen."""
    with_cwd = is_path_component(value)
    base = directory / "base"
    base.mkdir()
    if with_cwd:
        (base / ("cwd-" + value)).mkdir()
    sources = var_mod.Sources.gather(["V=" + value, "BASE=" + str(base), "S=" + SECRET])
    if baked:
        plan = compile_source(source.parse(property_runbook(with_cwd), RUNBOOK_NAME), sources, bake=True).plan
    else:
        plan = unbaked_plan(with_cwd)
    ui = ScriptedUI(*[True] * QUESTIONS_ASKED)
    values = session.resolve_values(plan, sources, ui, interactive=False)
    bound = session.bind(plan, values)
    store = state.Store(directory / "state.db")
    try:
        runs = session.Session(store, ui, engine.Options(), resume_command, entry_points={}, who=WHO)
        code = runs.start(plan, bound, values, RUNBOOK_NAME)
        run = store.get_run(1)
        origins = var_mod.origins(plan.variables, sources, values, fixed=plan.values)
        seen = {
            "code": code,
            "with_cwd": with_cwd,
            "base": base,
            "bound": bound,
            "ui": ui,
            "answers_left": len(ui.answers),
            "attempts": {a["node_id"]: a for a in store.attempts(1)},
            "events": [dict(e) for e in store.events(1)],
            "run": run,
            "plan_text": plan_text(bound, values, origins),
            "plan_json": preview.document(bound, values, origins),
            "report": json.loads(report.RunReport(store, run).json()),
            "html": html.unescape(report.RunReport(store, run).html(draw=False)),
            "show": report.run_text(run, store.attempts(1), store.events(1)),
        }
    finally:
        store.close()
    seen["dump"] = sqlite_dump(directory / "state.db")
    seen["db_bytes"] = db_bytes(directory / "state.db")
    return seen


@settings(max_examples=80, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES, baked=st.booleans())
@example(value='{{ S | list | join(".") }}', baked=False)
@example(value="a/{{ 7*7 }}", baked=True)
def test_every_templated_field_renders_a_value_once(tmp_path_factory, value, baked):
    """Generated values (Jinja's delimiters, quotes, `$`, backslashes, "/", newlines, and fixed
    nasty ones) given as V to a runbook with `{{ V }}` in every templated field, run in-process
    by the real engine with the real command runner (`sh`), a real SQLite file and an operator
    who approves: each field holds V as it was given (title, description, names, env, cwd,
    function parameters, questions asked and recorded, what `printf` printed and what `notify`
    returned, the plan's text and JSON, the JSON and HTML reports, `show`), and the secret S
    appears nowhere. Half the examples bake V in at compile time (what `plan` and `compile` do),
    half bind it when the run starts (what `playbook run FILE` does)."""
    with tempfile.TemporaryDirectory(dir=str(tmp_path_factory.getbasetemp())) as scratch:
        seen = run_in_process(Path(scratch), value, baked)
        event("baked in at compile time" if baked else "bound when run")
        event("cwd checked" if seen["with_cwd"] else "cwd steps left out: not a path component")
        check_run(seen, value)


def check_run(seen: dict, value: str) -> None:
    v = value
    # a question is one line on the operator's screen and in the audit trail: its line breaks
    # are shown as symbols (templating.QUESTION), every other character as given
    q = v.replace("\r", "\u240d").replace("\n", "\u2424")
    assert seen["code"] == 0, seen["events"]
    bound = seen["bound"]
    nodes = bound.by_id
    # bound: the runbook's and the steps' fields, as the run uses them
    assert (bound.runbook["title"], bound.runbook["description"]) == ("T " + v, "D " + v)
    assert [(nodes[i].name, nodes[i].description) for i in ("check", "word", "note")] == [
        ("N " + v, "MD " + v), ("CN " + v, "CD " + v), ("FN " + v, "FD " + v)]
    assert (nodes["check"].prompt_after, nodes["word"].prompt_before, nodes["word"].prompt_after) == (
        "Q %s?" % q, "B %s?" % q, "A %s?" % q)
    assert nodes["envstep"].env == {"X": v}
    assert nodes["note"].function_params == {"message": v}
    assert nodes["note_mixed"].function_params == {"message": "m %s m" % v}
    cwd = str(seen["base"] / ("cwd-" + v))
    if seen["with_cwd"]:
        assert nodes["incwd"].cwd == cwd

    # the operator: the run's title, the questions asked and the descriptions shown
    ui = seen["ui"]
    assert [e["title"] for e in ui.of("run_started")] == ["T " + v]
    asked: dict = {}
    for kind, node_id, question in ui.asked:
        assert kind == "confirm"
        asked.setdefault(node_id, []).append(question)
    questions = {
        "check": ["Q %s?" % q],
        "word": ["B %s?" % q, "A %s?" % q],
        "late": ["LB %s succeeded?" % q, "LA %s|%s?" % (q, q)],
        "late_check": ["LQ %s|%s?" % (q, q)],
    }
    assert asked == questions
    assert seen["answers_left"] == 0
    assert [(e["node"].id, e["description"]) for e in ui.of("manual")] == [("check", "MD " + v), ("late_check", "")]
    started = {e["node"].id: e["command"] for e in ui.of("node_started") if e["node"].type == "Command"}
    for node_id in ("word", "single", "double", "envstep"):
        assert started[node_id] == nodes[node_id].command  # what sh ran is what the plan shows

    # what the commands received (sh prints it back) and what the plugin returned
    attempts = seen["attempts"]
    outputs = {node_id: row["stdout"] for node_id, row in attempts.items() if nodes[node_id].type == "Command"}
    expected = {"word": v, "single": v, "double": v, "envstep": v, "late": "|".join([v, v, v, v])}
    if seen["with_cwd"]:
        here = os.path.realpath(cwd) + "\n"
        expected.update(incwd=here, late_cwd=here)
    assert outputs == expected
    results = {node_id: row["output"] for node_id, row in attempts.items() if nodes[node_id].type == "Function"}
    assert results == {
        "note": "Notification sent: " + v,
        "note_mixed": "Notification sent: m %s m" % v,
        "late_note": "Notification sent: %s/%s" % (v, v),
    }
    # (compared without the step each is shown under: see test_events_name_the_step_they_are_about)
    shown_output = sorted(e["text"] for e in ui.of("node_output") if e["stream"] == "output")
    assert shown_output == sorted(text + "\n" for text in results.values())

    # the audit trail records the questions as asked
    recorded = {}
    for row in seen["events"]:
        if row["kind"] == "approval":
            recorded.setdefault(row["node_id"], []).append(row["detail"])
    assert recorded == {
        node_id: ["%s: approved: %s" % (node_id, q) for q in qs] for node_id, qs in questions.items()
    }
    assert seen["run"]["variables"] == {"V": v, "BASE": str(seen["base"]), "S": "***"}

    # plan: text and JSON
    text = seen["plan_text"]
    assert text.startswith("Plan: T %s — " % v)
    assert "check [Manual] N %s" % v in text
    assert "word [Command] CN %s" % v in text
    assert "note [Function] FN %s" % v in text
    assert "asks: Q %s?" % q in text
    assert "asks before it runs: B %s?\n" % q in text
    assert "asks after it ran: A %s?\n" % q in text
    assert "$ %s\n" % nodes["envstep"].command in text
    if "\n" not in nodes["word"].command:
        assert "$ %s\n" % nodes["word"].command in text
    assert "python.notify(message=%s" % repr(v)[:59] in text
    doc = seen["plan_json"]
    assert (doc["runbook"]["title"], doc["runbook"]["description"]) == ("T " + v, "D " + v)
    in_doc = {n["id"]: n for n in doc["nodes"]}
    assert (in_doc["word"]["name"], in_doc["word"]["description"]) == ("CN " + v, "CD " + v)
    assert (in_doc["word"]["prompt_before"], in_doc["word"]["prompt_after"]) == ("B %s?" % q, "A %s?" % q)
    assert in_doc["word"]["command"] == nodes["word"].command
    assert in_doc["envstep"]["env"] == {"X": v}
    assert in_doc["note"]["function_params"] == {"message": v}
    if seen["with_cwd"]:
        assert in_doc["incwd"]["cwd"] == cwd
    assert doc["effective"]["values"]["V"]["value"] == v

    # the reports
    rep = seen["report"]
    assert (rep["run"]["title"], rep["runbook"]["title"], rep["runbook"]["description"]) == ("T " + v, "T " + v, ("D " + v).strip())
    by_id = {n["id"]: n for n in rep["nodes"]}
    assert (by_id["word"]["name"], by_id["word"]["description"]) == ("CN " + v, ("CD " + v).strip())
    for node_id in ("word", "single", "double", "envstep"):
        assert by_id[node_id]["command"] == nodes[node_id].command
    assert {a["node_id"]: a["stdout"] for a in rep["attempts"] if a["node_id"] in expected} == expected
    assert {n: by_id[n]["output"] for n in results} == results
    assert [e["detail"] for e in rep["events"] if e["kind"] == "approval"] == [
        e["detail"] for e in seen["events"] if e["kind"] == "approval"]
    page = seen["html"]
    for shown_text in ["T " + v, "CN " + v, ("MD " + v).strip()] + [q for qs in questions.values() for q in qs]:
        assert shown_text in page, shown_text
    assert "run 1: T %s — succeeded" % v in seen["show"]

    # the secret S, in no spelling, anywhere
    everything = [seen["plan_text"], json.dumps(seen["plan_json"]), json.dumps(rep), page, seen["show"],
                  seen["dump"], repr(ui.events), repr(ui.asked)]
    for secret in (SECRET, SECRET_DOTTED):
        assert not any(secret in text for text in everything)
        assert secret.encode() not in seen["db_bytes"]



# -- the runbook's own title and description ---------------------------------------------------
TITLED_RUNBOOK = """
[runbook]
title = "Deploy {{ V }}"
description = "About {{ V }} here"

[variables]
V = { required = true }

[go]
type = "Command"
command_name = "printf '%s' {{ V }}"
"""


def test_the_runbook_title_and_description_render_a_value_once(tmp_path):
    """A title "Deploy {{ V }}" with V=`{{ 7*7 }}` is "Deploy {{ 7*7 }}" wherever it is shown:
    `validate`, `plan`, `run` (console and --json), `show` (the list and the run) and the
    report; never "Deploy 49"."""
    value = "{{ 7*7 }}"
    title, description = "Deploy %s" % value, "About %s here" % value
    rb = write_runbook(tmp_path, TITLED_RUNBOOK)
    dbp = tmp_path / "state.db"
    given = ("--var", "V=%s" % value)
    outputs = []

    def playbook(*args):
        proc = pb(tmp_path, *args)
        assert proc.returncode == 0, proc.text
        outputs.append(proc.text)
        return proc

    assert "valid \u2014 %s\n" % title in playbook("validate", rb, *given).out
    assert playbook("plan", rb, *given).out.startswith("Plan: %s \u2014 1 node\n" % title)
    planned = json.loads(playbook("plan", rb, *given, "--json").out)
    assert (planned["runbook"]["title"], planned["runbook"]["description"]) == (title, description)
    console = playbook("run", rb, *given, "--state-path", dbp).out
    assert "starting run 1: %s (1 step)" % title in console
    started = json_lines(playbook("run", rb, *given, "--json", "--state-path", dbp).out)[0]
    assert (started["event"], started["title"]) == ("run_started", title)
    listed = playbook("show", "--state-path", dbp).out
    assert "succeeded  run      " in listed and listed.count("  %s\n" % title) == 2  # runs 1 and 2
    assert "run 1: %s \u2014 succeeded" % title in playbook("show", "--run", "1", "--state-path", dbp).out
    rep = json.loads(playbook("report", "1", "--json", "--state-path", dbp).out)
    assert (rep["run"]["title"], rep["runbook"]["title"], rep["runbook"]["description"]) == (title, title, description)
    assert {n["id"]: n["stdout"] for n in rep["nodes"]} == {"go": value}
    assert not any("Deploy 49" in text or "About 49" in text for text in outputs)


# -- faults found on the way ---------------------------------------------------------------------
def test_a_bundle_names_its_runbook_with_the_value_as_text(tmp_path, playbook):
    rb = write_runbook(tmp_path, TITLED_RUNBOOK.replace("V = { required = true }", 'V = { required = true }\nW = "inner"'))
    bundle = tmp_path / "t.pyz"
    built = pb(tmp_path, "compile", rb, "-o", bundle, "--no-bytecode", "--var", "V={{ W }}")
    assert built.returncode == 0, built.text
    ran = playbook("run", "--state-path", tmp_path / "host.db", exe=bundle)
    assert "starting run 1: Deploy {{ W }} (1 step)" in ran.stdout  # the run: rendered once
    inspected = playbook("inspect", exe=bundle)
    version = playbook("--version", exe=bundle)
    named = {
        "compile": built.out.splitlines()[0].rpartition(" \u2014 ")[2],  # wrote t.pyz (1.9 MB) — TITLE
        "inspect": inspected.stdout.splitlines()[0].partition(" bundle of ")[2],  # t.pyz: Playbook bundle of "TITLE"
        "--version": version.stdout.strip().partition("(bundle of ")[2],  # playbook 2.0.0 (bundle of TITLE)
    }
    assert named == {"compile": "Deploy {{ W }}", "inspect": '"Deploy {{ W }}"', "--version": "Deploy {{ W }})"}


MIXED_UP = """
[variables]
TOKEN = { required = true, secret = true }

[first]
type = "Command"
command_name = "echo one"

[second]
type = "Command"
command_name = "echo two {{ previous_node('first').exit_code }}"
prompt_after = "ok?"

[third]
type = "Function"
plugin = "python"
function = "notify"
function_params = { message = "three {{ previous_node('first').exit_code }}" }

[fourth]
type = "Command"
command_name = "echo four {{ previous_node('first').exit_code }}"
prompt_after = "ok?"

[fifth]
type = "Function"
plugin = "python"
function = "notify"
function_params = { message = "five {{ previous_node('first').exit_code }}" }
"""


def test_events_name_the_step_they_are_about(tmp_path):
    """Found while testing the above: each event names the step it is about, also in a run with
    a secret, where every event goes through the masking UI."""
    rb = write_runbook(tmp_path, MIXED_UP)
    ran = pb(tmp_path, "run", rb, "--auto-approve", "--var", "TOKEN=%s" % TOKEN, "--json", "--state-path", tmp_path / "db")
    assert ran.returncode == 0, ran.text
    lines = json_lines(ran.out)
    finished = [(e["node"], e["type"]) for e in lines if e["event"] == "node_finished"]
    assert finished == [("first", "Command"), ("second", "Command"), ("third", "Function"),
                        ("fourth", "Command"), ("fifth", "Function")]
    outputs = {e["text"]: e["node"] for e in lines if e["event"] == "node_output"}
    assert outputs == {"one\n": "first", "two 0\n": "second", "Notification sent: three 0\n": "third",
                       "four 0\n": "fourth", "Notification sent: five 0\n": "fifth"}
