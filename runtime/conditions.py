"""When a node runs: `depends_on` entries, `when` expressions, skip reasons. Fail closed.

The rules (the README's Runbooks section):
- `skip = true` → skipped (disabled).
- Conditional entries (`X:success`, `X:failure`, `X:done`) are alternatives: at least one must hold.
- A `when` must be true; an error while evaluating it never runs the node.
- Plain entries are satisfied when X succeeded or was skipped; if X failed the node is skipped
  ("upstream X failed") — unless the node has a `when`, which then takes over the decision.
"""

from __future__ import annotations


from . import templating
from .errors import UsageError

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Callable, Literal, Mapping

    from .plan import Node

NODE_FUNCTIONS = ("has_succeeded", "has_failed", "has_run", "is_skipped", "previous_node")
PREVIOUS_NODE_FIELDS = ("status", "exit_code", "stdout", "stderr", "output")

SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"

_HOLDS = {
    "success": lambda status: status == SUCCEEDED,
    "failure": lambda status: status == FAILED,
    "done": lambda status: status in (SUCCEEDED, FAILED),
}
_WORDS = {"success": "%s succeeded", "failure": "%s failed", "done": "%s ran (succeeded or failed)"}


class ConditionError(UsageError):
    """A `when` expression that cannot be evaluated (the node is then skipped: fail closed)."""


def functions(results: Mapping[str, Any]) -> dict[str, Callable[[str], Any]]:
    """The node functions a `when` expression may call; `results` maps id → the engine's
    StepResult (status, ran, exit_code, stdout, stderr, output)."""

    def result(node_id: str) -> Any:
        if node_id not in results:
            raise ConditionError("unknown node %r" % node_id)
        return results[node_id]

    return {
        "has_succeeded": lambda n: result(n).status == SUCCEEDED,
        "has_failed": lambda n: result(n).status == FAILED,
        "has_run": lambda n: bool(result(n).ran),
        "is_skipped": lambda n: result(n).status == SKIPPED,
        "previous_node": lambda n: {k: getattr(result(n), k) for k in PREVIOUS_NODE_FIELDS},
    }


def _field(results: Mapping[str, Any], node_id: str, name: str) -> Any:
    found = results.get(node_id)
    return getattr(found, name, None) if found is not None else None


def _status(results: Mapping[str, Any], node_id: str) -> str | None:
    return _field(results, node_id, "status")


def evaluate_when(expression: str, values: Mapping[str, Any], results: Mapping[str, Any]) -> bool:
    """True/False for a `when` expression (without braces); raises ConditionError."""
    context = dict(values)
    context.update(functions(results))
    try:
        value = templating.evaluate(expression, context)
    except templating.TemplateError as exc:
        raise ConditionError(str(exc)) from None
    except ConditionError:
        raise
    if isinstance(value, str):
        # `when = "{% if … %}true{% endif %}"` style results, and "false" from text rendering
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0", "", "none"):
            return False
        raise ConditionError("the condition gave the text %r, not true or false" % value)
    return bool(value)


def decide(
    node: Node, results: Mapping[str, Any], values: Mapping[str, Any]
) -> tuple[Literal["run"], None] | tuple[Literal["skip"], str]:
    """("run", None) or ("skip", reason) for a node whose upstream nodes are all final."""
    if node.skip:
        return "skip", node.skip_reason or "disabled (skip = true)"
    if node.when_value is False:
        return "skip", node.skip_reason or "condition is false"
    conditional = [d for d in node.deps if d.on != "plain"]
    if conditional and not any(_HOLDS[d.on](_status(results, d.node)) for d in conditional):
        return "skip", "condition not met: needs %s" % " or ".join(_WORDS[d.on] % d.node for d in conditional)
    rejected = [d.node for d in node.deps if d.on == "plain" and _field(results, d.node, "decision") == "rejected"]
    if rejected:  # a rejected approval never lets its plain dependents run, `when` or not
        return "skip", "upstream %s was rejected" % ", ".join(rejected)
    if node.when is not None and node.when_value is None:
        try:
            if not evaluate_when(node.when, values, results):
                return "skip", "condition: %s is false" % node.when
        except ConditionError as exc:
            return "skip", "condition could not be evaluated (%s): %s" % (exc, node.when)
        return "run", None
    if node.when is None:
        failed = [d.node for d in node.deps if d.on == "plain" and _status(results, d.node) == FAILED]
        if failed:
            return "skip", "upstream %s failed" % ", ".join(failed)
    return "run", None


def in_words(node: Node) -> str:
    """The run condition of a node in words, as `plan` shows it."""
    parts: list[str] = []
    if node.skip:
        return "never runs: %s" % (node.skip_reason or "disabled (skip = true)")
    if node.when_value is False:
        return "never runs: %s" % (node.skip_reason or "condition is false")
    plain = [d.node for d in node.deps if d.on == "plain"]
    conditional = [d for d in node.deps if d.on != "plain"]
    if plain:
        if node.when is None:
            parts.append("after %s (skipped if %s fails)" % (", ".join(plain), "it" if len(plain) == 1 else "any"))
        else:
            parts.append("after %s" % ", ".join(plain))
    if conditional:
        parts.append("runs if " + " or ".join(_WORDS[d.on] % d.node for d in conditional))
    if node.when is not None:
        if node.when_value is True:
            parts.append("when %s (true with the given variables)" % node.when)
        else:
            parts.append("when %s" % node.when)
    if not parts:
        return "always runs"
    return "; and ".join(parts)
