"""The DAG of a plan as Graphviz DOT text, optionally coloured by the states of a run.

``to_dot(plan, states=None, title=None)`` returns the DOT source; ``states`` maps a node id to
``{"status": ..., "attempts": n, "reason": ...}`` (``run_states`` builds it from the attempt
rows of the state database). Rendering the text into a picture is the caller's job
(``playbook view-dag`` uses the `dot` program; run reports embed the SVG).

- Shape and colour by node type: Manual (yellow, rounded), Command (blue box), Function
  (purple component). Critical nodes have a thick double border and say "critical"; nodes
  that never run (``skip = true``, a condition folded to false) are dashed.
- Edges: plain dependencies are black; ``X:success`` green, ``X:failure`` red and dashed,
  ``X:done`` grey, each labelled; nodes that only a ``when`` names are dotted "when" edges, and
  the ``when`` expression itself is printed in the node.
- With ``states``: every node is filled by its state (succeeded, failed, skipped with its
  reason, running, interrupted, not reached) and shows its attempt count.

Every text is escaped, so any description, command or id gives valid DOT: labels are
HTML-like (``&``, ``<``, ``>`` and ``"`` escaped, one line per ``<BR/>``), other attributes
are double-quoted strings (backslash, quote and line breaks escaped, ``&`` as ``&amp;``), and
characters that XML cannot carry (control characters, U+FFFE/U+FFFF, lone surrogates) are
replaced, so the SVG that `dot` writes always parses. The output is deterministic: nodes and
edges in plan order.

Standard library only: this module goes into bundles (run reports draw the DAG too).
"""

from __future__ import annotations

import re
import textwrap

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

if TYPE_CHECKING:
    from .plan import Node, Plan

FONT = "Helvetica"
MONO = "Courier"

# Text sizes: characters per line and lines per section, so that big runbooks stay readable.
WRAP = 46
DESCRIPTION_LINES = 4
COMMAND_LINES = 3
COMMAND_WIDTH = 50
WHEN_LINES = 3
REASON_LINES = 3

TYPE_STYLE = {
    # type: (shape, extra style, fill colour, border colour)
    "Manual": ("box", "rounded", "#fff3c4", "#b08900"),
    "Command": ("box", "", "#dbeafe", "#1d4ed8"),
    "Function": ("component", "", "#ede7f6", "#5e35b1"),
}
DEFAULT_TYPE_STYLE = ("box", "", "#f5f5f5", "#616161")

EDGE_STYLE = {
    # dependency kind: (colour, style, label)
    "plain": ("#37474f", "solid", None),
    "success": ("#2e7d32", "solid", "success"),
    "failure": ("#c62828", "dashed", "failure"),
    "done": ("#757575", "solid", "done"),
    "when": ("#5c6bc0", "dotted", "when"),
}

# status: (fill colour, border colour, words, text colour)
STATE_STYLE = {
    "succeeded": ("#c8e6c9", "#2e7d32", "succeeded", "#1b5e20"),
    "failed": ("#ffcdd2", "#c62828", "failed", "#b71c1c"),
    "skipped": ("#eeeeee", "#9e9e9e", "skipped", "#424242"),
    "running": ("#fff9c4", "#f9a825", "running", "#6d4c00"),
    "interrupted": ("#ffe0b2", "#ef6c00", "interrupted", "#8a3b00"),
    None: ("#ffffff", "#bdbdbd", "not reached", "#616161"),
}
NOT_REACHED = "not reached"

