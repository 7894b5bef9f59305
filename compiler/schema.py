"""Raw TOML data → a typed runbook. Every field of the README's Runbooks section, nothing else.

Unknown keys are errors with a "did you mean" hint; every problem is collected as a diagnostic
on the source, located at its table or key.
"""

from __future__ import annotations

import re

from playbook.runtime import suggest, templating
from playbook.runtime import variables as var_specs
from playbook.runtime.durations import DurationError, check_duration
from playbook.runtime.plan import NODE_TYPES, Node

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

if TYPE_CHECKING:
    from .source import Source

NUMBER = (int, float)

# field: (accepted python types, what to call them in messages)
COMMON_FIELDS: dict[str, tuple[Any, str]] = {
    "type": (str, "a string"),
    "name": (str, "a string"),
    "description": (str, "a string"),
    "depends_on": ((list, str), "a list of node ids"),
    "when": ((str, bool), "a Jinja expression string"),
    "skip": (bool, "true or false"),
    "critical": ((bool, str), "true, false or a template"),
    "timeout": ((int, float, str), "a number of seconds"),
    "prompt_before": (str, "a string"),
    "prompt_after": (str, "a string"),
    "retries": (int, "a whole number"),
    "retry_delay": ((int, float), "a number of seconds"),
    "approvers": (list, "a list of user names and @groups"),
    "approvals": (int, "a whole number"),
}
TYPE_FIELDS: dict[str, dict[str, tuple[Any, str]]] = {
    "Manual": {},
    "Command": {
        "command_name": (str, "a string"),
        "interactive": (bool, "true or false"),
        "shell": (str, "a string"),
        "env": (dict, "a table of strings"),
        "cwd": (str, "a string"),
    },
    "Function": {
        "plugin": (str, "a string"),
        "function": (str, "a string"),
        "function_params": (dict, "a table"),
        "plugin_config": (dict, "a table"),
    },
}
REQUIRED = {"Manual": (), "Command": ("command_name",), "Function": ("plugin", "function")}
RUNBOOK_FIELDS: dict[str, tuple[Any, str]] = {
    "id": (str, "a string"),
    "title": (str, "a string"),
    "description": (str, "a string"),
    "version": ((str, int, float), "a string"),
    "author": (str, "a string"),
    "created_at": (str, "a date-time"),
    "plugin_config": (dict, "a table of plugin tables"),
    "shell": (str, "a string"),
    "files": (list, "a list of paths relative to the runbook"),
}
ALLOWED = {kind: dict(COMMON_FIELDS, **fields) for kind, fields in TYPE_FIELDS.items()}
ALL_NODE_FIELDS = set(COMMON_FIELDS).union(*[set(f) for f in TYPE_FIELDS.values()])
NODE_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
RUNBOOK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

# 1.x field names people still write, with what they are now.
RENAMED = {
    "prompt": "prompt_after",
    "function_name": "plugin and function",
    "command": "command_name",
    "depends": "depends_on",
    "params": "function_params",
}


class Runbook:
    """The checked content of a runbook file, before dependencies are resolved."""

    def __init__(
        self,
        meta: dict[str, Any],
        plugin_config: dict[str, Any],
        variables: dict[str, dict[str, Any]],
        nodes: list[Node],
        raw_deps: dict[str, Any],
        rejected: Iterable[str] = (),
    ) -> None:
        self.rejected = set(rejected)  # ids of nodes left out because of their own errors
        self.meta = meta
        self.plugin_config = plugin_config
        self.variables = variables  # name -> spec dict
        self.nodes = nodes  # list of Node, declaration order, deps still empty
        self.raw_deps = raw_deps  # node id -> list of entries as written, or None when absent


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    if word in RENAMED:
        return "did you mean %s? (%s is the Playbook 1.x name)" % (RENAMED[word], word)
    return suggest.did_you_mean(word, candidates)


def _check_type(source: Source, value: object, spec: tuple[Any, str], *path: str) -> bool:
    kinds, words = spec
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        source.error("%s must be %s, not %s" % (".".join(path[1:]) or path[0], words, var_specs.type_of(value)), *path)
    return ok


def check(source: Source) -> Runbook:
    """Check the parsed data of `source` and return a Runbook (diagnostics go to source)."""
    meta, plugin_config = _check_runbook(source, source.data.get("runbook"))
    variables = _check_variables(source, source.data.get("variables", {}))
    nodes = []
    raw_deps = {}
    rejected = []
    for node_id, table in source.data.items():
        if node_id in ("runbook", "variables"):
            continue
        if not isinstance(table, dict):
            source.error(
                "top-level key %r is not a node: nodes are tables like [%s]" % (node_id, node_id),
                node_id,
                hint="put settings under [runbook] or [variables]",
            )
            continue
        node = _check_node(source, node_id, table)
        if node is None:
            rejected.append(node_id)
            continue
        nodes.append(node)
        deps = table.get("depends_on")
        raw_deps[node_id] = [deps] if isinstance(deps, str) else deps
    return Runbook(meta, plugin_config, variables, nodes, raw_deps, rejected)


