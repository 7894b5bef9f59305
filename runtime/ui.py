"""Everything the runtime shows people: the plan in words, run progress, prompts.

Plain lines without a terminal, rich on a terminal (imported only then), JSON events on request.
"""

from . import conditions


def plan_text(plan, values=None):
    """The plan in execution order, each node with its command and run condition in words."""
    lines = []
    title = plan.title
    lines.append("Plan: %s — %d node%s" % (title, len(plan.nodes), "" if len(plan.nodes) == 1 else "s"))
    if plan.values:
        lines.append("Given: %s" % ", ".join("%s=%s" % (k, _short(v)) for k, v in sorted(plan.values.items())))
    pending = sorted(k for k in plan.variables if k not in plan.values)
    if pending:
        lines.append("Resolved when run: %s" % ", ".join(pending))
    width = len(str(len(plan.nodes)))
    for number, node in enumerate(plan.nodes, 1):
        flags = []
        if node.critical is True:
            flags.append("critical")
        elif node.critical not in (False, None):
            flags.append("critical: %s" % node.critical)
        if node.timeout is not None:
            flags.append("timeout %ss" % node.timeout)
        if node.retries:
            flags.append("retries %d" % node.retries)
        if node.handled:
            flags.append("failure handled")
        head = "%*d. %s [%s]" % (width, number, node.id, node.type)
        if node.name:
            head += " %s" % node.name
        if flags:
            head += " (%s)" % ", ".join(flags)
        lines.append(head)
        indent = " " * (width + 2)
        if node.type == "Command":
            text = node.command.strip("\n")
            note = "  (template: completed when run)" if "command" in node.templates else ""
            first, *rest = text.split("\n")
            lines.append("%s$ %s%s" % (indent, first, note if not rest else ""))
            for extra in rest[:12]:
                lines.append("%s  %s" % (indent, extra))
            if len(rest) > 12:
                lines.append("%s  … %d more lines%s" % (indent, len(rest) - 12, note))
        elif node.type == "Function":
            lines.append("%s%s.%s(%s)" % (indent, node.plugin, node.function, _params(node.function_params)))
        else:
            lines.append("%sasks: %s" % (indent, node.prompt_after or "Continue?"))
        lines.append("%s%s" % (indent, conditions.in_words(node)))
    return "\n".join(lines)


def _short(value, limit=60):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _params(params):
    if not params:
        return ""
    return ", ".join("%s=%s" % (k, _short(v if not isinstance(v, str) else repr(v))) for k, v in params.items())