_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: Any) -> str:
    """`text` as a str that XML (hence SVG) can carry: other characters become U+FFFD."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4)
    return _NOT_XML.sub("\ufffd", text)


def quote(text: Any) -> str:
    """A DOT double-quoted string whose label/tooltip text is exactly `text`.

    `&` is written `&amp;`: `dot` reads entities in labels, and copies into SVG, unescaped,
    an `&` that starts anything shaped like one (`&;`, `&nbsp;`), which XML then rejects."""
    text = clean(text)
    text = text.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"%s"' % text


def html(text: Any) -> str:
    """Text for an HTML-like label (no markup, no line breaks). Graphviz substitutes \\N, \\G
    and \\E in label text too, and reads \\\\ as one backslash: backslashes are doubled."""
    return clean(text).replace("\n", " ").replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("[", "&#91;").replace("]", "&#93;")


def _shorten(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def _wrap(text: str, width: int = WRAP, limit: int = DESCRIPTION_LINES) -> list[str]:
    """Lines of `text` wrapped at `width`, at most `limit` of them (the last one ends in …)."""
    lines = []
    for paragraph in clean(text).strip().split("\n"):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        lines.extend(textwrap.wrap(paragraph, width, break_long_words=True, break_on_hyphens=False) or [""])
    if len(lines) > limit:
        lines = lines[:limit]
        last = _shorten(lines[-1], width - 1)
        lines[-1] = last if last.endswith("…") else last + " …"
    return lines


def _command_lines(command: str) -> list[str]:
    lines = [line.rstrip() for line in clean(command).strip("\n").split("\n")]
    lines = [line for line in lines if line.strip()]
    shown = [_shorten(line, COMMAND_WIDTH) for line in lines[:COMMAND_LINES]]
    if len(lines) > COMMAND_LINES:
        shown.append("… %d more line%s" % (len(lines) - COMMAND_LINES, "" if len(lines) - COMMAND_LINES == 1 else "s"))
    if shown:
        shown[0] = "$ " + shown[0]
    return shown


def _params(params: object) -> str:
    if not params:
        return ""
    if isinstance(params, dict):
        return ", ".join("%s=%s" % (key, _value(params[key])) for key in sorted(params, key=str))
    return _value(params)


def _value(value: object) -> str:
    if isinstance(value, str):
        return repr(value) if not value.startswith("{{") else value
    return str(value)


def _critical(node: Node) -> bool | str:
    """True, False, or the template text that decides it at run time."""
    if node.critical is True:
        return True
    if node.critical in (False, None, "", "false", "False"):
        return False
    text = str(node.critical).strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2].strip()
    return text


def _never_runs(node: Node) -> str | None:
    if node.skip:
        return node.skip_reason or "disabled (skip = true)"
    if node.when_value is False:
        return node.skip_reason or "condition is false"
    return None


def _section(
    lines: Iterable[str],
    font: str | None = None,
    color: str | None = None,
    size: int | None = None,
    bold: bool = False,
    italic: bool = False,
) -> str:
    """One table row holding `lines`, left-aligned, in the given font."""
    body = "<BR/>".join(html(line) or "&#160;" for line in lines) or "&#160;"
    if bold:
        body = "<B>%s</B>" % body
    if italic:
        body = "<I>%s</I>" % body
    attrs = []
    if font:
        attrs.append('FACE="%s"' % font)
    if color:
        attrs.append('COLOR="%s"' % color)
    if size:
        attrs.append('POINT-SIZE="%s"' % size)
    if attrs:
        body = "<FONT %s>%s</FONT>" % (" ".join(attrs), body)
    return '<TR><TD ALIGN="LEFT" BALIGN="LEFT">%s</TD></TR>' % body


def attempts_words(count: int) -> str:
    return "%d attempt%s" % (count, "" if count == 1 else "s")


def state_words(state: Mapping[str, Any] | None) -> str:
    """One line saying what happened to a node, e.g. 'failed · 3 attempts: exit code 1'."""
    if not state or not state.get("status"):
        return NOT_REACHED
    status = state["status"]
    words = STATE_STYLE[status][2] if status in STATE_STYLE else str(status)
    count = state.get("attempts") or 0
    if count and status != "skipped":
        words += " · %s" % attempts_words(count)
    elif count and status == "skipped":
        words += " after %s" % attempts_words(count)
    return words


def _label(node: Node, state: Mapping[str, Any] | None, with_states: bool) -> str:
    """The node's HTML-like label: title, facts, description, what it does, when it runs and,
    with states, what happened."""
    rows = _title_rows(node) + _body_rows(node) + _condition_rows(node)
    if with_states:
        rows += _state_rows(node, state)
    return '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">%s</TABLE>>' % "".join(rows)


def _title_rows(node: Node) -> list[str]:
    """The title, a line of facts (id, type, critical, retries, timeout) and a critical template."""
    critical = _critical(node)
    facts = [
        node.id if node.name and node.name != node.id else None,
        node.type,
        "CRITICAL" if critical is True else None,
        "retries %s" % node.retries if node.retries else None,
        "timeout %ss" % node.timeout if node.timeout not in (None, "") else None,
    ]
    rows = [
        _section([_shorten(clean(node.name or node.id), WRAP + 10)], bold=True, size=12),
        _section([" · ".join(str(fact) for fact in facts if fact)], color="#555555", size=9),
    ]
    if not isinstance(critical, bool):  # a template
        rows.append(_section(_wrap("critical if " + critical, limit=2), color="#b71c1c", size=9))
    return rows


def _body_rows(node: Node) -> list[str]:
    """The description, then the command, the function call or the question."""
    rows = []
    if node.description and node.description.strip():
        rows.append(_section(_wrap(node.description), size=10))
    if node.type == "Command" and node.command:
        rows.append(_section(_command_lines(node.command), font=MONO, size=9))
    elif node.type == "Function" and (node.plugin or node.function):
        call = "%s.%s(%s)" % (node.plugin or "?", node.function or "?", _params(node.function_params))
        rows.append(_section(_wrap(call, width=COMMAND_WIDTH, limit=2), font=MONO, size=9))
    elif node.type == "Manual" and node.prompt_after:
        rows.append(_section(_wrap("asks: %s" % node.prompt_after, limit=2), size=9, italic=True))
    return rows


def _condition_rows(node: Node) -> list[str]:
    """Why the node never runs, or its `when`."""
    never = _never_runs(node)
    if never:
        return [_section(_wrap("never runs: %s" % never, limit=2), color="#616161", size=9, italic=True)]
    if node.when is None:
        return []
    text = "when %s%s" % (node.when, " (true)" if node.when_value is True else "")
    return [_section(_wrap(text, width=WRAP, limit=WHEN_LINES), color="#3949ab", size=9, italic=True)]


def _state_rows(node: Node, state: Mapping[str, Any] | None) -> list[str]:
    """What happened: the state with its attempts, and the reason (unless already shown)."""
    rows = [_section([state_words(state)], bold=True, size=10, color=_state_style(state)[3])]
    reason = (state or {}).get("reason")
    if reason and reason != _never_runs(node):
        rows.append(_section(_wrap(reason, limit=REASON_LINES), size=9, color="#424242"))
    return rows


def _state_style(state: Mapping[str, Any] | None) -> tuple[str, str, str, str]:
    status = (state or {}).get("status")
    return STATE_STYLE.get(status, STATE_STYLE[None])


def _tooltip(node: Node, state: Mapping[str, Any] | None, with_states: bool) -> str:
    parts = ["%s [%s]" % (node.id, node.type)]
    if node.name:
        parts.append(node.name)
    if node.description and node.description.strip():
        parts.append(node.description.strip())
    if node.type == "Command" and node.command:
        parts.append("$ " + node.command.strip("\n"))
    elif node.type == "Function":
        parts.append("%s.%s(%s)" % (node.plugin, node.function, _params(node.function_params)))
    never = _never_runs(node)
    if never:
        parts.append("never runs: %s" % never)
    elif node.when is not None:
        parts.append("when %s" % node.when)
    if with_states:
        parts.append(state_words(state))
        reason = (state or {}).get("reason")
        if reason:
            parts.append(reason)
    return "\n".join(clean(part) for part in parts)


def _attrs(pairs: Iterable[tuple[str, str]]) -> str:
    return "[%s]" % ", ".join("%s=%s" % (key, value) for key, value in pairs)


def _node_line(node: Node, state: Mapping[str, Any] | None, with_states: bool) -> str:
    shape, extra, fill, border = TYPE_STYLE.get(node.type, DEFAULT_TYPE_STYLE)
    styles = ["filled"]
    if extra:
        styles.append(extra)
    if _never_runs(node):
        styles.append("dashed")
    penwidth = "1.2"
    peripheries = "1"
    if with_states:
        fill, border = _state_style(state)[:2]
        if not (state or {}).get("status"):
            styles.append("dashed")
    critical = _critical(node)
    if critical is True:
        styles.append("bold")
        penwidth = "2.5"
        peripheries = "2"
    elif critical is not False:
        penwidth = "2"
    style = ",".join(dict.fromkeys(styles))  # each style once, in order
    pairs = [
        ("label", _label(node, state, with_states)),
        ("shape", shape),
        ("style", quote(style)),
        ("fillcolor", quote(fill)),
        ("color", quote(border)),
        ("penwidth", penwidth),
        ("peripheries", peripheries),
        ("tooltip", quote(_tooltip(node, state, with_states))),
    ]
    return "  %s %s;" % (quote(node.id), _attrs(pairs))


def _edge_lines(plan: Plan) -> list[str]:
    lines = []
    known = set(plan.by_id)
    for node in plan.nodes:
        drawn = set()
        for dep in node.deps:
            if dep.node not in known or (dep.node, dep.on) in drawn:
                continue
            drawn.add((dep.node, dep.on))
            colour, style, label = EDGE_STYLE.get(dep.on, EDGE_STYLE["plain"])
            pairs = [("color", quote(colour)), ("style", style)]
            if label:
                pairs += [("label", quote(" %s " % label)), ("fontcolor", quote(colour))]
            if dep.on == "plain" and node.when is not None:
                pairs.append(("tooltip", quote("%s waits for %s; its when decides" % (node.id, dep.node))))
            else:
                pairs.append(("tooltip", quote("%s depends on %s" % (node.id, dep.spec()))))
            if dep.on == "failure":
                pairs.append(("penwidth", "1.5"))
            lines.append("  %s -> %s %s;" % (quote(dep.node), quote(node.id), _attrs(pairs)))
        ordered = {dep.node for dep in node.deps}
        for name in node.when_nodes:
            if name not in known or name in ordered or (name, "when") in drawn:
                continue
            drawn.add((name, "when"))
            colour, style, label = EDGE_STYLE["when"]
            pairs = [
                ("color", quote(colour)),
                ("style", style),
                ("label", quote(" %s " % label)),
                ("fontcolor", quote(colour)),
                ("tooltip", quote("the when of %s looks at %s" % (node.id, name))),
            ]
            lines.append("  %s -> %s %s;" % (quote(name), quote(node.id), _attrs(pairs)))
    return lines


def to_dot(plan: Plan, states: Mapping[str, Mapping[str, Any]] | None = None, title: str | None = None) -> str:
    """The DOT source of `plan`; with `states`, every node coloured by its state in a run."""
    with_states = states is not None
    states = states or {}
    caption = clean(plan.title if title is None else title).strip("\n")
    heading, _, rest = caption.partition("\n")
    label = "<B>%s</B>" % html(_shorten(heading, 120)) if heading else " "
    if rest:
        label += "".join(
            '<BR/><FONT POINT-SIZE="11" COLOR="#555555">%s</FONT>' % (html(_shorten(line, 140)) or "&#160;")
            for line in rest.split("\n")[:3]
        )
    lines = [
        "digraph playbook {",
        "  graph %s;"
        % _attrs(
            [
                ("rankdir", "TB"),
                ("label", "<%s>" % label),
                ("labelloc", "t"),
                ("fontname", quote(FONT)),
                ("fontsize", "16"),
                ("nodesep", "0.35"),
                ("ranksep", "0.5"),
                ("pad", "0.3"),
                ("bgcolor", quote("white")),
                ("tooltip", quote(caption)),
            ]
        ),
        "  node %s;" % _attrs([("fontname", quote(FONT)), ("fontsize", "10"), ("margin", quote("0.15,0.08"))]),
        "  edge %s;" % _attrs([("fontname", quote(FONT)), ("fontsize", "9"), ("arrowsize", "0.8")]),
    ]
    for node in plan.nodes:
        lines.append(_node_line(node, states.get(node.id), with_states))
    lines.extend(_edge_lines(plan))
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- states from the state database ----------------------------------------------------------


def run_states(attempts: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{node_id: {"status", "attempts", "reason"}}`` from a run's attempt rows (oldest first).

    The status is that of the node's last row; ``attempts`` counts the times it ran (rows
    that are neither skips nor an operator's set-status); ``reason`` says why it was skipped,
    how it failed, or who set its status.
    """
    states: dict[str, dict[str, Any]] = {}
    for row in sorted(attempts, key=lambda r: r.get("id") or 0):
        entry = states.setdefault(row["node_id"], {"status": None, "attempts": 0, "reason": None})
        ran = row.get("status") != "skipped" and row.get("decision") != "set-status"
        if ran:
            entry["attempts"] += 1
        entry["status"] = row.get("status")
        entry["reason"] = _reason(row)
    return states


