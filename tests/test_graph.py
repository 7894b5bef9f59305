"""DAG pictures: runtime/graph.py (DOT text) and `playbook view-dag` (Graphviz, real `dot`).

Every example and every valid 1.x compat runbook must give a valid PNG and SVG; any text in a
description, command, `when` or id must give DOT that `dot` accepts; `--run` must colour the
nodes exactly as the state database says; a missing `dot` or viewer must never be a traceback.
"""

import re
import shutil
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playbook.runtime import graph
from playbook.runtime.plan import Dep, Node, Plan
from playbook.runtime.state import Store

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.playbook.toml"))
COMPAT = REPO.parent / "shared" / "compat-runbooks"
# The 1.x runbooks that are valid, with the variables they need to be drawn.
VALID_COMPAT = [
    ("conditional_dependencies.playbook.toml", []),
    ("conditional_deployment.playbook.toml", ["--var", "ENVIRONMENT=prod"]),
    ("plugin-auto.playbook.toml", []),
    ("plugin.playbook.toml", []),
    ("simple_bash_commands.playbook.toml", []),
    ("variables-deploy.playbook.toml", ["--var", "ENVIRONMENT=prod"]),
    ("probes/probe-abort.playbook.toml", []),
    ("probes/probe-crit.playbook.toml", []),
    ("probes/probe-extra.playbook.toml", []),
    ("probes/probe-markup.playbook.toml", []),
    ("probes/probe-misc.playbook.toml", []),
    ("probes/probe-sigint.playbook.toml", []),
    ("probes/probe-skipfail.playbook.toml", []),
]
EXAMPLE_VARS = {"deploy.playbook.toml": ["--var", "ENVIRONMENT=prod"]}

DOT = shutil.which("dot")
needs_dot = pytest.mark.skipif(DOT is None, reason="Graphviz `dot` is not installed (apt-get install graphviz)")


def playbook_argv():
    script = Path(sys.executable).parent / "playbook"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from playbook.compiler.main import main; sys.exit(main())"]


def playbook(args, cwd=None, env=None, timeout=120):
    """`playbook ARGS` under the tests' one environment policy (conftest.run_playbook: HOME in
    a temporary directory, no PLAYBOOK_* or DISPLAY from outside), DISPLAY only when `env` sets it."""
    import tempfile

    from conftest import run_playbook

    with tempfile.TemporaryDirectory(prefix="playbook-graph-home-") as home:
        return run_playbook(args, cwd=cwd, env=env, timeout=timeout, home=Path(home) / "home")


