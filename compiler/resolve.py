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


from playbook.runtime import conditions, templating
from playbook.runtime.plan import DEP_KINDS, TEMPLATED_FIELDS, Dep, Node
from playbook.runtime.suggest import did_you_mean

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Container, Iterable, Iterator, Mapping

if TYPE_CHECKING:
    from .schema import Runbook
    from .source import Source

TOML_KEY = {"command": "command_name"}  # where a node field lives in the file
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
        node.output_nodes = tuple(_output_nodes(source, node, index, known))
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


def _failure_checks(nodes: Iterable[Node]) -> Iterator[tuple[str, str]]:
    for node in nodes:
        if node.when is not None:
            for function, arg in _calls_cached(node.when):
                if function == "has_failed" and arg is not None:
                    yield arg, node.id


_CALLS: dict[str, list[tuple[str, Any]]] = {}


def _calls_cached(expression: str) -> list[tuple[str, Any]]:
    if expression not in _CALLS:
        try:
            ast = templating.parse("{{ %s }}" % expression)
            _CALLS[expression] = templating.calls(ast, conditions.NODE_FUNCTIONS)
        except templating.TemplateError:
            _CALLS[expression] = []
    return _CALLS[expression]


def _deps(
    source: Source,
    node: Node,
    position: int,
    nodes: list[Node],
    index: Mapping[str, int],
    raw: Iterable[Any] | None,
    known: Container[str],
) -> list[Dep]:
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


def _when_nodes(source: Source, node: Node, index: Mapping[str, int], known: Container[str]) -> list[str]:
    return _named_nodes(source, node, "{{ %s }}" % node.when, "when", conditions.NODE_FUNCTIONS, index, known, [])


def _output_nodes(source: Source, node: Node, index: Mapping[str, int], known: Container[str]) -> list[str]:
    """Nodes whose outputs the node's templated fields read with previous_node(): ordering
    edges, like the nodes a `when` names."""
    found: list[str] = []
    for field in TEMPLATED_FIELDS:
        value = getattr(node, field)
        if not value:  # most fields of most nodes: nothing to look at
            continue
        for text in (value,) if isinstance(value, str) else templating.strings(value):
            if "previous_node" in text and templating.is_template(text):
                _named_nodes(source, node, text, TOML_KEY.get(field, field), ("previous_node",), index, known, found)
    return found


def _reading_field(source: Source, node: Node, writer: str, index: Mapping[str, int]) -> str:
    """The file key of the first field of `node` that reads previous_node(writer)."""
    for field in TEMPLATED_FIELDS:
        key = TOML_KEY.get(field, field)
        for text in templating.strings(getattr(node, field)):
            if templating.is_template(text) and writer in _named_nodes(source, node, text, key, ("previous_node",), index, (), []):
                return key
    return "depends_on"


def _named_nodes(
    source: Source,
    node: Node,
    text: str,
    key: str,
    functions: Container[str],
    index: Mapping[str, int],
    known: Container[str],
    found: list[str],
) -> list[str]:
    """Add to `found` the nodes that `text` (field `key` of `node`) names in calls of
    `functions`; report calls without a constant id, about the node itself or unknown nodes."""
    try:
        ast = templating.parse(text)
    except templating.TemplateError:
        return found  # reported with the other template checks
    where = "the %s of node %s" % (key, node.id)
    for function, arg in templating.calls(ast, functions):
        if arg is None or not isinstance(arg, str):
            source.error(
                "%s() in %s needs a node id in quotes, e.g. %s('build')" % (function, where, function), node.id, key
            )
            continue
        if arg == node.id:
            source.error("%s asks about the node itself (%s)" % (where, function), node.id, key)
            continue
        if arg not in index:
            if arg in known:
                continue
            source.error(
                "%s names unknown node %r in %s()" % (where, arg, function),
                node.id,
                key,
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
    by_id = {node.id: node for node in nodes}
    for i, (reader, writer) in enumerate(zip(cycle, cycle[1:])):
        node = by_id[reader]
        if writer in node.output_nodes and writer not in node.when_nodes and writer not in [d.node for d in node.deps]:
            key = _reading_field(source, node, writer, index)
            path = cycle[i + 1 :] + cycle[1 : i + 1]  # from the writer on to the reader
            source.error(
                "node %s reads previous_node(%r) in %s, but %s cannot have finished before %s: it waits for %s (%s)"
                % (reader, writer, key, writer, reader, reader, " -> ".join(path)),
                reader,
                key,
                hint="an output can only be read by a step that runs after it",
            )
            return list(nodes)
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
