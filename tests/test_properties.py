"""Property tests (hypothesis) for the resolver and the TOML front end.

- Random DAGs, declared in a random order: every node comes after all its upstream nodes, the
  order is deterministic, and it is the declaration-order-first topological order.
- A planted cycle is always reported, with a path of real "depends on" edges that starts and
  ends with the same node.
- Random TOML-ish documents never make the compiler raise anything but CompileError: also with
  TOML dates next to dotted keys up to 1,200 levels deep, strings of up to a megabyte, and
  catastrophic-backtracking patterns with long values.
"""

import heapq
import json
import math
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playbook.compiler import source
from playbook.compiler.plan import compile_file, compile_source
from playbook.compiler.source import CompileError
from playbook.runtime.variables import Sources

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SUFFIXES = ["", ":success", ":failure", ":done"]
WHEN_FUNCTIONS = ["has_succeeded", "has_failed", "has_run", "is_skipped"]


# -- random DAGs ---------------------------------------------------------------------------------
@st.composite
def dags(draw, max_nodes=60):
    """(count, edges, when_edges, declaration order); edges go from a node to an earlier index.

    The structure comes from a drawn seed (fast to generate); hypothesis still shrinks the
    node count and the seed.
    """
    count = draw(st.integers(min_value=1, max_value=max_nodes))
    rng = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    density = rng.choice([0.0, 0.05, 0.15, 0.4])
    edges = {}
    when_edges = {}
    for j in range(count):
        earlier = [i for i in range(j) if rng.random() < density][:6]
        edges[j] = [(i, rng.choice(SUFFIXES)) for i in earlier]
        whens = [i for i in range(j) if rng.random() < density / 4][:2]
        when_edges[j] = [(i, rng.choice(WHEN_FUNCTIONS)) for i in whens]
    order = list(range(count))
    if draw(st.booleans()):
        rng.shuffle(order)
    else:
        order.reverse()
    return count, edges, when_edges, order


def name(i):
    return "n%d" % i


def render_dag(count, edges, when_edges, order):
    parts = ['[runbook]\ntitle = "random dag"\n']
    for j in order:
        deps = ", ".join('"%s%s"' % (name(i), suffix) for i, suffix in edges[j])
        parts.append('\n[%s]\ntype = "Manual"\ndepends_on = [%s]\n' % (name(j), deps))
        if when_edges[j]:
            expression = " or ".join("%s('%s')" % (fn, name(i)) for i, fn in when_edges[j])
            parts.append('when = "%s"\n' % expression)
    return "".join(parts)


def upstream_of(edges, when_edges):
    return {name(j): {name(i) for i, _ in edges[j]} | {name(i) for i, _ in when_edges[j]} for j in edges}


def reference_order(upstream, declared):
    """Kahn's algorithm, ties broken by declaration index: the order the design promises."""
    index = {n: k for k, n in enumerate(declared)}
    pending = {n: len(ups) for n, ups in upstream.items()}
    down = {n: [] for n in upstream}
    for n, ups in upstream.items():
        for up in ups:
            down[up].append(n)
    ready = [index[n] for n in declared if pending[n] == 0]
    heapq.heapify(ready)
    result = []
    while ready:
        n = declared[heapq.heappop(ready)]
        result.append(n)
        for d in down[n]:
            pending[d] -= 1
            if pending[d] == 0:
                heapq.heappush(ready, index[d])
    return result


@SETTINGS
@given(dags())
def test_random_dag_order_respects_every_dependency(dag):
    count, edges, when_edges, order = dag
    text = render_dag(*dag)
    plan = compile_source(source.parse(text, "dag.toml")).plan
    got = [n.id for n in plan.nodes]
    assert sorted(got) == sorted(name(i) for i in range(count))
    position = {node_id: k for k, node_id in enumerate(got)}
    upstream = upstream_of(edges, when_edges)
    for node in plan.nodes:
        assert set(node.upstream()) == upstream[node.id]
        for up in upstream[node.id]:
            assert position[up] < position[node.id], (up, node.id)
    assert got == reference_order(upstream, [name(j) for j in order])
    again = compile_source(source.parse(text, "dag.toml")).plan
    assert again.dumps() == plan.dumps()


@settings(max_examples=60, deadline=None)
@given(dags(max_nodes=40))
def test_random_dag_declared_in_order_runs_in_declaration_order(dag):
    count, edges, when_edges, _ = dag
    text = render_dag(count, edges, when_edges, list(range(count)))
    plan = compile_source(source.parse(text, "dag.toml")).plan
    assert [n.id for n in plan.nodes] == [name(i) for i in range(count)]


