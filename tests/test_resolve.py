"""compiler/resolve.py: dependency sugar, conditions, execution order, cycles (iterative)."""

from pathlib import Path

import pytest

from playbook.compiler import resolve, schema, source
from playbook.compiler.plan import compile_file, compile_source
from playbook.compiler.source import CompileError
from playbook.runtime.plan import Dep

GOOD = Path(__file__).resolve().parent / "fixtures" / "good"
HEAD = '[runbook]\ntitle = "t"\n'


def manual(node_id, depends_on=None, when=None):
    text = '\n[%s]\ntype = "Manual"\n' % node_id
    if depends_on is not None:
        text += "depends_on = %s\n" % depends_on
    if when is not None:
        text += 'when = "%s"\n' % when
    return text


def plan_of(text):
    return compile_source(source.parse(text, "r.toml")).plan


def errors(text):
    with pytest.raises(CompileError) as info:
        compile_source(source.parse(text, "r.toml"))
    return [d for d in info.value.diagnostics if d.severity == "error"]


@pytest.fixture(scope="module")
def sugar():
    return compile_file(str(GOOD / "dependency-sugar.playbook.toml")).plan


def deps(plan, node_id):
    return [d.spec() for d in plan.by_id[node_id].deps]


def test_no_depends_on_means_the_node_declared_before(sugar):
    assert deps(sugar, "first") == []
    assert deps(sugar, "implicit") == ["first"]


def test_empty_list_means_no_dependency(sugar):
    assert deps(sugar, "none") == []


def test_caret_means_the_node_declared_before(sugar):
    assert deps(sugar, "caret") == ["none"]


def test_star_means_every_earlier_node(sugar):
    assert deps(sugar, "star") == ["first", "implicit", "none", "caret"]


def test_string_depends_on(sugar):
    assert deps(sugar, "as_string") == ["first"]


def test_suffixes(sugar):
    assert deps(sugar, "on_success") == ["first:success"]
    assert deps(sugar, "on_failure") == ["implicit:failure"]
    assert deps(sugar, "on_done") == ["none:done"]
    assert sugar.by_id["alternatives"].deps == [Dep("on_success", "success"), Dep("on_failure", "success")]


def test_nodes_named_in_when_are_ordering_edges(sugar):
    node = sugar.by_id["by_when"]
    assert node.deps == []
    assert list(node.when_nodes) == ["caret", "as_string"]
    assert node.upstream() == ["caret", "as_string"]


def test_handled_is_set_by_failure_done_and_has_failed(sugar):
    handled = {n.id for n in sugar.nodes if n.handled}
    # implicit:failure, none:done, has_failed('caret'); has_succeeded / :success do not count
    assert handled == {"implicit", "none", "caret"}


def test_caret_and_star_on_the_first_node_mean_nothing():
    plan = plan_of(HEAD + manual("a", '"^"') + manual("b", '[]') + manual("c", '["*"]'))
    assert [d.spec() for d in plan.by_id["a"].deps] == []
    assert [d.spec() for d in plan.by_id["c"].deps] == ["a", "b"]


def test_entries_are_trimmed_and_deduplicated():
    plan = plan_of(HEAD + manual("a", "[]") + manual("b", '[" a : failure ", "a", "a", "a:failure"]'))
    assert [d.spec() for d in plan.by_id["b"].deps] == ["a:failure", "a"]


def test_when_with_braces_is_stripped_and_ordering_follows_it():
    text = HEAD + manual("first", "[]", "{{ has_succeeded('later_node') }}") + manual("later_node", "[]")
    plan = plan_of(text)
    assert [n.id for n in plan.nodes] == ["later_node", "first"]
    assert plan.by_id["first"].when == "has_succeeded('later_node')"
    assert plan.by_id["first"].when_nodes == ("later_node",)


def test_runbook_written_in_order_runs_in_that_order():
    text = HEAD + "".join(manual("n%d" % i, "[]") for i in range(20))
    assert [n.id for n in plan_of(text).nodes] == ["n%d" % i for i in range(20)]


def test_ties_are_broken_by_declaration_order():
    # c and a are both ready after b; c was declared first
    text = HEAD + manual("c", '["b"]') + manual("a", '["b"]') + manual("b", "[]")
    assert [n.id for n in plan_of(text).nodes] == ["b", "c", "a"]