def assert_png(path):
    """A real PNG: signature, a well-formed IHDR chunk (CRC checked) and an IEND at the end."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF == crc, "IHDR checksum mismatch"
    width, height, depth, colour = struct.unpack(">IIBB", body[:10])
    assert width > 50 and height > 50 and depth in (1, 2, 4, 8, 16) and colour in (0, 2, 3, 4, 6)
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", "PNG does not end with IEND"
    return width, height


def svg_root(path_or_text):
    text = Path(path_or_text).read_text("utf-8") if isinstance(path_or_text, Path) else path_or_text
    root = ET.fromstring(text)
    assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg")
    return root


SVG = "{http://www.w3.org/2000/svg}"


def svg_nodes(root):
    """{node title: [texts]} for every node group of an SVG that `dot` wrote."""
    nodes = {}
    for group in root.iter(SVG + "g"):
        if group.get("class") == "node":
            title = group.find(SVG + "title").text
            nodes[title] = ["".join(t.itertext()) for t in group.iter(SVG + "text")]
    return nodes


def runbook_cases():
    cases = [pytest.param(path, EXAMPLE_VARS.get(path.name, []), id="examples/" + path.name) for path in EXAMPLES]
    for name, extra in VALID_COMPAT:
        cases.append(pytest.param(COMPAT / name, extra, id="compat/" + name))
    return cases


def node_ids(path, extra):
    from playbook.compiler.plan import compile_file
    from playbook.runtime.variables import Sources

    pairs = [extra[i + 1] for i in range(0, len(extra), 2) if extra[i] == "--var"]
    return [n.id for n in compile_file(str(path), Sources.gather(pairs, None, None), bake=True).plan.nodes]


# -- every example and valid compat runbook, through the real `dot` ---------------------------------


@needs_dot
@pytest.mark.parametrize("path, extra", runbook_cases())
def test_view_dag_png_and_svg(path, extra, tmp_path):
    if not path.exists():
        pytest.skip("%s not found (the compat corpus lives in ../shared)" % path)
    png = tmp_path / "dag.png"
    result = playbook(["view-dag", path, *extra, "--no-open", "-o", png], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert_png(png)
    svg = tmp_path / "dag.svg"
    result = playbook(["view-dag", path, *extra, "--no-open", "--format", "svg", "-o", svg], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    drawn = svg_nodes(svg_root(svg))
    assert sorted(drawn) == sorted(node_ids(path, extra))


@needs_dot
def test_view_dag_default_output_keep_dot_and_pdf(tmp_path):
    deploy = REPO / "examples" / "deploy.playbook.toml"
    result = playbook(["view-dag", deploy, "--var", "ENVIRONMENT=prod", "--no-open", "--keep-dot"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_png(tmp_path / "deploy.png")
    dot_text = (tmp_path / "deploy.dot").read_text("utf-8")
    assert dot_text.startswith("digraph playbook {")
    assert "wrote deploy.png" in result.stdout
    result = playbook(["view-dag", deploy, "--no-open", "--format", "pdf"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "deploy.pdf").read_bytes()[:5] == b"%PDF-"
    # the format follows the output's suffix when --format is not given
    result = playbook(["view-dag", deploy, "--no-open", "-o", "pic.svg"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    svg_root(tmp_path / "pic.svg")


def test_view_dag_dot_is_deterministic_and_goes_to_stdout(tmp_path):
    deploy = REPO / "examples" / "deploy.playbook.toml"
    first = playbook(["view-dag", deploy, "--var", "ENVIRONMENT=prod", "--format", "dot", "-o", "-"], cwd=tmp_path)
    second = playbook(["view-dag", deploy, "--var", "ENVIRONMENT=prod", "--format", "dot", "-o", "-"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert first.stdout.startswith("digraph playbook {")
    assert list(tmp_path.iterdir()) == []
    # the given variable is baked in, the defaults complete the other templates
    assert "echo building myapp 1.4.2" in first.stdout


def test_view_dag_invalid_runbook_exits_2_with_diagnostics(tmp_path):
    bad = tmp_path / "bad.playbook.toml"
    bad.write_text(
        '[runbook]\ntitle = "t"\ndescription = "d"\nversion = "1"\nauthor = "a"\ncreated_at = 2025-01-01T00:00:00Z\n'
        '[a]\ntype = "Command"\ncommand_name = "true"\ndepends_on = ["ghost"]\n'
    )
    result = playbook(["view-dag", bad, "--no-open"], cwd=tmp_path)
    assert result.returncode == 2
    assert "bad.playbook.toml:" in result.stderr and "error" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "bad.png").exists()
    result = playbook(["view-dag", "--no-open"], cwd=tmp_path)
    assert result.returncode == 2 and "FILE" in result.stderr
    result = playbook(["view-dag", REPO / "examples" / "deploy.playbook.toml", "--var", "ENVIRONMENT=nowhere"], cwd=tmp_path)
    assert result.returncode == 2 and "ENVIRONMENT" in result.stderr


# -- the DOT text: styles ---------------------------------------------------------------------------


def plan_of(*nodes, title="T"):
    return Plan({"title": title}, {}, {}, list(nodes))


def node_attrs(dot_text, node_id):
    line = next(l for l in dot_text.splitlines() if l.startswith("  %s [" % graph.quote(node_id)))
    return line


def edge_line(dot_text, source, target):
    prefix = "  %s -> %s [" % (graph.quote(source), graph.quote(target))
    return [l for l in dot_text.splitlines() if l.startswith(prefix)]


def test_styles_by_type_criticality_skip_and_edge_kind():
    nodes = [
        Node("ask", "Manual", description="Approve?"),
        Node("cmd", "Command", [Dep("ask")], command="make deploy", critical=True),
        Node("fn", "Function", [Dep("cmd", "success")], plugin="python", function="notify", function_params={"message": "hi"}),
        Node("undo", "Command", [Dep("cmd", "failure")], command="make rollback"),
        Node("tell", "Manual", [Dep("undo", "done")]),
        Node("off", "Command", [Dep("ask")], command="true", skip=True),
        Node("watch", "Command", [Dep("ask")], command="true", when="has_failed('cmd')", when_nodes=("cmd",)),
        Node("maybe", "Command", [Dep("ask")], command="true", critical="{{ ENV == 'prod' }}", templates=("critical",)),
    ]
    text = graph.to_dot(plan_of(*nodes))
    assert "shape=box, style=\"filled,rounded\"" in node_attrs(text, "ask")
    assert 'fillcolor="#fff3c4"' in node_attrs(text, "ask")
    cmd = node_attrs(text, "cmd")
    assert "peripheries=2" in cmd and "bold" in cmd and "CRITICAL" in cmd and 'fillcolor="#dbeafe"' in cmd
    assert "shape=component" in node_attrs(text, "fn") and "python.notify(message=&#39;hi&#39;)" not in text
    assert "python.notify(message='hi')" in node_attrs(text, "fn")
    assert "dashed" in node_attrs(text, "off") and "never runs: disabled" in node_attrs(text, "off")
    assert "critical if ENV == &#39;prod&#39;" in node_attrs(text, "maybe") or "critical if ENV == 'prod'" in node_attrs(text, "maybe")
    assert "peripheries=1" in node_attrs(text, "maybe")
    (success,) = edge_line(text, "cmd", "fn")
    assert 'color="#2e7d32"' in success and 'label=" success "' in success
    (failure,) = edge_line(text, "cmd", "undo")
    assert 'color="#c62828"' in failure and "style=dashed" in failure and 'label=" failure "' in failure
    (done,) = edge_line(text, "undo", "tell")
    assert 'color="#757575"' in done and 'label=" done "' in done
    (plain,) = edge_line(text, "ask", "cmd")
    assert "label=" not in plain
    (when,) = edge_line(text, "cmd", "watch")
    assert "style=dotted" in when and 'label=" when "' in when
    assert "when has_failed(&#39;cmd&#39;)" in node_attrs(text, "watch") or "when has_failed('cmd')" in node_attrs(text, "watch")
    assert graph.to_dot(plan_of(*nodes)) == text  # deterministic


def test_states_colour_nodes_and_count_attempts():
    nodes = [Node(n, "Command", command="true") for n in ("ok", "bad", "skip", "never")]
    states = {
        "ok": {"status": "succeeded", "attempts": 1, "reason": None},
        "bad": {"status": "failed", "attempts": 3, "reason": "exit code 2"},
        "skip": {"status": "skipped", "attempts": 0, "reason": "upstream bad failed"},
    }
    text = graph.to_dot(plan_of(*nodes), states)
    assert 'fillcolor="#c8e6c9"' in node_attrs(text, "ok") and "succeeded · 1 attempt<" in node_attrs(text, "ok")
    assert 'fillcolor="#ffcdd2"' in node_attrs(text, "bad") and "failed · 3 attempts" in node_attrs(text, "bad")
    assert "exit code 2" in node_attrs(text, "bad")
    assert 'fillcolor="#eeeeee"' in node_attrs(text, "skip") and "upstream bad failed" in node_attrs(text, "skip")
    assert 'fillcolor="#ffffff"' in node_attrs(text, "never") and "not reached" in node_attrs(text, "never")


@needs_dot
def test_multiline_description_is_valid_dot():
    """1.x wrote multi-line descriptions into a DOT comment and every example broke."""
    node = Node("a", "Manual", description='first line\nsecond "line" \\ with <tags> & {braces}\n// not a comment */')
    text = graph.to_dot(plan_of(node, title='title "with"\nnewline \\'))
    svg = subprocess.run([DOT, "-Tsvg"], input=text.encode(), capture_output=True, check=True).stdout
    texts = svg_nodes(svg_root(svg.decode()))["a"]
    assert 'second "line" \\ with <tags> & {braces}' in texts
    assert "// not a comment */" in texts


ENTITY_LOOKALIKES = ["&;", "&#;", "&#x;", "&bogus;", "&lt;", "&amp;", "a&b;c", "R&D"]


@needs_dot
def test_ids_that_look_like_xml_entities_reach_the_svg_as_written():
    """`dot` copies an `&` that starts something shaped like an entity (`&;`, `&nbsp;`) into
    the SVG as it is: unescaped, it made a title that no XML parser reads, or a different text."""
    nodes = [Node(node_id, "Manual", [Dep(ENTITY_LOOKALIKES[0])] if i else []) for i, node_id in enumerate(ENTITY_LOOKALIKES)]
    text = graph.to_dot(plan_of(*nodes, title="&bogus; & &;"))
    svg = subprocess.run([DOT, "-Tsvg"], input=text.encode(), capture_output=True, check=True).stdout
    root = svg_root(svg.decode())
    assert sorted(svg_nodes(root)) == sorted(ENTITY_LOOKALIKES)
    tooltips = [a.get("{http://www.w3.org/1999/xlink}title") for a in root.iter(SVG + "a")]
    assert "&#; depends on &;" in tooltips and "R&D depends on &;" in tooltips


# -- property: any text gives DOT that `dot` accepts -------------------------------------------------

PIECES = st.one_of(
    st.sampled_from(list('"\\\n\r\t{}[]<>&;:=,-/*#%$\'`|!?@^~ ')),
    st.sampled_from(["\\n", "\\N", "\\G", "\\l", '\\"', "]]>", "<BR/>", "&amp;", "<<", ">>", "\x00", "\x1b", "\ufffe"]),
    st.characters(),
)
TEXT = st.lists(PIECES, max_size=15).map("".join)
# short enough never to be cut: at most 60 characters on at most 3 lines
DESCRIPTION = TEXT.filter(lambda t: len(t) <= 60 and t.count("\n") + t.count("\r") <= 2)
IDS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
STATUSES = st.sampled_from([None, "succeeded", "failed", "skipped", "running", "interrupted"])


def nonspace(text):
    return "".join(c for c in text if not c.isspace())


@st.composite
def plans(draw):
    ids = draw(st.lists(IDS, min_size=1, max_size=4, unique_by=graph.clean))
    nodes, states = [], {}
    for index, node_id in enumerate(ids):
        kind = draw(st.sampled_from(["Manual", "Command", "Function"]))
        earlier = ids[:index]
        deps = [Dep(n, draw(st.sampled_from(["plain", "success", "failure", "done"]))) for n in earlier if draw(st.booleans())]
        when = draw(st.one_of(st.none(), TEXT))
        fields = {
            "name": draw(st.one_of(st.none(), TEXT)),
            "description": draw(DESCRIPTION),
            "when": when,
            "when_nodes": tuple(n for n in earlier if draw(st.booleans())) if when is not None else (),
            "critical": draw(st.one_of(st.booleans(), TEXT)),
            "timeout": draw(st.one_of(st.none(), st.integers(1, 999), TEXT)),
        }
        if draw(st.booleans()) and fields["critical"] is False:
            fields["skip"] = True
            fields["skip_reason"] = draw(st.one_of(st.none(), TEXT))
        if kind == "Command":
            fields["command"] = draw(TEXT)
        elif kind == "Function":
            fields["plugin"] = draw(TEXT)
            fields["function"] = draw(TEXT)
            fields["function_params"] = draw(st.dictionaries(TEXT, st.one_of(TEXT, st.integers(), st.booleans()), max_size=3))
        else:
            fields["prompt_after"] = draw(st.one_of(st.none(), TEXT))
        nodes.append(Node(node_id, kind, deps, **fields))
        status = draw(STATUSES)
        if status:
            states[node_id] = {"status": status, "attempts": draw(st.integers(0, 5)), "reason": draw(st.one_of(st.none(), TEXT))}
    with_states = draw(st.booleans())
    return Plan({"title": draw(TEXT)}, {}, {}, nodes), (states if with_states else None)


@needs_dot
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plans())
def test_any_text_gives_dot_that_dot_accepts(case):
    plan, states = case
    text = graph.to_dot(plan, states)
    result = subprocess.run([DOT, "-Tsvg"], input=text.encode("utf-8"), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace") + "\n" + text
    root = svg_root(result.stdout.decode("utf-8"))
    drawn = svg_nodes(root)
    assert len(drawn) == len(plan.nodes)
    # the description reaches the picture intact (short enough never to be cut)
    everything = nonspace("".join("".join(texts) for texts in drawn.values()))
    for node in plan.nodes:
        assert nonspace(graph.clean(node.description)) in everything


# -- --run: colours from the state database ---------------------------------------------------------

RUN_BOOK = '''
[runbook]
title = "Colours"
description = "A run with every state"
version = "1.0.0"
author = "tests"
created_at = 2025-01-01T00:00:00Z

[first]
type = "Command"
description = """Says "hi" \\\\ twice
on two lines <ok> & done"""
command_name = "echo hi"
depends_on = []

[flaky]
type = "Command"
command_name = "echo failing >&2; exit 3"
retries = 1
depends_on = ["first"]

[recover]
type = "Command"
command_name = "echo recovering"
depends_on = ["flaky:failure"]

[celebrate]
type = "Command"
command_name = "echo yay"
depends_on = ["flaky:success"]

[disabled]
type = "Manual"
description = "never"
skip = true
depends_on = ["first"]

[boom]
type = "Command"
command_name = "exit 5"
depends_on = ["recover"]

[later]
type = "Command"
command_name = "echo later"
depends_on = ["boom"]
'''

NODE_LINE = re.compile(r'^  "(?P<id>[^"]+)" \[label=<(?P<label>.*)>, shape=.*fillcolor="(?P<fill>#[0-9a-f]+)"')


def parse_nodes(dot_text):
    found = {}
    for line in dot_text.splitlines():
        match = NODE_LINE.match(line)
        if match:
            label = re.sub(r"<[^>]+>", "\n", match.group("label"))
            found[match.group("id")] = (match.group("fill"), [l for l in label.split("\n") if l])
    return found


@pytest.fixture
def recorded_run(tmp_path):
    book = tmp_path / "colours.playbook.toml"
    book.write_text(RUN_BOOK)
    db = tmp_path / "state.db"
    result = playbook(["run", book, "--state-path", db], cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr  # boom failed, nothing handles it
    return book, db


def test_run_colours_match_the_database(recorded_run, tmp_path):
    book, db = recorded_run
    result = playbook(["view-dag", book, "--run", "1", "--state-path", db, "--format", "dot", "-o", "run.dot"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "differs" not in result.stderr
    drawn = parse_nodes((tmp_path / "run.dot").read_text("utf-8"))
    with Store(db) as store:
        final = store.final_attempts(1)
        rows = store.attempts(1)
    assert set(drawn) == {"first", "flaky", "recover", "celebrate", "disabled", "boom", "later"}
    for node_id, (fill, label) in drawn.items():
        row = final.get(node_id)
        status = row["status"] if row else None
        assert fill == graph.STATE_STYLE[status][0], node_id
        ran = sum(1 for r in rows if r["node_id"] == node_id and r["status"] != "skipped")
        words = graph.STATE_STYLE[status][2]
        if status in ("succeeded", "failed"):
            assert "%s · %d attempt%s" % (words, ran, "" if ran == 1 else "s") in label, (node_id, label)
        else:
            assert words in label, (node_id, label)
        if status == "skipped" and row["skip_reason"] != "disabled (skip = true)":
            assert any(row["skip_reason"][:30] in line for line in label), (node_id, label)
    # what the database says, spelled out
    assert drawn["flaky"][0] == "#ffcdd2" and "failed · 2 attempts" in drawn["flaky"][1]
    assert "exit code 3" in drawn["flaky"][1]
    assert drawn["recover"][0] == "#c8e6c9"
    assert drawn["celebrate"][0] == "#eeeeee"
    assert any("condition not met" in line for line in drawn["celebrate"][1])
    assert drawn["later"][0] == "#ffffff" and "not reached" in drawn["later"][1]
    assert "run 1 · failed" in (tmp_path / "run.dot").read_text("utf-8")


@needs_dot
def test_run_picture_without_file_and_svg(recorded_run, tmp_path):
    _, db = recorded_run
    result = playbook(["view-dag", "--run", "1", "--state-path", db, "--no-open", "--format", "svg"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    svg = tmp_path / "colours-run1.svg"
    text = svg.read_text("utf-8")
    drawn = svg_nodes(svg_root(svg))
    assert "not reached" in drawn["later"] and "failed · 2 attempts" in drawn["flaky"]
    assert 'fill="#ffcdd2"' in text and 'fill="#c8e6c9"' in text


def test_run_draws_the_recorded_plan_and_notes_a_changed_file(recorded_run, tmp_path):
    book, db = recorded_run
    book.write_text(RUN_BOOK.replace('command_name = "echo later"', 'command_name = "echo changed"'))
    result = playbook(["view-dag", book, "--run", "1", "--state-path", db, "--format", "dot", "-o", "-"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "differs from the plan run 1 used" in result.stderr
    assert "echo later" in result.stdout and "echo changed" not in result.stdout


def test_run_errors(recorded_run, tmp_path):
    book, db = recorded_run
    result = playbook(["view-dag", book, "--run", "7", "--state-path", db, "--format", "dot"], cwd=tmp_path)
    assert result.returncode == 2 and "no run 7" in result.stderr
    result = playbook(["view-dag", "--run", "1", "--state-path", tmp_path / "nope.db", "--format", "dot"], cwd=tmp_path)
    assert result.returncode == 4 and "no state database" in result.stderr
    assert not (tmp_path / "nope.db").exists()


def test_run_states_from_rows():
    rows = [
        {"id": 1, "node_id": "a", "status": "failed", "exit_code": 1, "error": None},
        {"id": 2, "node_id": "a", "status": "failed", "exit_code": 1, "error": None},
        {"id": 3, "node_id": "a", "status": "skipped", "skip_reason": "skipped by the operator after it failed", "decision": "skip"},
        {"id": 4, "node_id": "b", "status": "succeeded", "decision": "set-status", "decided_by": "ann@h", "note": "done by hand"},
        {"id": 5, "node_id": "c", "status": "interrupted", "error": "interrupted by a signal"},
    ]
    states = graph.run_states(rows)
    assert states["a"] == {"status": "skipped", "attempts": 2, "reason": "skipped by the operator after it failed"}
    assert graph.state_words(states["a"]) == "skipped after 2 attempts"
    assert states["b"]["attempts"] == 0 and "ann@h" in states["b"]["reason"] and "done by hand" in states["b"]["reason"]
    assert states["c"] == {"status": "interrupted", "attempts": 1, "reason": "interrupted by a signal"}


# -- missing `dot`, viewers ------------------------------------------------------------------------


def test_missing_dot_is_one_clear_line(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    deploy = REPO / "examples" / "deploy.playbook.toml"
    result = playbook(["view-dag", deploy, "--no-open"], cwd=tmp_path, env={"PATH": str(empty)})
    assert result.returncode == 2  # a program it needs is missing (not a state or bundle problem)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "`dot` was not found" in line
    for hint in ("apt-get install graphviz", "brew install graphviz", "yum install graphviz"):
        assert hint in line
    assert not (tmp_path / "deploy.png").exists()
    # DOT text needs no Graphviz at all
    result = playbook(["view-dag", deploy, "--format", "dot"], cwd=tmp_path, env={"PATH": str(empty)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "deploy.dot").read_text("utf-8").startswith("digraph")


def test_help_documents_exit_codes():
    result = playbook(["view-dag", "--help"])
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "2 invalid input: runbook, variables, flags, configuration, or a program it needs is missing" in text
    assert "4 state or bundle problem" in text and "Without Graphviz's `dot`, --format dot still works" in text
    assert "--no-open" in text


@pytest.fixture
def fake_viewer(tmp_path):
    """A bin directory with `dot` and an `xdg-open` that records what it was asked to open."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    marker = tmp_path / "opened.txt"
    opener = bin_dir / "xdg-open"
    opener.write_text('#!/bin/sh\necho "$1" >> %s\n' % marker)
    opener.chmod(0o755)
    if DOT:
        (bin_dir / "dot").symlink_to(DOT)
    return bin_dir, marker