@st.composite
def dags_with_cycle(draw):
    count, edges, when_edges, order = draw(dags(max_nodes=40).filter(lambda d: d[0] >= 2))
    length = draw(st.integers(min_value=2, max_value=min(count, 8)))
    rng = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    cycle = rng.sample(range(count), length)
    as_when = draw(st.booleans())
    for k, here in enumerate(cycle):
        there = cycle[(k + 1) % length]
        if as_when and k == 0:
            when_edges[here] = [e for e in when_edges[here] if e[0] != there] + [(there, "has_succeeded")]
        elif all(i != there for i, _ in edges[here]):
            edges[here] = edges[here] + [(there, rng.choice(SUFFIXES))]
    return count, edges, when_edges, order


@SETTINGS
@given(dags_with_cycle())
def test_planted_cycle_is_reported_with_a_real_path(dag):
    count, edges, when_edges, order = dag
    text = render_dag(*dag)
    try:
        compile_source(source.parse(text, "cycle.toml"))
    except CompileError as exc:
        errors = [d for d in exc.diagnostics if d.severity == "error"]
    else:
        raise AssertionError("a cycle was not reported")
    cycles = [d for d in errors if d.message.startswith("dependency cycle: ")]
    assert len(cycles) == 1, [d.format() for d in errors]
    (diag,) = cycles
    assert diag.line and diag.line > 1
    path = diag.message[len("dependency cycle: "):].split(" -> ")
    assert len(path) >= 3
    assert path[0] == path[-1]
    assert len(set(path[:-1])) == len(path) - 1  # a simple cycle
    upstream = upstream_of(edges, when_edges)
    for here, there in zip(path, path[1:]):
        assert there in upstream[here], "%s does not depend on %s" % (here, there)


# -- random documents ------------------------------------------------------------------------------
NODE_KEYS = [
    "type", "name", "description", "depends_on", "when", "skip", "critical", "timeout", "prompt_before",
    "prompt_after", "retries", "retry_delay", "command_name", "interactive", "shell", "env", "cwd",
    "plugin", "function", "function_params", "plugin_config", "prompt", "function_name", "command",
]
RUNBOOK_KEYS = ["title", "description", "version", "author", "created_at", "plugin_config", "shell"]
SPEC_KEYS = ["default", "required", "type", "choices", "min", "max", "pattern", "description", "secret"]
SNIPPETS = [
    "{{ A }}", "{{ B | raw }}", "{{ A ~ B }}", "{% if A %}x{% endif %}", "{{ ''.__class__ }}", "{{",
    "}}", "{%", "has_succeeded('n0')", "has_failed('n1')", "previous_node('n0').exit_code == 0",
    "A == 'x'", "not B", "n0", "n1:failure", "n0:done", "^", "*", "Manual", "Command", "Function",
    "python", "notify", "sleep", "echo", "show", "int", "str", "bool", "list", "dict", "float",
    "${HOME}", "#!/bin/sh\necho hi", "undefined_fn()", "range(3)", "x:maybe", "",
]
KEY_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "_- .:\"'é", min_size=1, max_size=10)


def toml_key(key):
    if key and all(c in string.ascii_letters + string.digits + "_-" for c in key):
        return key
    return toml_string(key)


def toml_string(text):
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append("\\u%04x" % code)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join("%s = %s" % (toml_key(k), toml_value(v)) for k, v in value.items()) + " }"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(value)


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SNIPPETS),
    st.text(max_size=20),
    st.dates(min_value=__import__("datetime").date(1000, 1, 1)),
    st.datetimes(min_value=__import__("datetime").datetime(1000, 1, 1)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(NODE_KEYS + SPEC_KEYS), KEY_TEXT), inner, max_size=4),
    ),
    max_leaves=12,
)


def table(keys):
    return st.dictionaries(st.one_of(st.sampled_from(keys), KEY_TEXT), values, max_size=8)


