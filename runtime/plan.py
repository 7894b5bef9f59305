"""The execution plan: the one document the compiler writes and the runtime executes.

A plan is JSON, versioned by ``plan_version`` and deterministic (same input, same bytes).
It holds the runbook metadata, the variable specs still to be resolved on the host, the
values baked in at compile time, and the nodes in execution order. Node fields that still
depend on run-time variables are kept as templates and listed in the node's ``templates``.

Standard library only: this module goes into bundles.
"""

import hashlib
import json

PLAN_VERSION = 1

NODE_TYPES = ("Manual", "Command", "Function")
DEP_KINDS = ("plain", "success", "failure", "done")

# Node fields that may hold Jinja templates, in the order they are rendered.
TEMPLATED_FIELDS = (
    "name",
    "description",
    "command",
    "timeout",
    "critical",
    "prompt_before",
    "prompt_after",
    "env",
    "cwd",
    "function_params",
    "plugin_config",
)


class PlanError(Exception):
    """A plan document that cannot be used (wrong version, damaged, inconsistent)."""


class Dep:
    """One `depends_on` entry: `node` and the kind of condition (`plain`, `success`, ...)."""

    __slots__ = ("node", "on")

    def __init__(self, node, on="plain"):
        self.node = node
        self.on = on

    def to_json(self):
        return [self.node, self.on]

    def spec(self):
        """The entry as an author writes it (`deploy`, `deploy:failure`)."""
        return self.node if self.on == "plain" else "%s:%s" % (self.node, self.on)

    def __repr__(self):
        return "Dep(%r)" % self.spec()

    def __eq__(self, other):
        return isinstance(other, Dep) and (self.node, self.on) == (other.node, other.on)

    def __hash__(self):
        return hash((self.node, self.on))


class Node:
    """A step of the runbook as the runtime sees it."""

    DEFAULTS = {
        "name": None,
        "description": "",
        "when": None,  # expression source, without the surrounding {{ }}
        "when_value": None,  # True/False once folded at compile time
        "when_nodes": (),  # nodes the `when` expression mentions
        "skip": False,
        "skip_reason": None,
        "critical": False,
        "timeout": None,
        "prompt_before": None,
        "prompt_after": None,
        "retries": 0,
        "retry_delay": 0,
        "command": None,
        "command_quoting": (),  # where each {{ }} of a templated command stands (templating.QUOTING)
        "interactive": False,
        "shell": None,
        "env": None,
        "cwd": None,
        "plugin": None,
        "function": None,
        "function_params": None,
        "plugin_config": None,
        "handled": False,  # some node takes the failure path of this one
        "templates": (),  # fields still holding templates that need run-time variables
        "line": 0,
    }

    def __init__(self, id, type, deps=(), **fields):
        self.id = id
        self.type = type
        self.deps = list(deps)
        attrs = self.__dict__
        attrs.update(self.DEFAULTS)
        if fields:
            if not fields.keys() <= self.DEFAULTS.keys():
                raise TypeError("unknown node fields: %s" % ", ".join(sorted(set(fields) - set(self.DEFAULTS))))
            attrs.update(fields)

    @property
    def title(self):
        return self.name or self.id

    def copy(self, **changes):
        data = {key: getattr(self, key) for key in self.DEFAULTS}
        data.update(changes)
        return Node(self.id, self.type, self.deps, **data)

    def upstream(self):
        """Every node this one waits for: its dependencies and the nodes its `when` names."""
        return list(dict.fromkeys([dep.node for dep in self.deps] + list(self.when_nodes)))

    def to_json(self):
        data = {"id": self.id, "type": self.type, "deps": [d.to_json() for d in self.deps]}
        for key, default in self.DEFAULTS.items():
            value = getattr(self, key)
            if isinstance(value, tuple):
                value = list(value)
                default = list(default)
            if value != default:
                data[key] = value
        return data

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        node_id = data.pop("id")
        node_type = data.pop("type")
        deps = [Dep(n, on) for n, on in data.pop("deps", [])]
        for key in ("when_nodes", "templates", "command_quoting"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(node_id, node_type, deps, **data)


class Plan:
    """A loaded plan: metadata, variable specs, baked values and nodes in execution order."""

    def __init__(self, runbook, variables, values, nodes, source=None, plugin_config=None):
        self.runbook = runbook  # title, description, version, author, created_at, shell
        self.variables = variables  # name -> spec dict (see runtime.variables.VarSpec)
        self.values = values  # name -> value baked at compile time
        self.nodes = nodes  # list of Node in execution order
        self.source = source or {}  # name, sha256
        self.plugin_config = plugin_config or {}
        self.by_id = {node.id: node for node in nodes}

    @property
    def title(self):
        return self.runbook.get("title", "")

    def to_json(self):
        return {
            "plan_version": PLAN_VERSION,
            "source": self.source,
            "runbook": self.runbook,
            "plugin_config": self.plugin_config,
            "variables": self.variables,
            "values": self.values,
            "nodes": [node.to_json() for node in self.nodes],
        }

    def dumps(self):
        """The canonical bytes of the plan: sorted keys, fixed separators, UTF-8."""
        return dumps_canonical(self.to_json())

    def digest(self):
        return hashlib.sha256(self.dumps()).hexdigest()

    @classmethod
    def loads(cls, raw):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise PlanError("the plan is not valid JSON: %s" % exc) from None
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data):
        if not isinstance(data, dict) or "plan_version" not in data:
            raise PlanError("not a Playbook plan (no plan_version)")
        version = data["plan_version"]
        if version != PLAN_VERSION:
            raise PlanError(
                "plan version %s is not supported by this runtime (it reads version %d); "
                "compile the runbook again with a matching Playbook" % (version, PLAN_VERSION)
            )
        try:
            nodes = [Node.from_json(item) for item in data["nodes"]]
            return cls(
                runbook=data["runbook"],
                variables=data.get("variables", {}),
                values=data.get("values", {}),
                nodes=nodes,
                source=data.get("source", {}),
                plugin_config=data.get("plugin_config", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError("the plan is damaged: %s" % exc) from None


def dumps_canonical(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