def _check_runbook(source: Source, runbook: object) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """([runbook] fields, {plugin: config table}) of the [runbook] table."""
    if not isinstance(runbook, dict):
        missing = runbook is None
        source.error(
            "missing [runbook] table" if missing else "runbook must be a table",
            *(() if missing else ("runbook",)),
            hint="start the file with [runbook] and a title = \"…\"",
            line=1 if missing else None,
            col=1 if missing else None,
        )
        runbook = {}
    meta: dict[str, Any] = {}
    for key, value in runbook.items():
        if key not in RUNBOOK_FIELDS:
            source.error("unknown key %r in [runbook]" % key, "runbook", key, hint=did_you_mean(key, RUNBOOK_FIELDS))
        elif _check_type(source, value, RUNBOOK_FIELDS[key], "runbook", key):
            meta[key] = str(value) if key == "version" else value
    if "id" in meta and not RUNBOOK_ID_RE.match(meta["id"]):
        source.error(
            "[runbook] id %r is not an identity" % meta["id"], "runbook", "id",
            hint="letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit",
        )
    if runbook and "title" not in runbook:
        source.error("[runbook] has no title", "runbook", hint='add title = "…"')
    plugin_config = {}
    tables: dict[str, Any] = meta.pop("plugin_config", {})
    for name, table in tables.items():
        if isinstance(table, dict):
            plugin_config[name] = table
        else:
            source.error("plugin_config.%s must be a table" % name, "runbook", "plugin_config", name)
    return meta, plugin_config


def _check_variables(source: Source, raw_vars: object) -> dict[str, dict[str, Any]]:
    """{name: spec} of the [variables] table."""
    if not isinstance(raw_vars, dict):
        source.error("[variables] must be a table", "variables")
        return {}
    variables = {}
    for name, raw in raw_vars.items():
        spec, errors = var_specs.parse_spec(name, raw)
        for err in errors:
            path = ("variables", name) + ((err.key,) if err.key else ())
            source.error(str(err), *path, hint=err.hint)
        variables[name] = spec
    return variables


def _check_node(source: Source, node_id: str, table: Mapping[str, Any]) -> Node | None:
    """The Node of one node table, or None when it has errors (each reported on `source`)."""
    if not NODE_ID_RE.match(node_id):
        source.error("node id %r may only contain letters, digits, '_', '-' and '.'" % node_id, node_id)
    node_type = _node_type(source, node_id, table.get("type"))
    if node_type is None:
        return None
    fields, ok = _fields(source, node_id, node_type, table)
    ok = _has_required(source, node_id, node_type, table) and ok
    # every check runs (all mistakes are reported), in this order: literal templates are
    # rendered before their values are checked
    ok = all([check(source, node_id, fields) for check in _FIELD_CHECKS]) and ok
    ok = _approval_policy(source, node_id, node_type, fields) and ok
    return _node(node_id, node_type, fields) if ok else None


def _node_type(source: Source, node_id: str, node_type: object) -> str | None:
    if node_type is None:
        source.error("node %s has no type" % node_id, node_id, hint='add type = "Manual", "Command" or "Function"')
        return None
    if node_type not in NODE_TYPES:
        close = suggest.did_you_mean(str(node_type), NODE_TYPES, cutoff=0.5)
        hint = (close + " " if close else "") + "node types are Manual, Command and Function"
        source.error("unknown node type %r in node %s" % (node_type, node_id), node_id, "type", hint=hint)
        return None
    return node_type