# Plausible values per field, so that documents get past the schema into the resolver, the
# template checks, baking and the plugin checks; random values and random keys stay in the mix.
NODE_IDS = ["n0", "n1", "n2", "a"]
TEXTS = st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=12))
SMALL_INTS = st.integers(min_value=-3, max_value=100)
NUMBERS = st.one_of(SMALL_INTS, st.floats(allow_nan=True, allow_infinity=True))
PLAUSIBLE_FIELDS = {
    "name": TEXTS,
    "description": TEXTS,
    "depends_on": st.one_of(
        st.lists(st.sampled_from(NODE_IDS + ["n0:failure", "n1:success", "n2:done", "^", "*", "x:maybe", "ghost"]), max_size=3),
        st.sampled_from(NODE_IDS + ["^", "*"]),
    ),
    "when": st.sampled_from(
        ["has_succeeded('n0')", "has_failed('n1') or A == 'x'", "{{ B > 1 }}", "not A", "previous_node('n2').exit_code == 0",
         "has_run(n0)", "is_skipped('a')", "undefined_fn()", "{{ A }} {{ B }}", "C", "{{", "true", ""]
    ),
    "skip": st.booleans(),
    "critical": st.one_of(st.booleans(), st.sampled_from(["{{ A == 'x' }}", "yes", "maybe", "{{ C }}"])),
    "timeout": st.one_of(NUMBERS, st.sampled_from(["{{ B }}", "10", "soon", "{{ B * 0 }}"])),
    "prompt_before": TEXTS,
    "prompt_after": TEXTS,
    "retries": SMALL_INTS,
    "retry_delay": NUMBERS,
    "command_name": TEXTS,
    "interactive": st.booleans(),
    "shell": st.sampled_from(["/bin/sh", "bash", ""]),
    "env": st.dictionaries(st.sampled_from(["K", "PATH", "X Y"]), st.one_of(TEXTS, SMALL_INTS, st.booleans()), max_size=2),
    "cwd": TEXTS,
    "plugin": st.sampled_from(["python", "echo", "slack", "pythn", ""]),
    "function": st.sampled_from(["notify", "sleep", "throw", "show", "nope"]),
    "function_params": st.dictionaries(
        st.sampled_from(["message", "seconds", "i", "f", "b", "l", "d", "s", "zzz"]),
        st.one_of(st.sampled_from(SNIPPETS), NUMBERS, st.booleans(), st.lists(SMALL_INTS, max_size=2)),
        max_size=3,
    ),
    "plugin_config": st.dictionaries(st.sampled_from(["token", "url"]), TEXTS, max_size=2),
}
TYPE_KEYS = {
    "Manual": ["name", "description", "depends_on", "when", "skip", "critical", "timeout", "prompt_before",
               "prompt_after", "retries", "retry_delay"],
}
TYPE_KEYS["Command"] = TYPE_KEYS["Manual"] + ["command_name", "interactive", "shell", "env", "cwd"]
TYPE_KEYS["Function"] = TYPE_KEYS["Manual"] + ["plugin", "function", "function_params", "plugin_config"]


def field_value(key, clean):
    plausible = PLAUSIBLE_FIELDS.get(key)
    if plausible is None:
        return values
    return plausible if clean else st.one_of(plausible, plausible, plausible, values)


def typed_node(node_type, clean):
    keys = TYPE_KEYS[node_type] + ([] if clean else ["command_name", "plugin", "function"])
    return st.fixed_dictionaries({"type": st.just(node_type)}, optional={k: field_value(k, clean) for k in keys})


NODE_TYPES = st.sampled_from(["Manual", "Command", "Function"])
node_tables = st.one_of(
    NODE_TYPES.flatmap(lambda t: typed_node(t, clean=True)),
    NODE_TYPES.flatmap(lambda t: typed_node(t, clean=True)),
    NODE_TYPES.flatmap(lambda t: typed_node(t, clean=False)),
    st.fixed_dictionaries({"type": st.one_of(NODE_TYPES, values)}).flatmap(
        lambda base: table(NODE_KEYS).map(lambda extra: dict(base, **extra))
    ),
)
plausible_spec = st.fixed_dictionaries(
    {},
    optional={
        "default": st.one_of(st.sampled_from(["x", "y", 3, 0.5, True, "[1]"]), values),
        "type": st.one_of(st.sampled_from(["str", "int", "float", "bool", "list", "dict"]), values),
        "choices": st.one_of(st.lists(st.sampled_from(["x", "y", 1, 2]), max_size=3), values),
        "min": st.one_of(SMALL_INTS, values),
        "max": st.one_of(SMALL_INTS, values),
        "pattern": st.sampled_from(["[a-z]+", "x|y", "([", ".*"]),
        "required": st.booleans(),
        "secret": st.booleans(),
        "description": TEXTS,
    },
)
plausible_runbook = st.fixed_dictionaries(
    {"title": st.one_of(TEXTS, TEXTS, values)},
    optional={
        "description": TEXTS,
        "version": st.one_of(TEXTS, SMALL_INTS),
        "created_at": st.one_of(st.datetimes(min_value=__import__("datetime").datetime(1000, 1, 1)), TEXTS),
        "plugin_config": st.dictionaries(st.sampled_from(["python", "echo"]), st.one_of(st.dictionaries(st.sampled_from(["token"]), TEXTS), values), max_size=2),
        "shell": st.sampled_from(["/bin/bash", "sh"]),
    },
)