def _reason(row: Mapping[str, Any]) -> str | None:
    status = row.get("status")
    if row.get("decision") == "set-status":
        return "set to %s by %s: %s" % (status, row.get("decided_by") or "an operator", row.get("note") or row.get("skip_reason") or "")
    if status == "skipped":
        return row.get("skip_reason") or "skipped"
    if status in ("failed", "interrupted"):
        if row.get("error"):
            return str(row["error"]).strip().split("\n")[-1]
        if row.get("exit_code") is not None:
            return "exit code %s" % row["exit_code"]
        return None
    if status == "succeeded" and row.get("decision") and row.get("decided_by"):
        return "%s by %s" % (row["decision"], row["decided_by"])
    return None


def plan_for_run(run: Mapping[str, Any]) -> Plan:
    """The plan a run recorded (a ``Store.get_run`` row), rendered with the run's variables
    where they allow it (secrets stay masked)."""
    from .plan import Plan
    from .preview import render_known

    plan = Plan.loads(run["plan"])
    values = dict(plan.values)
    values.update(run.get("variables") or {})
    return render_known(plan, values)


def run_caption(plan: Plan, run: Mapping[str, Any]) -> str:
    """The caption of a run's picture: its title, then 'run 3 · failed · started …'."""
    title = run.get("title") or plan.title
    started = str(run.get("started_at") or "")
    if len(started) >= 19 and started[10:11] == "T":
        started = started[:10] + " " + started[11:19] + (" UTC" if started.endswith("Z") else "")
    parts = ["run %s" % run.get("id"), str(run.get("status") or "")]
    if started:
        parts.append("started %s" % started)
    return "%s\n%s" % (title, " · ".join(p for p in parts if p))
