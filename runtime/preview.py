"""What a plan will do here, as `plan` shows it: the values with their origins, every step's
effective timeout, and secrets masked in all of it.

Both `plan` commands use it: the author's (`playbook plan FILE`, values given there and the
runbook's defaults) and the bundle's (`./x.pyz plan`, the values a run would resolve).
`ui.plan_text` writes the words; `document` is the JSON for CI diffs (sorted, stable).

Standard library only (jinja2 through runtime/templating.py when rendering): goes into bundles.
"""

from __future__ import annotations

import shlex

from .plan import Node, Plan
from .variables import MASK

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Mapping

DEFAULT_TIMEOUT = 300  # seconds: [execution] default_timeout when no configuration says otherwise


def render_known(plan: Plan, values: Mapping[str, Any]) -> Plan:
    """A copy of `plan` with every template rendered that `values` complete, one field at a
    time; a variable that may be absent stays undefined (`default()` and `is defined` work); a
    field that cannot be rendered (a value not known here, or masked) keeps its template.
    `plan` and `view-dag` show plans this way."""
    from . import templating

    runbook = dict(plan.runbook)
    pending = []
    for key in runbook.pop("templates", ()):
        try:
            runbook[key] = templating.render(runbook[key], values)
        except templating.TemplateError:
            pending.append(key)
    if pending:
        runbook["templates"] = pending
    nodes = []
    for node in plan.nodes:
        changes: dict[str, Any] = {}
        left = []
        for field in node.templates:
            try:
                changes[field] = templating.render_field(node, field, values)
            except templating.TemplateError:
                left.append(field)
        nodes.append(node.copy(templates=tuple(left), **changes) if changes else node)
    return Plan(runbook, plan.variables, plan.values, nodes, plan.source, plan.plugin_config)


def effective_timeout(node: Node, default: float = DEFAULT_TIMEOUT) -> tuple[Any, str] | None:
    """(seconds, "step" or "default") of a step, or None when nothing limits it (Manual steps,
    Function steps without `timeout`). A timeout still a template is returned as written."""
    if node.timeout is not None:
        return node.timeout, "step"
    if node.type == "Command":
        return default, "default"
    return None


def secret_texts(plan: Plan, values: Mapping[str, Any]) -> list[str]:
    """The texts that must not be shown: each secret value, also as a shell word; longest first."""
    found: set[str] = set()
    for name, spec in plan.variables.items():
        value = values.get(name)
        if spec.get("secret") and value is not None and str(value) not in ("", MASK):
            found.update((str(value), shlex.quote(str(value))))
    return sorted(found, key=len, reverse=True)


def mask(data: Any, secrets: list[str]) -> Any:
    """`data` (text, or lists and dicts of it) with every secret text replaced by the mask."""
    if isinstance(data, str):
        for secret in secrets:
            data = data.replace(secret, MASK)
        return data
    if isinstance(data, list):
        return [mask(item, secrets) for item in data]
    if isinstance(data, dict):
        return {key: mask(value, secrets) for key, value in data.items()}
    return data


def shown_values(plan: Plan, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` as they may be shown: each secret replaced by the mask."""
    secret = {name for name, spec in plan.variables.items() if spec.get("secret")}
    return {name: MASK if name in secret else value for name, value in values.items()}


def document(
    plan: Plan,
    values: Mapping[str, Any],
    origins: Mapping[str, str],
    default_timeout: float = DEFAULT_TIMEOUT,
    timeout_origin: str = "default",
) -> dict[str, Any]:
    """The plan document plus `effective`: every variable's value (masked when secret) and
    where it comes from, the default timeout and where it is set, and each step's timeout."""
    data = plan.to_json()
    shown = shown_values(plan, values)
    effective_values = {}
    for name in sorted(set(origins) | set(shown)):
        entry: dict[str, Any] = {"from": origins.get(name, "given")}
        if name in shown:
            entry["value"] = shown[name]
        effective_values[name] = entry
    timeouts = {}
    for node in plan.nodes:
        limit = effective_timeout(node, default_timeout)
        if limit is not None:
            timeouts[node.id] = {"seconds": limit[0], "from": limit[1]}
    data["effective"] = {
        "values": effective_values,
        "default_timeout": {"seconds": default_timeout, "from": timeout_origin},
        "timeouts": timeouts,
    }
    return mask(data, secret_texts(plan, values))