documents = st.fixed_dictionaries(
    {
        "runbook": st.one_of(plausible_runbook, plausible_runbook, table(RUNBOOK_KEYS), values),
        "variables": st.one_of(
            st.dictionaries(st.sampled_from(["A", "B", "C", "bad-name"]), st.one_of(plausible_spec, values, table(SPEC_KEYS)), max_size=4),
            values,
        ),
        "nodes": st.dictionaries(st.one_of(st.sampled_from(NODE_IDS), st.sampled_from(NODE_IDS), KEY_TEXT), node_tables, max_size=5),
    },
    optional={"top": values},
)


def render_document(doc):
    lines = []
    if "top" in doc:
        lines.append("top = %s" % toml_value(doc["top"]))
    for key in ("runbook", "variables"):
        value = doc[key]
        if isinstance(value, dict):
            lines.append("[%s]" % key)
            lines.extend("%s = %s" % (toml_key(k), toml_value(v)) for k, v in value.items())
        else:
            lines.insert(0, "%s = %s" % (key, toml_value(value)))
    for node_id, fields in doc["nodes"].items():
        if node_id in ("runbook", "variables", "top"):
            continue
        lines.append("[%s]" % toml_key(node_id))
        lines.extend("%s = %s" % (toml_key(k), toml_value(v)) for k, v in fields.items())
    return "\n".join(lines) + "\n"


supplied = st.dictionaries(st.sampled_from(["A", "B", "C", "D"]), st.sampled_from(["x", "1", "true", "[1]", '{"k": 1}', "; rm -rf /", ""]), max_size=3)


def compile_or_diagnose(text, cli=None, bake=False):
    """Only CompileError is acceptable; its diagnostics must be well formed."""
    try:
        compiled = compile_source(source.parse(text, "random.toml"), Sources(cli=cli or {}), bake=bake)
    except CompileError as exc:
        assert exc.diagnostics
        for diag in exc.diagnostics:
            assert diag.severity in ("error", "warning")
            assert diag.file == "random.toml"
            diag.format()
            json.dumps(diag.to_json())
        assert any(d.severity == "error" for d in exc.diagnostics)
        return None
    compiled.plan.dumps()  # a plan that compiled is always JSON
    return compiled


@pytest.mark.filterwarnings("ignore::FutureWarning")  # re.compile of random patterns
@SETTINGS
@given(documents, supplied, st.booleans())
def test_random_documents_raise_only_compile_errors(doc, cli, bake):
    compile_or_diagnose(render_document(doc), cli, bake)


VALID_BASE = """[runbook]
title = "base {{ A }}"

[variables]
A = { default = "x", choices = ["x", "y"] }
B = { type = "int", default = 3, min = 1 }

[n0]
type = "Command"
command_name = "echo {{ A }} {{ B }}"
timeout = "{{ B * 10 }}"

[n1]
type = "Function"
plugin = "python"
function = "notify"
function_params = {
    message = "hi {{ A }}",
}
depends_on = ["n0:failure"]
when = "has_failed('n0') and B > 1"
"""


@SETTINGS
@given(st.data())
def test_mutated_runbooks_raise_only_compile_errors(data):
    text = VALID_BASE
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(text)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = data.draw(st.one_of(st.sampled_from(['"', "'", "[", "]", "{", "}", "=", "\n", "#", ",", ".", "{{", "}}", ":", "\\", "\ufeff"]), st.text(max_size=3)))
        if action == "insert":
            text = text[:position] + piece + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + len(piece) + 1:]
        else:
            text = text[:position] + piece + text[position + 1:]
    compile_or_diagnose(text, data.draw(supplied), data.draw(st.booleans()))


