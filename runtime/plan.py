"""The execution plan: the one document the compiler writes and the runtime executes.

A plan is JSON, versioned by ``plan_version`` and deterministic (same input, same bytes).
It holds the runbook metadata, the variable specs still to be resolved on the host, the
values baked in at compile time, and the nodes in execution order. Node fields that still
depend on run-time variables are kept as templates and listed in the node's ``templates``.

Standard library only: this module goes into bundles.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace

from .errors import BundleError

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple, TypeVar

    Class = TypeVar("Class", bound=type)

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


def slotted(cls: Class) -> Class:
    """The dataclass ``cls`` rebuilt with ``__slots__`` (no ``__dict__`` per instance: a plan
    holds one Node per step, 10,000 of them in a large runbook). ``dataclass(slots=True)``
    needs Python 3.10; this does the same on 3.9. The methods must not use ``super()``."""
    names = tuple(f.name for f in fields(cls))
    body = {key: value for key, value in cls.__dict__.items() if key not in names + ("__dict__", "__weakref__")}
    body["__slots__"] = names
    return type(cls)(cls.__name__, cls.__bases__, body)


class PlanError(BundleError):
    """A plan document that cannot be used (wrong version, damaged, inconsistent): exit 4."""


@slotted
@dataclass(frozen=True)
class Dep:
    """One `depends_on` entry: `node` and the kind of condition (`plain`, `success`, ...)."""

    node: str
    on: str = "plain"

    def to_json(self) -> list[str]:
        return [self.node, self.on]

    def spec(self) -> str:
        """The entry as an author writes it (`deploy`, `deploy:failure`)."""
        return self.node if self.on == "plain" else "%s:%s" % (self.node, self.on)

    def __repr__(self) -> str:
        return "Dep(%r)" % self.spec()


@slotted
@dataclass(eq=False)
class Node:
    """A step of the runbook as the runtime sees it."""

    id: str
    type: str
    deps: list[Dep] = field(default_factory=list)
    name: Optional[str] = None
    description: str = ""
    when: Optional[str] = None  # expression source, without the surrounding {{ }}
    when_value: Optional[bool] = None  # True/False once folded at compile time
    when_nodes: Tuple[str, ...] = ()  # nodes the `when` expression mentions
    skip: bool = False
    skip_reason: Optional[str] = None
    critical: Any = False  # bool, or a template until bound
    timeout: Any = None  # seconds, or a template until bound
    prompt_before: Optional[str] = None
    prompt_after: Optional[str] = None
    retries: int = 0
    retry_delay: float = 0
    command: Optional[str] = None
    command_quoting: Tuple[str, ...] = ()  # where each {{ }} of a templated command stands (templating.QUOTING)
    interactive: bool = False
    shell: Optional[str] = None
    env: Optional[Dict[str, str]] = None
    cwd: Optional[str] = None
    plugin: Optional[str] = None
    function: Optional[str] = None
    function_params: Optional[Dict[str, Any]] = None
    plugin_config: Optional[Dict[str, Any]] = None
    approvers: Tuple[str, ...] = ()  # who may answer its question: user names and @groups
    approvals: int = 0  # how many distinct people must approve (0: no policy, one approval by anyone)
    handled: bool = False  # some node takes the failure path of this one
    templates: Tuple[str, ...] = ()  # fields still holding templates that need run-time variables
    runtime_templates: Tuple[str, ...] = ()  # fields rendered just before the step starts (earlier outputs, runbook_dir)
    output_nodes: Tuple[str, ...] = ()  # nodes whose outputs those fields read (previous_node)
    line: int = 0

    def __post_init__(self) -> None:
        self.deps = list(self.deps)

    @property
    def title(self) -> str:
        return self.name or self.id

    def copy(self, **changes: Any) -> Node:
        return replace(self, **changes)

    def upstream(self) -> list[str]:
        """Every node this one waits for: its dependencies and the nodes its `when` names."""
        return list(dict.fromkeys([dep.node for dep in self.deps] + list(self.when_nodes) + list(self.output_nodes)))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type, "deps": [d.to_json() for d in self.deps]}
        for key, default in _NODE_DEFAULTS.items():
            value = getattr(self, key)
            if value != default:  # tuples against tuples: a step leaves most fields at their default
                data[key] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Node:
        data = dict(data)
        node_id = data.pop("id")
        node_type = data.pop("type")
        deps = [Dep(n, on) for n, on in data.pop("deps", [])]
        unknown = set(data) - _NODE_DEFAULTS.keys()
        if unknown:
            raise TypeError("unknown node fields: %s" % ", ".join(sorted(unknown)))
        for key in ("when_nodes", "templates", "approvers", "command_quoting", "runtime_templates", "output_nodes"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(node_id, node_type, deps, **data)


# The optional fields of a node and their defaults (what to_json leaves out).
_NODE_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Node) if f.name not in ("id", "type", "deps")}


@dataclass(eq=False)
class Plan:
    """A loaded plan: metadata, variable specs, baked values and nodes in execution order."""

    runbook: Dict[str, Any]  # title, description, version, author, created_at, shell
    variables: Dict[str, Dict[str, Any]]  # name -> spec dict (see runtime.variables)
    values: Dict[str, Any]  # name -> value baked at compile time
    nodes: List[Node]  # in execution order
    source: Dict[str, Any] = field(default_factory=dict)  # name, sha256
    plugin_config: Dict[str, Any] = field(default_factory=dict)
    by_id: Dict[str, Node] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.source = self.source or {}
        self.plugin_config = self.plugin_config or {}
        self.by_id = {node.id: node for node in self.nodes}

    @property
    def title(self) -> str:
        return self.runbook.get("title", "")

    def to_json(self) -> dict[str, Any]:
        return {
            "plan_version": PLAN_VERSION,
            "source": self.source,
            "runbook": self.runbook,
            "plugin_config": self.plugin_config,
            "variables": self.variables,
            "values": self.values,
            "nodes": [node.to_json() for node in self.nodes],
        }

    def dumps(self) -> bytes:
        """The canonical bytes of the plan: sorted keys, fixed separators, UTF-8."""
        return dumps_canonical(self.to_json())

    def digest(self, dumped: bytes | None = None) -> str:
        """The plan's identity: SHA-256 of its canonical bytes (`dumped`, when already made)."""
        return hashlib.sha256(self.dumps() if dumped is None else dumped).hexdigest()

    @classmethod
    def loads(cls, raw: str | bytes) -> Plan:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise PlanError("the plan is not valid JSON: %s" % exc) from None
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Any) -> Plan:
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


def file_stem(path: str) -> str:
    """A runbook file's name without its directory and `.playbook.toml` / `.toml`."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".playbook.toml", ".toml"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def runbook_identity(meta: Mapping[str, Any], stem: str | None = None) -> str:
    """The identity runs of a runbook are recorded under: `[runbook] id` when given, else the
    title as written (templates unrendered, so dev and prod runs are one runbook) made a slug,
    and a digest of that title, the author, created_at and the file's stem (two runbooks that
    share a title still differ). Edits of the steps keep it; renaming a file without an `id`
    changes it. `stem` None: the identity of versions before the stem counted."""
    if meta.get("id"):
        return str(meta["id"])
    import re

    title = str(meta.get("title") or "")
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-") or "runbook"
    parts = [str(meta.get(key) or "") for key in ("title", "author", "created_at")]
    if stem is not None:
        parts.append(stem)
    return "%s-%s" % (slug, hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:8])


def derived_identity(plan: Plan) -> bool:
    """Whether the plan's runbook identity was derived (no `[runbook] id`)."""
    meta = {k: v for k, v in plan.runbook.items() if k != "id"}
    return plan.runbook.get("id") == runbook_identity(meta, file_stem(str(plan.source.get("name") or "")))


def dumps_canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