def wait_for(path, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return True
        time.sleep(0.05)
    return False


def opened_after(marker, then_run):
    """The pictures the fake viewer was asked to open, once the one `then_run` (a run that
    opens one) opens has been seen: a viewer of an earlier run would have been started before
    it, so waiting for the later one (no fixed sleep) tells whether the earlier one opened."""
    result = then_run()
    assert result.returncode == 0, result.stderr
    assert wait_for(marker)
    return marker.read_text().split()


@needs_dot
def test_no_open_never_opens(fake_viewer, tmp_path):
    bin_dir, marker = fake_viewer
    env = {"PATH": "%s:/bin:/usr/bin" % bin_dir, "DISPLAY": ":0"}
    checklist = REPO / "examples" / "checklist.playbook.toml"
    result = playbook(["view-dag", checklist, "--no-open", "-o", "first.png"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    # the same command without --no-open does open (so the check means something)
    opened = opened_after(marker, lambda: playbook(["view-dag", checklist, "-o", "second.png"], cwd=tmp_path, env=env))
    assert [Path(p).name for p in opened] == ["second.png"]


@needs_dot
def test_without_display_or_viewer_it_does_not_fail(fake_viewer, tmp_path):
    bin_dir, marker = fake_viewer
    checklist = REPO / "examples" / "checklist.playbook.toml"
    result = playbook(["view-dag", checklist], cwd=tmp_path, env={"PATH": "%s:/bin:/usr/bin" % bin_dir})
    assert result.returncode == 0, result.stderr
    assert "no display" in result.stderr and str(tmp_path / "checklist.png") in result.stderr
    assert_png(tmp_path / "checklist.png")
    env = {"PATH": "%s:/bin:/usr/bin" % bin_dir, "DISPLAY": ":0"}
    opened = opened_after(marker, lambda: playbook(["view-dag", checklist, "-o", "shown.png"], cwd=tmp_path, env=env))
    assert [Path(p).name for p in opened] == ["shown.png"]  # never checklist.png (no display)
    # a display but no viewer program: still fine
    only_dot = tmp_path / "onlydot"
    only_dot.mkdir()
    (only_dot / "dot").symlink_to(DOT)
    result = playbook(["view-dag", checklist, "-o", "x.png"], cwd=tmp_path, env={"PATH": str(only_dot), "DISPLAY": ":0"})
    assert result.returncode == 0, result.stderr
    assert "xdg-open was not found" in result.stderr
    assert_png(tmp_path / "x.png")
