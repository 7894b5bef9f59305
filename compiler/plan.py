"""Build the execution plan from a runbook file.

compile_file(path, sources, bake) runs the whole front end — source → schema → resolve → plan —
and returns a Compiled (plan, summary, warnings) or raises CompileError with every diagnostic.

- Every template and `when` expression is parsed and every name it uses is checked.
- Every templated command is read as the shell will read it (compiler/shell.py): the plan records
  where each `{{ }}` stands (`Node.command_quoting`); a value whose place is not certain is an
  error at its file:line:col.
- A variable that is used but not declared is allowed only when it is supplied, with a warning.
- With `bake=True`, supplied values are baked in (never secrets); fields whose variables are all
  known are rendered now, conditions that only depend on them are folded. Everything else stays a
  template for the host.
"""

from __future__ import annotations

import json
import os
import re

from playbook.runtime import conditions, templating
from playbook.runtime import variables as var_specs
from playbook.runtime.plan import TEMPLATED_FIELDS, Plan, file_stem, runbook_identity

from . import files as files_mod, resolve, schema, source as source_mod
from .source import CompileError
from playbook.runtime.suggest import did_you_mean

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import AbstractSet, Any, Callable, Iterable, Iterator, Mapping, TypeVar

    from playbook.runtime.plan import Node
    from playbook.runtime.plugins import FunctionSignature, Registry

    from .files import RunbookFile
    from .schema import Runbook
    from .source import Source

    T = TypeVar("T")

RUNBOOK_TEMPLATED = ("title", "description")
TOML_KEY = resolve.TOML_KEY  # where each node field lives in the TOML file, for messages


class Compiled:
    def __init__(
        self,
        plan: Plan,
        source: Source,
        runbook: Runbook,
        sources: var_specs.Sources | None = None,
        files: Iterable[RunbookFile] = (),
    ) -> None:
        self.files = list(files)  # the RunbookFiles of [runbook] files (compiler/files.py)
        self.sources = sources
        self.plan = plan
        self.source = source
        self.runbook = runbook
        self.warnings = source.warnings

    def summary(self) -> dict[str, Any]:
        plan = self.plan
        counts: dict[str, int] = {}
        for node in plan.nodes:
            counts[node.type] = counts.get(node.type, 0) + 1
        supplied = self.sources.names() if self.sources is not None else set()
        required = sorted(
            name
            for name, spec in plan.variables.items()
            if name not in plan.values
            and name not in supplied  # a secret given here is not baked, but it is given
            and var_specs.needs_value(spec)
        )
        title = plan.title
        if "title" in plan.runbook.get("templates", ()):
            defaults = {k: v["default"] for k, v in plan.variables.items() if "default" in v and not v.get("secret")}
            try:
                title = templating.render(title, dict(defaults, **plan.values))
            except templating.TemplateError:
                pass
        return {
            "file": self.source.display,
            "title": title,
            "nodes": len(plan.nodes),
            "node_types": counts,
            "variables": sorted(plan.variables),
            "baked": sorted(plan.values),
            "required_variables": required,
            "plugins": sorted({n.plugin for n in plan.nodes if n.plugin}),
        }


def compile_file(
    path: str,
    sources: var_specs.Sources | None = None,
    bake: bool = False,
    registry: Registry | None = None,
    display: str | None = None,
) -> Compiled:
    src = source_mod.read(path, display=display or source_mod.relative_display(path))
    return compile_source(src, sources, bake, registry)


def compile_source(
    src: Source, sources: var_specs.Sources | None = None, bake: bool = False, registry: Registry | None = None
) -> Compiled:
    # The compiler builds many small objects and frees none: the cyclic garbage collector would
    # only rescan them (it doubles the time of a 100,000-node runbook).
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        return _compile_source(src, sources, bake, registry)
    finally:
        if enabled:
            gc.enable()