def _fields(source: Source, node_id: str, node_type: str, table: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """({field: value} of the fields allowed for the type and of the right type, all ok)."""
    allowed = ALLOWED[node_type]
    fields = {}
    ok = True
    for key, value in table.items():
        if key == "type":
            continue
        if key not in allowed:
            _unknown_field(source, node_id, node_type, key)
            ok = False
        elif _check_type(source, value, allowed[key], node_id, key):
            fields[key] = value
        else:
            ok = False
    return fields, ok


def _unknown_field(source: Source, node_id: str, node_type: str, key: str) -> None:
    other = [kind for kind, fields in TYPE_FIELDS.items() if key in fields]
    if other:
        source.error("%s is a field of %s nodes, not of %s node %s" % (key, other[0], node_type, node_id), node_id, key)
    else:
        hint = did_you_mean(key, ALLOWED[node_type])
        source.error("unknown field %r in node %s" % (key, node_id), node_id, key, hint=hint)


# A 1.x field reported as unknown already explains why the fields that replace it are missing.
EXPLAINS_MISSING = {"function_name": ("plugin", "function"), "command": ("command_name",)}


def _has_required(source: Source, node_id: str, node_type: str, table: Mapping[str, Any]) -> bool:
    explained = {field for old, new in EXPLAINS_MISSING.items() if old in table for field in new}
    missing = [key for key in REQUIRED[node_type] if key not in table and key not in explained]
    for key in missing:
        source.error("%s node %s needs %s" % (node_type, node_id, key), node_id)
    return not missing


def _skip_and_critical(source: Source, node_id: str, fields: dict[str, Any]) -> bool:
    if fields.get("skip") is True and fields.get("critical") is True:
        source.error(
            "node %s is both skip = true and critical = true; a critical node cannot be skipped" % node_id,
            node_id,
            "skip",
        )
        return False
    return True


def _retries(source: Source, node_id: str, fields: dict[str, Any]) -> bool:
    if fields.get("retries", 0) < 0:
        source.error("retries must not be negative", node_id, "retries")
        return False
    return True


def _env_values(source: Source, node_id: str, fields: dict[str, Any]) -> bool:
    ok = True
    for name, value in fields.get("env", {}).items():
        if not isinstance(value, (str, int, float, bool)):
            source.error("env.%s must be a string" % name, node_id, "env", name)
            ok = False
    return ok


# Fields that may be templates, with the type a literal text of theirs is converted to now.
TYPED_TEXT_FIELDS = ("critical", "timeout")


def _literal_texts(source: Source, node_id: str, fields: dict[str, Any]) -> bool:
    """`critical = "yes"`, `timeout = "90"`: converted now (templates wait for their values)."""
    ok = True
    for key in TYPED_TEXT_FIELDS:
        value = fields.get(key)
        if isinstance(value, str) and not templating.is_template(value):
            try:
                holder = Node(node_id, "Manual").copy(**{key: value})  # only the field is read
                fields[key] = templating.render_field(holder, key, {})
            except templating.TemplateError as exc:
                source.error(str(exc), node_id, key)
                ok = False
    return ok


def _durations(source: Source, node_id: str, fields: dict[str, Any]) -> bool:
    ok = True
    for key in ("timeout", "retry_delay"):
        value = fields.get(key)
        if isinstance(value, NUMBER) and not isinstance(value, bool):
            try:
                check_duration(value, key)
            except DurationError as exc:
                source.error(str(exc), node_id, key)
                ok = False
    return ok


APPROVER_RE = re.compile(r"^@?[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _approval_policy(source: Source, node_id: str, node_type: str, fields: Mapping[str, Any]) -> bool:
    """approvers / approvals: only on a step with a question, names or @groups, N >= 1 and no
    more than the named people when no group is listed."""
    if "approvers" not in fields and "approvals" not in fields:
        return True
    where = "approvers" if "approvers" in fields else "approvals"
    if node_type != "Manual" and not fields.get("prompt_before") and not fields.get("prompt_after"):
        source.error(
            "node %s asks no question, so %s has nothing to approve" % (node_id, where), node_id, where,
            hint="add prompt_before or prompt_after, or make it a Manual step",
        )
        return False
    approvers = fields.get("approvers", [])
    bad = [a for a in approvers if not isinstance(a, str) or not APPROVER_RE.match(a)]
    if bad:
        source.error("approvers of node %s: %r is not a user name or @group" % (node_id, bad[0]), node_id, "approvers")
        return False
    count = fields.get("approvals", 1)
    if isinstance(count, bool) or count < 1:
        source.error("approvals of node %s must be at least 1" % node_id, node_id, "approvals")
        return False
    if approvers and not any(a.startswith("@") for a in approvers) and count > len(set(approvers)):
        source.error(
            "node %s needs %d approvals but names only %d approver%s" % (node_id, count, len(set(approvers)), "" if len(set(approvers)) == 1 else "s"),
            node_id, "approvals",
        )
        return False
    return True


_FIELD_CHECKS = (_skip_and_critical, _retries, _env_values, _literal_texts, _durations)


def _node(node_id: str, node_type: str, fields: Mapping[str, Any]) -> Node:
    """The Node of checked fields (runbook names → plan names, defaults filled in)."""
    when = fields.get("when")
    env = fields.get("env")
    return Node(
        node_id,
        node_type,
        name=fields.get("name"),
        description=fields.get("description", ""),
        when=("true" if when else "false") if isinstance(when, bool) else when,
        skip=fields.get("skip", False),
        critical=fields.get("critical", False),
        timeout=fields.get("timeout"),
        prompt_before=fields.get("prompt_before") or None,
        prompt_after=fields.get("prompt_after") or None,
        retries=fields.get("retries", 0),
        retry_delay=fields.get("retry_delay", 0),
        command=fields.get("command_name"),
        interactive=fields.get("interactive", False),
        shell=fields.get("shell"),
        env=None if env is None else {k: _env_text(v) for k, v in env.items()},
        cwd=fields.get("cwd"),
        plugin=fields.get("plugin"),
        function=fields.get("function"),
        function_params=fields.get("function_params"),
        approvers=tuple(fields.get("approvers", ())),
        approvals=fields.get("approvals", 1 if fields.get("approvers") else 0),
        plugin_config=fields.get("plugin_config"),
    )


def _env_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