def test_previous_node_and_has_run_are_ordering_edges_too():
    text = HEAD + manual("x", "[]", "previous_node('y').exit_code == 0 and has_run('z')") + manual("y", "[]")
    text += manual("z", "[]")
    plan = plan_of(text)
    assert [n.id for n in plan.nodes] == ["y", "z", "x"]


def test_unknown_node_with_did_you_mean():
    (err,) = errors(HEAD + manual("deploy", "[]") + manual("notify", '["deplyo:success"]'))
    assert err.message == "node notify depends on unknown node 'deplyo'"
    assert err.hint == "did you mean 'deploy'?"


def test_every_unknown_node_is_reported():
    errs = errors(HEAD + manual("a", '["ghost", "ghost2:success"]'))
    assert sorted(e.message for e in errs) == [
        "node a depends on unknown node 'ghost'",
        "node a depends on unknown node 'ghost2'",
    ]


def test_self_dependency():
    (err,) = errors(HEAD + manual("a", '"a:failure"'))
    assert err.message == "node a depends on itself"


@pytest.mark.parametrize("suffix", ["maybe", "", "failed", "SUCCESS"])
def test_invalid_suffix(suffix):
    (err,) = errors(HEAD + manual("a", "[]") + manual("b", '["a:%s"]' % suffix))
    assert err.message == "invalid condition %r in %r (node b)" % (suffix, "a:" + suffix)
    assert "X:success, X:failure or X:done" in err.hint


def test_two_node_cycle_path():
    (err,) = errors(HEAD + manual("a", '["b"]') + manual("b", '["a"]'))
    assert err.message == "dependency cycle: a -> b -> a"


def test_three_node_cycle_path():
    (err,) = errors(HEAD + manual("a", '["b"]') + manual("b", '["c"]') + manual("c", '["a"]'))
    assert err.message == "dependency cycle: a -> b -> c -> a"


def test_cycle_through_implicit_dependency():
    # a waits for b explicitly; b (no depends_on) waits for a, the node declared before it
    (err,) = errors(HEAD + manual("a", '"b"') + manual("b"))
    assert err.message == "dependency cycle: a -> b -> a"


def test_cycle_behind_an_acyclic_prefix_names_only_the_cycle():
    text = HEAD + manual("start", "[]") + manual("x", '["start", "z"]') + manual("y", '["x"]')
    text += manual("z", '["y"]')
    (err,) = errors(text)
    assert err.message == "dependency cycle: x -> z -> y -> x"


def test_unknown_node_in_when():
    (err,) = errors(HEAD + manual("a", "[]", "has_failed('x')"))
    assert err.message == "the when of node a names unknown node 'x' in has_failed()"


def test_unknown_node_in_when_with_did_you_mean():
    (err,) = errors(HEAD + manual("build", "[]") + manual("a", "[]", "has_succeeded('biuld')"))
    assert err.hint == "did you mean 'build'?"


def test_find_cycle_follows_depends_on_edges():
    src = source.parse(HEAD + manual("a", '["c"]') + manual("b", '["a"]') + manual("c", '["b"]'), "c.toml")
    runbook = schema.check(src)
    resolve.resolve(src, runbook)
    (err,) = src.errors
    path = err.message.split(": ", 1)[1].split(" -> ")
    assert path[0] == path[-1]
    by_id = {n.id: n for n in runbook.nodes}
    for here, there in zip(path, path[1:]):
        assert there in by_id[here].upstream()


def test_reverse_chain_of_100000_nodes_validates():
    """1.x died with RecursionError on a 1,500-node reverse chain; ours is iterative."""
    count = 100_000
    parts = [HEAD]
    for i in range(count - 1, -1, -1):
        parts.append('[n%d]\ntype = "Manual"\ndepends_on = [%s]\n' % (i, '"n%d"' % (i - 1) if i else ""))
    plan = compile_source(source.parse("".join(parts), "chain.toml")).plan
    assert len(plan.nodes) == count
    assert plan.nodes[0].id == "n0"
    assert plan.nodes[-1].id == "n%d" % (count - 1)
    assert all(plan.nodes[i].id == "n%d" % i for i in range(0, count, 9973))