# -- deep keys, dates, long strings ------------------------------------------------------------------
# Where a deep dotted key goes: (the table it is written in, or None for the top; key prefix).
DEEP_PLACES = [
    (None, ""), ("runbook", ""), ("runbook", "plugin_config.python."), ("variables", "Y.default."),
    ("n0", ""), ("n0", "function_params."), ("n1", "env."), ("n1", "plugin_config."),
]
DATES = ["2025-01-20", "2025-01-20T12:00:00Z", "12:30:00", "1979-05-27T00:32:00.999999-07:00"]
# (Not `when`: Jinja tokenizes an expression of a million quotes in linear but long time.)
LONG_FIELDS = ["title", "description", "command_name", "name", "prompt_after", "cwd"]
EVIL_PATTERNS = ["(a+)+$", "(a|aa)+$", "(.*a){10}$", "[a-z]+", r"(\w+\s?)*$"]


@st.composite
def deep_documents(draw):
    """A plausible runbook with a date and a dotted key 1 to 1,200 levels deep somewhere,
    sometimes with a deep table header too."""
    depth = draw(st.integers(min_value=1, max_value=1200))
    place, prefix = draw(st.sampled_from(DEEP_PLACES))
    value = draw(st.sampled_from(["1", '"x"', "[1, [2]]", "{ a = 1 }"] + DATES))
    tables = {
        None: [],
        "runbook": ['title = "deep"', "created_at = %s" % draw(st.sampled_from(DATES))],
        "variables": ['X = { type = "dict", default = {} }'],
        "n0": ['type = "Function"', 'plugin = "python"', 'function = "notify"', 'function_params.message = "m"'],
        "n1": ['type = "Command"', 'command_name = "echo {{ X }}"', "when = \"has_run('n0')\""],
    }
    tables[place].append(prefix + ".".join("k%d" % (i % 7) for i in range(depth)) + " = " + value)
    header_depth = draw(st.sampled_from([0, 0, 1, 50, 150]))
    if header_depth:
        tables[".".join(["t"] * header_depth)] = ["v = %s" % draw(st.sampled_from(DATES))]
    lines = list(tables.pop(None))
    for name, keys in tables.items():
        lines.append("[%s]" % name)
        lines.extend(keys)
    return "\n".join(lines) + "\n"


@SETTINGS
@given(deep_documents(), st.booleans())
def test_deep_keys_with_dates_raise_only_compile_errors(text, bake):
    compiled = compile_or_diagnose(text, bake=bake)
    if compiled is not None:
        compiled.plan.dumps()


@st.composite
def long_string_documents(draw):
    """Very long strings (up to 1 MB, with quotes, newlines and template braces) in fields,
    variable defaults and keys; long values supplied on the command line for a pattern."""
    size = draw(st.sampled_from([1000, 100_000, 1_000_000]))
    unit = draw(st.sampled_from(["a", "é", "{{", '\\"', "\\n", "x y ", "'"]))
    text = (unit * (size // len(unit) + 1))[:size]
    field = draw(st.sampled_from(LONG_FIELDS))
    quote = draw(st.sampled_from(["basic", "literal", "multi"]))
    if quote == "literal":
        literal = "'%s'" % text.replace("'", "x")
    elif quote == "multi":
        literal = '"""\n%s"""' % text.replace('"', "x")
    else:
        literal = '"%s"' % text.replace('"', "x")
    pattern = draw(st.sampled_from(EVIL_PATTERNS))
    key = draw(st.sampled_from(["k", '"%s"' % ("q" * min(size, 5000))]))
    doc = (
        '[runbook]\ntitle = "long"\ncreated_at = 2025-01-20\n\n[variables]\nV = { pattern = %s }\nW = { default = %s }\n\n'
        '[n0]\ntype = "Command"\ncommand_name = "echo {{ V }}"\n%s = %s\nenv = { %s = "1" }\n'
        % (toml_string(pattern), literal, field, literal, key)
    )
    # the value checked against the pattern: long, but short enough for a quick suite
    supplied = {"V": draw(st.sampled_from(["a" * 40 + "!", "a" * min(size, 20_000), text[:20_000]]))}
    return doc, supplied


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(long_string_documents(), st.booleans())
def test_very_long_strings_raise_only_compile_errors(document, bake):
    text, supplied = document
    compile_or_diagnose(text, supplied, bake)


TOKENS = list("[]{}=\"'.,#:\\\n abcn01_-%") + ["type", "runbook", "title", "{{", "}}", '"""', "'''", "= {", "Manual"]


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_random_text_raises_only_compile_errors(text):
    compile_or_diagnose(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_any_unicode_text_raises_only_compile_errors(text):
    compile_or_diagnose(text)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_file_raises_only_compile_errors(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("bytes") / "random.playbook.toml"
    path.write_bytes(raw)
    try:
        compile_file(str(path), display="random.toml")
    except CompileError as exc:
        assert exc.diagnostics