def _compile_source(
    src: Source, sources: var_specs.Sources | None = None, bake: bool = False, registry: Registry | None = None
) -> Compiled:
    sources = sources or var_specs.Sources()
    runbook = schema.check(src)
    nodes = resolve.resolve(src, runbook)
    _check_skippable_outputs(src, nodes)
    specs = dict(runbook.variables)
    used = _check_names(src, runbook, nodes, specs, sources)
    _check_commands(src, runbook, nodes)
    runbook_files = files_mod.collect(src, runbook.meta.get("files"))
    values = _bake(src, specs, sources) if bake else {}
    for name, spec in sorted(specs.items()):
        if spec.get("secret") and "default" in spec:
            src.warning(
                "secret variable %s has a default in the runbook; plans and bundles never carry it, "
                "so it must be given where the runbook runs" % name,
                "variables",
                name,
                hint="remove the default and pass the value with --var, --vars-file or --vars-env",
            )
    if src.errors:
        raise CompileError(src.diagnostics)
    meta = dict(runbook.meta)
    meta["id"] = runbook_identity(runbook.meta, file_stem(src.path))
    meta_templates = []
    for key in RUNBOOK_TEMPLATED:
        text = meta.get(key)
        if templating.is_template(text):
            if used.get(("runbook", key), set()) <= set(values):
                meta[key] = _render(src, lambda text=text: templating.render(text, values), "runbook", key)
            else:
                meta_templates.append(key)
    if meta_templates:
        meta["templates"] = meta_templates
    plugin_config = runbook.plugin_config
    final_nodes = []
    for node in nodes:
        final_nodes.append(_bake_node(src, node, used, values, specs))
    _check_plugins(src, final_nodes, registry, specs)  # after baking: baked parameters are checked too
    if src.errors:
        raise CompileError(src.diagnostics)
    plan = Plan(
        runbook=meta,
        variables={k: _spec_for_plan(v) for k, v in sorted(specs.items()) if k not in values or v.get("secret")},
        values=values,
        nodes=final_nodes,
        source={"name": src.path.rsplit("/", 1)[-1], "sha256": src.sha256},
        plugin_config=plugin_config,
    )
    return Compiled(plan, src, runbook, sources, runbook_files)


