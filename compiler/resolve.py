"""Dependencies: sugar, conditions, execution order and cycles. Iterative algorithms only.

- No `depends_on` → the node declared just before (1.x rule); `[]` → none.
- `"^"` → the node declared just before; `"*"` → every node declared before.
- `X`, `X:success`, `X:failure`, `X:done`.
- Nodes named in `when` (`has_succeeded('x')`, …) are ordering edges.
- Order: topological, ties broken by declaration order, so a runbook written in order runs
  in that order.
"""

from __future__ import annotations

import heapq

from typing import TYPE_CHECKING, Any

from playbook.runtime import conditions, templating
from playbook.runtime.plan import DEP_KINDS, Dep, Node
from playbook.runtime.suggest import did_you_mean

if TYPE_CHECKING:
    from .schema import Runbook
    from .source import Source

SUFFIXES = {"success": "success", "failure": "failure", "done": "done"}


def resolve(source: Source, runbook: Runbook) -> list[Node]:
    """Fill in each node's deps and when_nodes; return the nodes in execution order.

    Problems are reported on `source`; a runbook with a cycle returns declaration order.
    """
    nodes = runbook.nodes
    index = {node.id: i for i, node in enumerate(nodes)}
    known = set(index) | runbook.rejected  # rejected nodes were reported already
    for i, node in enumerate(nodes):
        node.deps = _deps(source, node, i, nodes, index, runbook.raw_deps.get(node.id), known)
        if node.when is not None:
            node.when = templating.strip_braces(node.when)
            node.when_nodes = tuple(_when_nodes(source, node, index, known))
    handled = set()
    for node in nodes:
        for dep in node.deps:
            if dep.on in ("failure", "done"):
                handled.add(dep.node)
    for node_id, _ in _failure_checks(nodes):
        handled.add(node_id)
    for node in nodes:
        node.handled = node.id in handled
    if source.errors:
        return list(nodes)
    return order(source, nodes, index)


def _failure_checks(nodes):
    for node in nodes:
        if node.when is not None:
            for function, arg in _calls_cached(node.when):
                if function == "has_failed" and arg is not None:
                    yield arg, node.id


_CALLS: dict[str, list[tuple[str, Any]]] = {}


def _calls_cached(expression):
    if expression not in _CALLS:
        try:
            ast = templating.parse("{{ %s }}" % expression)
            _CALLS[expression] = templating.calls(ast, conditions.NODE_FUNCTIONS)
        except templating.TemplateError:
            _CALLS[expression] = []
    return _CALLS[expression]


def _deps(source, node, position, nodes, index, raw, known):
    if raw is None:
        return [Dep(nodes[position - 1].id)] if position > 0 else []
    deps = []
    seen = set()
    for entry in raw:
        if not isinstance(entry, str):
            source.error("depends_on entries must be strings, not %r" % (entry,), node.id, "depends_on")
            continue
        entry = entry.strip()
        if entry == "^":
            targets = [nodes[position - 1].id] if position > 0 else []
            kind = "plain"
        elif entry == "*":
            targets = [n.id for n in nodes[:position]]
            kind = "plain"
        else:
            target, sep, suffix = entry.partition(":")
            target = target.strip()
            kind = "plain"
            if sep:
                suffix = suffix.strip()
                if suffix not in SUFFIXES:
                    close = did_you_mean(suffix, SUFFIXES, cutoff=0.5)
                    source.error(
                        "invalid condition %r in %r (node %s)" % (suffix, entry, node.id),
                        node.id,
                        "depends_on",
                        hint=(close + " " if close else "") + "use X, X:success, X:failure or X:done",
                    )
                    continue
                kind = SUFFIXES[suffix]
            if target == node.id:
                source.error("node %s depends on itself" % node.id, node.id, "depends_on")
                continue
            if target not in index:
                if target in known:
                    continue
                source.error(
                    "node %s depends on unknown node %r" % (node.id, target),
                    node.id,
                    "depends_on",
                    hint=did_you_mean(target, index),
                )
                continue
            targets = [target]
        for target in targets:
            dep = Dep(target, kind)
            if (target, kind) not in seen:
                seen.add((target, kind))
                deps.append(dep)
    assert all(d.on in DEP_KINDS for d in deps)
    return deps


def _when_nodes(source, node, index, known):
    try:
        ast = templating.parse("{{ %s }}" % node.when)
    except templating.TemplateError:
        return []  # reported with the other template checks
    found = []
    for function, arg in templating.calls(ast, conditions.NODE_FUNCTIONS):
        if arg is None or not isinstance(arg, str):
            source.error(
                "%s() in the when of node %s needs a node id in quotes, e.g. %s('build')" % (function, node.id, function),
                node.id,
                "when",
            )
            continue
        if arg == node.id:
            source.error("the when of node %s asks about the node itself (%s)" % (node.id, function), node.id, "when")
            continue
        if arg not in index:
            if arg in known:
                continue
            source.error(
                "the when of node %s names unknown node %r in %s()" % (node.id, arg, function),
                node.id,
                "when",
                hint=did_you_mean(arg, index),
            )
            continue
        if arg not in found:
            found.append(arg)
    return found


def order(source: Source, nodes: list[Node], index: dict[str, int]) -> list[Node]:
    """Kahn's algorithm with a heap on declaration index; reports a cycle with its path."""
    downstream: dict[str, list[str]] = {node.id: [] for node in nodes}
    pending = {}
    for node in nodes:
        ups = node.upstream()
        pending[node.id] = len(ups)
        for up in ups:
            downstream[up].append(node.id)
    ready = [index[n.id] for n in nodes if pending[n.id] == 0]
    heapq.heapify(ready)
    result = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        result.append(node)
        for down in downstream[node.id]:
            pending[down] -= 1
            if pending[down] == 0:
                heapq.heappush(ready, index[down])
    if len(result) == len(nodes):
        return result
    remaining = {node_id for node_id, count in pending.items() if count > 0}
    cycle = find_cycle(nodes, index, remaining)
    source.error(
        "dependency cycle: %s" % " -> ".join(cycle),
        cycle[0],
        "depends_on",
        hint="a node cannot (directly or indirectly) wait for itself",
    )
    return list(nodes)


def find_cycle(nodes: list[Node], index: dict[str, int], remaining: set[str]) -> list[str]:
    """A cycle among `remaining` nodes, as a path that starts and ends with the same id."""
    by_id = {node.id: node for node in nodes}
    start = min(remaining, key=lambda node_id: index[node_id])
    # Every remaining node has an upstream node that is also remaining: walk until we repeat.
    path: list[str] = []
    position: dict[str, int] = {}
    current = start
    while current not in position:
        position[current] = len(path)
        path.append(current)
        current = next(up for up in by_id[current].upstream() if up in remaining)
    # `current` depends on ... : the walk follows "depends on" edges, so print it that way.
    return path[position[current]:] + [current]
