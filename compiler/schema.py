"""Raw TOML data → a typed runbook. Every field of DESIGN.md section 3, nothing else.

Unknown keys are errors with a "did you mean" hint; every problem is collected as a diagnostic
on the source, located at its table or key.
"""

import math
import re

from playbook.runtime import suggest, templating
from playbook.runtime import variables as var_specs
from playbook.runtime.plan import NODE_TYPES, Node

NUMBER = (int, float)

# field: (accepted python types, what to call them in messages)
COMMON_FIELDS = {
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
}
TYPE_FIELDS = {
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
RUNBOOK_FIELDS = {
    "title": (str, "a string"),
    "description": (str, "a string"),
    "version": ((str, int, float), "a string"),
    "author": (str, "a string"),
    "created_at": (str, "a date-time"),
    "plugin_config": (dict, "a table of plugin tables"),
    "shell": (str, "a string"),
}
ALLOWED = {kind: dict(COMMON_FIELDS, **fields) for kind, fields in TYPE_FIELDS.items()}
ALL_NODE_FIELDS = set(COMMON_FIELDS).union(*[set(f) for f in TYPE_FIELDS.values()])
NODE_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

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

    def __init__(self, meta, plugin_config, variables, nodes, raw_deps, rejected=()):
        self.rejected = set(rejected)  # ids of nodes left out because of their own errors
        self.meta = meta
        self.plugin_config = plugin_config
        self.variables = variables  # name -> spec dict
        self.nodes = nodes  # list of Node, declaration order, deps still empty
        self.raw_deps = raw_deps  # node id -> list of entries as written, or None when absent


def did_you_mean(word, candidates):
    if word in RENAMED:
        return "did you mean %s? (%s is the Playbook 1.x name)" % (RENAMED[word], word)
    return suggest.did_you_mean(word, candidates)


def _check_type(source, value, spec, *path):
    kinds, words = spec
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        source.error("%s must be %s, not %s" % (".".join(path[1:]) or path[0], words, var_specs.type_of(value)), *path)
    return ok


def check(source):
    """Check the parsed data of `source` and return a Runbook (diagnostics go to source)."""
    data = source.data
    meta = {}
    plugin_config = {}
    runbook = data.get("runbook")
    if not isinstance(runbook, dict):
        source.error(
            "missing [runbook] table" if runbook is None else "runbook must be a table",
            *(("runbook",) if runbook is not None else ()),
            hint="start the file with [runbook] and a title = \"…\"",
            line=None if runbook is not None else 1,
            col=None if runbook is not None else 1,
        )
        runbook = {}
    for key, value in runbook.items():
        if key not in RUNBOOK_FIELDS:
            source.error("unknown key %r in [runbook]" % key, "runbook", key, hint=did_you_mean(key, RUNBOOK_FIELDS))
            continue
        if _check_type(source, value, RUNBOOK_FIELDS[key], "runbook", key):
            meta[key] = str(value) if key == "version" else value
    if runbook and "title" not in runbook:
        source.error("[runbook] has no title", "runbook", hint='add title = "…"')
    config = meta.pop("plugin_config", {})
    for name, table in config.items():
        if not isinstance(table, dict):
            source.error("plugin_config.%s must be a table" % name, "runbook", "plugin_config", name)
        else:
            plugin_config[name] = table

    variables = {}
    raw_vars = data.get("variables", {})
    if not isinstance(raw_vars, dict):
        source.error("[variables] must be a table", "variables")
        raw_vars = {}
    for name, raw in raw_vars.items():
        spec, errors = var_specs.parse_spec(name, raw)
        for err in errors:
            path = ("variables", name) + ((err.key,) if err.key else ())
            source.error(str(err), *path, hint=err.hint)
        variables[name] = spec

    nodes = []
    raw_deps = {}
    rejected = []
    for node_id, table in data.items():
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
        if node is not None:
            nodes.append(node)
            deps = table.get("depends_on")
            raw_deps[node_id] = [deps] if isinstance(deps, str) else deps
        else:
            rejected.append(node_id)
    return Runbook(meta, plugin_config, variables, nodes, raw_deps, rejected)


def _check_node(source, node_id, table):
    if not NODE_ID_RE.match(node_id):
        source.error(
            "node id %r may only contain letters, digits, '_', '-' and '.'" % node_id, node_id
        )
    node_type = table.get("type")
    if node_type is None:
        source.error("node %s has no type" % node_id, node_id, hint='add type = "Manual", "Command" or "Function"')
        return None
    if node_type not in NODE_TYPES:
        close = suggest.did_you_mean(str(node_type), NODE_TYPES, cutoff=0.5)
        hint = (close + " " if close else "") + "node types are Manual, Command and Function"
        source.error("unknown node type %r in node %s" % (node_type, node_id), node_id, "type", hint=hint)
        return None
    allowed = ALLOWED[node_type]
    fields = {}
    ok = True
    for key, value in table.items():
        if key == "type":
            continue
        if key not in allowed:
            other = [t for t, f in TYPE_FIELDS.items() if key in f]
            if other:
                message = "%s is a field of %s nodes, not of %s node %s" % (key, other[0], node_type, node_id)
                hint = None
            else:
                message = "unknown field %r in node %s" % (key, node_id)
                hint = did_you_mean(key, allowed)
            source.error(message, node_id, key, hint=hint)
            ok = False
            continue
        if not _check_type(source, value, allowed[key], node_id, key):
            ok = False
            continue
        fields[key] = value
    explained = {"plugin", "function"} if "function_name" in table else {"command_name"} if "command" in table else set()
    for key in REQUIRED[node_type]:
        if key not in table and key not in explained:
            source.error("%s node %s needs %s" % (node_type, node_id, key), node_id)
            ok = False
    if fields.get("skip") is True and fields.get("critical") is True:
        source.error(
            "node %s is both skip = true and critical = true; a critical node cannot be skipped" % node_id,
            node_id,
            "skip",
        )
        ok = False
    for key in ("retries",):
        if key in fields and fields[key] < 0:
            source.error("%s must not be negative" % key, node_id, key)
            ok = False
    for key in ("retry_delay", "timeout"):
        value = fields.get(key)
        if isinstance(value, NUMBER) and (
            not math.isfinite(value) or value < 0 or (key == "timeout" and value == 0)
        ):
            source.error("%s must be a positive number of seconds" % key, node_id, key)
            ok = False
    if "env" in fields:
        for name, value in fields["env"].items():
            if not isinstance(value, (str, int, float, bool)):
                source.error("env.%s must be a string" % name, node_id, "env", name)
                ok = False
    for key, kind in (("critical", "bool"), ("timeout", "float")):
        value = fields.get(key)
        if isinstance(value, str) and not templating.is_template(value):
            try:
                fields[key] = templating.render_field(Node(node_id, node_type, **{key: value}), key, {})
            except templating.TemplateError as exc:
                source.error(str(exc), node_id, key)
                ok = False
    when = fields.get("when")
    if isinstance(when, bool):
        fields["when"] = "true" if when else "false"
    if not ok:
        return None
    return Node(
        node_id,
        node_type,
        name=fields.get("name"),
        description=fields.get("description", ""),
        when=fields.get("when"),
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
        env={k: _env_text(v) for k, v in fields["env"].items()} if "env" in fields else None,
        cwd=fields.get("cwd"),
        plugin=fields.get("plugin"),
        function=fields.get("function"),
        function_params=fields.get("function_params"),
        plugin_config=fields.get("plugin_config"),
    )


def _env_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