def _spec_for_plan(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A spec as the plan keeps it: a secret's default is never copied into plans or bundles."""
    return {
        k: v
        for k, v in spec.items()
        if (k != "declared" or v is False) and not (k == "default" and spec.get("secret"))
    }


def _render(src: Source, fn: Callable[..., T], *path: str) -> T | None:
    try:
        return fn()
    except (templating.TemplateError, var_specs.VariableError) as exc:
        src.error("cannot render %s: %s" % (".".join(path), exc), *path)
        return None


def _field_templates(node: Node) -> Iterator[tuple[str, str]]:
    """(field, template text) for every templated string inside the node's fields."""
    for field in TEMPLATED_FIELDS:
        value = getattr(node, field)
        if value is None or value is False or value == "":
            continue
        if isinstance(value, str):
            if templating.is_template(value):
                yield field, value
            continue
        for text in templating.strings(value):
            if templating.is_template(text):
                yield field, text


def _check_skippable_outputs(src: Source, nodes: list[Node]) -> None:
    """A step that reads previous_node('x') of a step that may be skipped by design (a `when`,
    `skip`, or only conditional dependencies) reads '' (and exit_code None) when it was: warn,
    unless the reader runs only after x succeeded."""
    by_id = {node.id: node for node in nodes}
    for node in nodes:
        for writer in node.output_nodes:
            other = by_id.get(writer)
            if other is None:
                continue
            why = "its when" if other.when is not None else "skip = true" if other.skip else (
                "its conditional depends_on" if any(d.on != "plain" for d in other.deps) else None)
            guarded = any(d.node == writer and d.on == "success" for d in node.deps) or writer in node.when_nodes
            if why is None or guarded:
                continue
            key = resolve._reading_field(src, node, writer, {n.id: i for i, n in enumerate(nodes)})
            src.warning(
                "%s.%s reads previous_node(%r), which may be skipped (%s): then its stdout and stderr are '' and "
                "its exit_code is none" % (node.id, key, writer, why),
                node.id, key,
                hint="depend on %s:success, or test is_skipped(%r) in a when" % (writer, writer),
            )


def _check_names(
    src: Source,
    runbook: Runbook,
    nodes: list[Node],
    specs: dict[str, dict[str, Any]],
    sources: var_specs.Sources,
) -> dict[tuple[str, str], AbstractSet[str]]:
    """Parse every template; check the names it uses. Returns {(node, field): names}."""
    supplied = sources.names()
    # check() gives frozensets, and sets made by setdefault(…, set()) are updated in place: a value
    # type that allows both (a set or a frozenset) would not allow the update
    used: dict[tuple[str, str], Any] = {}
    undeclared: dict[str, list] = {}

    def check(text: str, path: tuple[str, ...], allowed: AbstractSet[str] = frozenset()) -> AbstractSet[str]:
        try:
            names, called = templating.analyze(text)
        except templating.TemplateError as exc:
            src.error("invalid template in %s: %s" % (".".join(path), exc), *path)
            return set()
        names = names - allowed
        called = called - allowed
        for name in sorted((names | called) & templating.RUN_TIME_NAMES):
            src.error(
                "%s in %s: only %s may use it (they are rendered when the step starts)"
                % (_shown_name(name), ".".join(path), templating.RUN_TIME_KEYS),
                *path,
            )
        names -= templating.RUN_TIME_NAMES
        called -= templating.RUN_TIME_NAMES
        for name in sorted(called - set(specs)):
            src.error(
                "unknown function %s() in %s" % (name, ".".join(path)),
                *path,
                hint="a when may call %s" % ", ".join(conditions.NODE_FUNCTIONS),
            )
        names -= called
        for name in names - set(specs):
            undeclared.setdefault(name, []).append(path)
        return names

    for key in RUNBOOK_TEMPLATED:
        text = runbook.meta.get(key)
        if templating.is_template(text):
            used[("runbook", key)] = check(text, ("runbook", key))
    for name, config in runbook.plugin_config.items():
        for text in templating.strings(config):
            if templating.is_template(text):
                used.setdefault(("runbook", "plugin_config"), set()).update(
                    check(text, ("runbook", "plugin_config", name))
                )
    node_functions = frozenset(conditions.NODE_FUNCTIONS)
    if "runbook_dir" in specs:
        src.error("runbook_dir is not a variable name a runbook may declare: Playbook provides it (the runbook's directory)", "variables", "runbook_dir")
    files = runbook.meta.get("files") or []
    for node in nodes:
        runtime = []
        for field, text in _field_templates(node):
            path = (node.id, TOML_KEY.get(field, field))
            if field in templating.RUN_TIME_FIELDS and not templating.RUN_TIME_NAMES.isdisjoint(set().union(*_analysis(text))):
                names = check(text, path, templating.RUN_TIME_NAMES)
                _check_outputs(src, text, path)
                if "runbook_dir" in templating.analyze(text)[0] and not files:
                    src.error(
                        "%s uses runbook_dir, but [runbook] files lists nothing: a bundle provides only the files listed there"
                        % ".".join(path),
                        *path,
                        hint='list the files the steps use: [runbook] files = ["scripts/"]',
                    )
                if field not in runtime:
                    runtime.append(field)
            else:
                names = check(text, path)
            used.setdefault((node.id, field), set()).update(names)
        node.runtime_templates = tuple(runtime)
        if node.when is not None and ("{{" in node.when or "}}" in node.when or "{%" in node.when):
            src.error(
                "the when of node %s must be one expression, written as \"{{ … }}\" or bare" % node.id,
                node.id,
                "when",
            )
        elif node.when is not None:
            used[(node.id, "when")] = check("{{ %s }}" % node.when, (node.id, "when"), node_functions)
            _check_outputs(src, "{{ %s }}" % node.when, (node.id, "when"))
    for name, paths in sorted(undeclared.items()):
        where = ", ".join(".".join(p) for p in paths[:3]) + (" …" if len(paths) > 3 else "")
        if name in supplied:
            src.warning(
                "variable %s is not declared in [variables] but was supplied; used in %s" % (name, where),
                *paths[0],
                hint="declare it: [variables] %s = { description = \"…\" }" % name,
            )
            specs[name] = var_specs.adhoc_spec()
        else:
            src.error(
                "undeclared variable %s used in %s" % (name, where),
                *paths[0],
                hint="declare it in [variables] (%s = { required = true }) or pass --var %s=…" % (name, name),
            )
    for name in sorted(supplied - set(specs)):
        src.warning("variable %s was supplied but the runbook does not use it" % name)
    return used


def _analysis(text: str) -> tuple[AbstractSet[str], AbstractSet[str]]:
    try:
        return templating.analyze(text)
    except templating.TemplateError:
        return frozenset(), frozenset()  # reported by check()


def _shown_name(name: str) -> str:
    return "%s()" % name if name == "previous_node" else name


def _check_outputs(src: Source, text: str, path: tuple[str, ...]) -> None:
    """previous_node('x') is followed by one of its fields (`.stdout`, ...): a misspelt field is
    an error here rather than when the step starts."""
    try:
        fields = templating.output_fields(templating.parse(text))
    except templating.TemplateError:
        return  # a template that does not parse is reported by check()
    for field in fields:
        if field not in conditions.PREVIOUS_NODE_FIELDS:
            src.error(
                "previous_node() has no field %r in %s" % (field, ".".join(path)),
                *path,
                hint=did_you_mean(field, conditions.PREVIOUS_NODE_FIELDS) or "its fields: %s" % ", ".join(conditions.PREVIOUS_NODE_FIELDS),
            )


def _check_commands(src: Source, runbook: Runbook, nodes: list[Node]) -> None:
    """Find where each `{{ }}` of every templated command stands (compiler/shell.py); the plan
    records it in `command_quoting`. A value whose place is not certain is an error. A value
    read from a secret variable is passed through the command's environment (shell.py)."""
    default_shell = runbook.meta.get("shell")
    secrets = frozenset(name for name, spec in runbook.variables.items() if spec.get("secret"))
    for node in nodes:
        for key in node.env or {}:
            if str(key).startswith(templating.SECRET_ENV_PREFIX):
                src.error(
                    "env of node %s: %s: the prefix %s is Playbook's own (the variables a command's secrets travel in)"
                    % (node.id, key, templating.SECRET_ENV_PREFIX), node.id, "env",
                )
    for node in nodes:
        if node.type != "Command" or not templating.is_template(node.command):
            continue
        from . import shell  # the shell analysis (and Jinja) load only for templated commands

        try:
            analysis = shell.analyse(node.command, node.shell or default_shell, secrets)
        except templating.TemplateError:
            continue  # reported by _check_names
        node.command_quoting = analysis.quoting
        if not analysis.problems:
            continue
        places = src.string_places((node.id, "command_name"), node.command)
        for problem in analysis.problems:
            line = col = None
            if places is not None:
                lines = node.command.split("\n")
                offset = problem.offset
                if offset is None:
                    offset = sum(len(text) + 1 for text in lines[: problem.line - 1])
                line, col = places[min(offset, len(places) - 1)]
            if problem.shown is None:
                message = "%s.command_name: %s" % (node.id, problem.message)
            else:
                message = "cannot quote %s in %s.command_name: %s" % (problem.shown, node.id, problem.message)
            src.error(message, node.id, "command_name", hint=problem.hint, line=line, col=col)


def _bake(src: Source, specs: Mapping[str, Mapping[str, Any]], sources: var_specs.Sources) -> dict[str, Any]:
    """Values supplied at compile time, coerced and checked; secrets are never baked."""
    values = {}
    for name in sorted(specs):
        found = sources.lookup(name)
        if found is None:
            continue
        raw, label = found
        spec = specs[name]
        try:
            value = var_specs.check(name, spec, var_specs.coerce(spec, raw, label))
        except var_specs.VariableError as exc:
            src.error("variable %s (from %s): %s" % (name, label, exc), "variables", name)
            continue
        if spec.get("secret"):
            src.warning(
                "secret variable %s is not baked into the plan; it must be given again where the runbook runs" % name,
                "variables",
                name,
            )
            continue
        values[name] = value
    return values


def _bake_node(
    src: Source,
    node: Node,
    used: Mapping[tuple[str, str], AbstractSet[str]],
    values: Mapping[str, Any],
    specs: Mapping[str, Mapping[str, Any]],
) -> Node:
    """Render what can be rendered now; list the fields that still need run-time variables."""
    known = set(values)
    pending = []
    changes = {}
    for field in TEMPLATED_FIELDS:
        names = used.get((node.id, field))
        if names is None or field in node.runtime_templates:
            continue  # not a template, or rendered when the step starts
        if names <= known:
            rendered = _render(
                src, lambda f=field: templating.render_field(node, f, values), node.id, TOML_KEY.get(field, field)
            )
            changes[field] = rendered
        else:
            pending.append(field)
    if "command" not in pending and "command" not in node.runtime_templates:
        changes["command_quoting"] = ()  # rendered now (or never a template): nothing to quote later
    if node.when is not None:
        names = used.get((node.id, "when"), set())
        if not node.when_nodes and names <= known:
            try:
                value = conditions.evaluate_when(node.when, values, {})
            except conditions.ConditionError as exc:
                src.error("the when of node %s cannot be evaluated: %s" % (node.id, exc), node.id, "when")
                value = None
            if value is not None:
                changes["when_value"] = value
                if not value:
                    shown = ", ".join(
                        "%s=%s" % (n, var_specs.show(specs.get(n, {}), values[n])) for n in sorted(names)
                    )
                    changes["skip_reason"] = "condition: %s is false%s" % (
                        node.when,
                        " (%s)" % shown if shown else "",
                    )
    if node.skip and not node.skip_reason:
        changes["skip_reason"] = "disabled (skip = true)"
    changes["templates"] = tuple(pending)
    for key, value in changes.items():
        setattr(node, key, value)
    return node


# A value of each variable type that a parameter of another type must accept to take it.
_SAMPLES: dict[str, list] = {"bool": [True, False], "int": [1], "float": [0.5], "list": [[]], "dict": [{}]}


def _typed_params(
    signature: FunctionSignature,
    params: Mapping[str, Any],
    templated: Iterable[str],
    specs: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """A templated parameter that is one variable (`"{{ ENABLED }}"`) whose type is known: its
    values must convert to the parameter's declared type, checked now rather than half-way
    through a run. A variable's default and choices are tried; for a typed variable without
    them, a value of its type."""
    from playbook.runtime import plugins

    errors = []
    declared = signature.parameters or {}
    for name in templated:
        value = params.get(name)
        pdef = declared.get(name)
        match = re.match(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$", value) if isinstance(value, str) else None
        variable = match.group(1) if match else ""
        spec = specs.get(variable)
        if pdef is None or spec is None or spec.get("secret"):
            continue
        kind = spec.get("type", "str")
        samples: list = [spec["default"]] if "default" in spec else []
        samples += list(spec.get("choices") or [])
        if not samples:
            samples = list(_SAMPLES.get(kind, []))
        for sample in samples:
            try:
                plugins.convert_param(pdef, sample)
            except plugins.PluginError as exc:
                errors.append(
                    "parameter %r takes %s, but it is given %s (%s, e.g. %s): %s"
                    % (name, pdef.type, variable, kind, json.dumps(sample), exc)
                )
                break
    return errors


def _check_plugins(
    src: Source, nodes: list[Node], registry: Registry | None, specs: Mapping[str, Mapping[str, Any]]
) -> None:
    functions = [n for n in nodes if n.type == "Function"]
    if not functions:
        return
    from playbook.runtime import plugins

    registry = registry or plugins.Registry()
    missing: dict[str, list] = {}
    for node in functions:
        assert node.plugin is not None and node.function is not None  # schema.py requires both of a Function node
        if node.plugin in missing:
            missing[node.plugin].append(node.id)
            continue
        try:
            registry.load(node.plugin)
        except plugins.PluginError as exc:
            missing[node.plugin] = [node.id]
            src.error("node %s: %s" % (node.id, exc), node.id, "plugin")
            continue
        try:
            signature = registry.signature(node.plugin, node.function)
        except plugins.PluginError as exc:
            src.error("node %s: %s" % (node.id, exc), node.id, "function")
            continue
        params = node.function_params or {}
        templated = [k for k, v in params.items() if any(templating.is_template(t) for t in templating.strings(v))]
        _, errors = plugins.check_params(signature, params, deferred=templated)
        errors += _typed_params(signature, params, templated, specs)
        for error in errors:
            src.error("node %s: %s" % (node.id, error), node.id, "function_params")
    for plugin, users in missing.items():
        if len(users) > 1:
            src.error(
                "plugin %r is also used by node%s %s" % (plugin, "s" if len(users) > 2 else "", ", ".join(users[1:])),
                users[1],
                "plugin",
            )


def load_plan(file: str, sources: var_specs.Sources | None) -> Plan:
    """Compile a runbook in memory for the runtime (nothing baked: variables resolve when run).

    Diagnostics go to standard error; an invalid runbook raises UsageError (exit 2)."""
    import sys

    from playbook.runtime.errors import UsageError

    try:
        compiled = compile_file(file, sources, bake=False)
    except CompileError as exc:
        for diag in exc.diagnostics:
            sys.stderr.write(diag.format() + "\n")
        errors = sum(1 for d in exc.diagnostics if d.severity == "error")
        raise UsageError("%s has %d error%s; nothing was run" % (file, errors, "" if errors == 1 else "s")) from None
    for diag in compiled.warnings:
        sys.stderr.write(diag.format() + "\n")
    # run from the file: {{ runbook_dir }} and every command's PLAYBOOK_RUNBOOK_DIR are its directory
    os.environ[templating.RUNBOOK_DIR_ENV] = files_mod.runbook_dir(file)
    return compiled.plan
