"""Runs and statistics as text for people (`show`, `info`), and run reports (`report`): HTML,
JUnit XML and JSON.

Standard library plus jinja2 only: this module goes into bundles.
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    import datetime
    from typing import Any, Iterable, Mapping, Sequence
    from xml.etree.ElementTree import Element

    import jinja2
    from markupsafe import Markup

    from .plan import Node, Plan
    from .state import Store

# The event the engine records when a Manual step needed an approval and there was no terminal
# to ask on (its detail is text for people; the report reads the kind, never the text).
APPROVAL_NEEDED = "approval-needed"
# Events `show --run` lists as the audit trail.
AUDIT_KINDS = ("approval", APPROVAL_NEEDED, "approval-voided", "decision", "set-status", "resume", "replan", "removed", "interrupted")
WAITING_REASON = "waiting for an approval (there was no terminal to ask on)"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return "%.1fs" % seconds
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return "%dm%02ds" % (minutes, sec)
    hours, minutes = divmod(minutes, 60)
    return "%dh%02dm" % (hours, minutes)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(str(cell)))
    lines = ["  ".join(str(h).ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(row)).rstrip())
    return "\n".join(lines)


def runs_text(runs: Sequence[Mapping[str, Any]], database: str) -> str:
    if not runs:
        return "no runs recorded in %s" % database
    rows = [
        (r["id"], r["status"], r.get("trigger") or "", (r.get("started_at") or "")[:19].replace("T", " "), r.get("user") or "", r["title"])
        for r in runs
    ]
    return "runs in %s\n%s" % (database, _table(("id", "status", "trigger", "started (UTC)", "user", "title"), rows))


def run_text(
    run: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]], output: bool = False
) -> str:
    """`show --run`: the run, its attempts as a table, their output (with `output`) and the
    audit trail."""
    resumes = [e for e in events if e.get("kind") == "resume"]
    lines = [
        "run %d: %s — %s" % (run["id"], run["title"], run["status"]),
        "  started %s by %s@%s%s, ended %s"
        % (run.get("started_at"), run.get("user"), run.get("host"),
           ", resumed %d time%s (last %s by %s)" % (len(resumes), "" if len(resumes) == 1 else "s", resumes[-1].get("at"),
                                                   resumes[-1].get("who")) if resumes else "",
           run.get("ended_at") or "-"),
    ]
    if run.get("uid"):
        lines.append("  uid %s%s" % (run["uid"], _origin(run)))
    if run.get("software"):
        lines.append("  software: %s" % run["software"])
    if run.get("variables"):
        lines.append("  variables: %s" % ", ".join("%s=%s" % (k, _one_line(v)) for k, v in sorted(run["variables"].items())))
    lines.append(_table(("node", "try", "status", "time", "exit", "decision", "who", "note"), [_attempt_row(a) for a in attempts]))
    if output:
        for a in attempts:
            lines.extend(_attempt_output(a))
    lines.extend(_audit_lines(events))
    from . import terminal  # stored output is shown, never obeyed: no control sequence gets through

    return terminal.clean("\n".join(lines))


def _one_line(value: object) -> str:
    """A value as `show` lists it on one line: its line breaks shown as symbols (␍ ␤)."""
    return str(value).replace("\r", "\u240d").replace("\n", "\u2424")


def _origin(run: Mapping[str, Any]) -> str:
    origin = run.get("origin") or {}
    if not origin.get("rollout"):
        return ""
    return "; started by fleet rollout %s as host %s" % (origin["rollout"], origin.get("host"))


def _attempt_row(a: Mapping[str, Any]) -> tuple[object, ...]:
    return (
        a["node_id"],
        a["attempt"],
        a["status"],
        _duration(a.get("duration")),
        "" if a.get("exit_code") is None else a["exit_code"],
        a.get("decision") or "",
        a.get("decided_by") or "",
        (a.get("skip_reason") or a.get("error") or "")[:70],
    )


def _attempt_output(a: Mapping[str, Any]) -> list[str]:
    """The stored output of one attempt, each stream under a `---` line."""
    lines = []
    for stream in ("stdout", "stderr"):
        text = a.get(stream)
        if text:
            lines.append("--- %s attempt %d %s%s" % (a["node_id"], a["attempt"], stream, " (tail)" if a.get(stream + "_truncated") else ""))
            lines.append(text.rstrip("\n"))
    if a.get("output") not in (None, ""):
        lines.append("--- %s attempt %d output" % (a["node_id"], a["attempt"]))
        lines.append(str(a["output"]))
    return lines


def _audit_lines(events: Iterable[Mapping[str, Any]]) -> list[str]:
    audit = [e for e in events if e.get("kind") in AUDIT_KINDS]
    if not audit:
        return []
    lines = ["audit trail:"]
    for e in audit:
        lines.append("  %s  %-10s %-24s %s" % ((e.get("at") or "")[:19].replace("T", " "), e["kind"], e.get("who") or "", e.get("detail") or ""))
    return lines


def stats_text(stats: Mapping[str, Mapping[str, Any]], database: str, since: str | None = None) -> str:
    """`info`: the database, then per workflow what happened in its runs (see workflows_text)."""
    lines = ["database: %s" % database]
    if since:
        lines.append("runs started since %s" % _when(since))
    if not stats:
        lines.append("no runs recorded%s" % (" since then" if since else " yet"))
        return "\n".join(lines)
    return "\n".join(lines) + "\n" + workflows_text(stats)


def _count_list(items: Iterable[tuple[str, int]], unit: str) -> str:
    return ", ".join("%s %s" % (name, _plural(n, unit)) for name, n in items)


def _plural(n: int, unit: str) -> str:
    return "%s %s%s" % (n, unit, "" if n == 1 else "s")


def workflows_text(stats: Mapping[str, Mapping[str, Any]]) -> str:
    """Per workflow: runs by outcome and success rate, median and p95 duration, the steps that
    fail, get retried or take longest, and who approved."""
    lines = []
    for workflow, s in sorted(stats.items(), key=lambda item: (item[1].get("title") or item[0], item[0])):
        title = s.get("title") or workflow
        if title != workflow:
            title = "%s  [runbook %s]" % (title, workflow)
        by = s.get("by_status") or {}
        total = s.get("runs", 0)
        ok = by.get("succeeded", 0)
        order = [k for k in ("succeeded", "failed", "aborted", "running") if k in by] + sorted(k for k in by if k not in ("succeeded", "failed", "aborted", "running"))
        lines.append("")
        lines.append(title)
        rows = [
            (
                "runs",
                "%d: %s (%s succeeded)"
                % (total, ", ".join("%d %s" % (by[k], k) for k in order), "%.0f%%" % (100.0 * ok / total) if total else "-"),
            ),
            ("duration", "median %s, p95 %s (finished runs)" % (fine_duration(s.get("median_duration")), fine_duration(s.get("p95_duration")))),
        ]
        if s.get("most_failing"):
            rows.append(("fails most", _count_list(s["most_failing"], "failure")))
        if s.get("most_retried"):
            rows.append(("retried most", _count_list(s["most_retried"], "retry").replace("retrys", "retries")))
        if s.get("slowest"):
            rows.append(("slowest", ", ".join("%s %s avg" % (n, fine_duration(v)) for n, v in s["slowest"])))
        approvals = s.get("approvals_by") or {}
        if approvals:
            items = approvals.items() if isinstance(approvals, dict) else approvals
            shown = []
            for who, n in items:
                who = "needed without a terminal" if who == "?" else who
                shown.append("%s %s" % (who, n))
            rows.append(("approvals", ", ".join(shown)))
        for key, value in rows:
            lines.append("  %s %s" % ((key + ":").ljust(14), value))
    return "\n".join(lines)


def parse_since(text: str | None, now: datetime.datetime | None = None) -> str:
    """``--since`` as a state-database timestamp (UTC, comparable with ``started_at``).

    Accepts a date or date-time (ISO 8601, UTC unless it carries an offset: ``2026-11-01``,
    ``2026-11-01T08:00``, ``2026-11-01 08:00:00+02:00``) or an age: ``30m``, ``12h``, ``7d``,
    ``2w``. Raises ValueError with a message for people."""
    import datetime

    value = str(text or "").strip()
    utc = datetime.timezone.utc
    match = re.match(r"^(\d+)\s*(m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)$", value, re.IGNORECASE)
    if match:
        amount = int(match.group(1))
        unit = match.group(2).lower()[0]
        delta = {"m": datetime.timedelta(minutes=amount), "h": datetime.timedelta(hours=amount), "d": datetime.timedelta(days=amount), "w": datetime.timedelta(weeks=amount)}[unit]
        moment = (now or datetime.datetime.now(utc)) - delta
    else:
        iso = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
        try:
            moment = datetime.datetime.fromisoformat(iso)
        except ValueError:
            raise ValueError(
                "--since %r is not a date: use an ISO date or time in UTC (2026-11-01, 2026-11-01T08:00) "
                "or an age (30m, 12h, 7d, 2w)" % (text,)
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=utc)
    moment = moment.astimezone(utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def plugins_text(plugins: Iterable[Mapping[str, Any]]) -> str:
    lines = []
    for p in plugins:
        head = "%s %s" % (p["name"], p.get("version") or "")
        if p.get("distribution"):
            head += " (from %s)" % p["distribution"]
        lines.append(head.strip())
        if p.get("error"):
            lines.append("  cannot load: %s" % p["error"])
            continue
        if p.get("description"):
            lines.append("  %s" % p["description"])
        for f in p.get("functions") or []:
            lines.append("  %s.%s — %s" % (p["name"], f["name"], f.get("description") or ""))
            for param in f.get("parameters") or []:
                extra = []
                if param.get("required"):
                    extra.append("required")
                if param.get("default") is not None:
                    extra.append("default %r" % (param["default"],))
                if param.get("choices"):
                    extra.append("one of %s" % ", ".join(map(str, param["choices"])))
                lines.append(
                    "      %s: %s%s%s"
                    % (param["name"], param.get("type"), " (%s)" % ", ".join(extra) if extra else "", " — " + param["description"] if param.get("description") else "")
                )
    return "\n".join(lines)


# --- run reports (`report`): HTML for people, JUnit XML for CI, JSON for everything else ------
#
# `RunReport(store, run)` gathers what one run recorded (the plan it ran, the attempts, the audit
# trail, the workflow's statistics); `to_dict()`, `junit()` and `html()` present it. Standard
# library plus jinja2 only: this goes into bundles, and the HTML template is read through the
# package loader (works inside the bundle's zip).

REPORT_VERSION = 1
TAIL_LINES = 60  # output tail shown per stream
TAIL_CHARS = 8000
HTML_TEMPLATE = "report.html.j2"
NOT_REACHED = "not_reached"  # the status of a node that has no attempt row


_ANSI = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL / ST (titles, hyperlinks)
    r"|\x1b[P^_X][^\x1b]*(?:\x1b\\)?"  # DCS / PM / APC / SOS strings
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|\x1b[ -/]*[0-~]"  # other escapes (charset selection, keypad modes)
)
_CONTROL = re.compile("[^\t\n\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def plain_text(text: object) -> str:
    """Terminal output as plain text: ANSI escapes removed, carriage-return overwrites settled
    (a progress bar keeps its last state), other control characters shown as U+FFFD, so the
    text is safe in HTML and XML alike."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    if "\r" in text:
        lines = []
        for line in text.split("\n"):
            parts = [p for p in line.split("\r") if p]
            lines.append(parts[-1] if parts else "")
        text = "\n".join(lines)
    return _CONTROL.sub("\ufffd", text.expandtabs(8) if "\t" in text else text)


def tail(text: str | None, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> tuple[str, bool]:
    """``(last lines of text, whether anything was cut)``."""
    text = (text or "").rstrip("\n")
    cut = False
    parts = text.split("\n")
    if len(parts) > lines:
        text = "\n".join(parts[-lines:])
        cut = True
    if len(text) > chars:
        text = text[-chars:]
        cut = True
    return text, cut


def parse_time(value: object) -> Any:  # datetime.datetime | None (Any: cli.py formats it unchecked)
    """A datetime (UTC) from a state-database timestamp, or None."""
    import datetime

    if not value:
        return None
    text = str(value).rstrip("Z")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            pass
    return None


def _seconds(start: object, end: object) -> float | None:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return None
    return round(max(0.0, (b - a).total_seconds()), 3)


def _when(value: object) -> str:
    """'2026-11-29 04:58:01 UTC' from a database timestamp."""
    text = str(value or "")
    if len(text) >= 19 and text[10:11] == "T":
        return text[:10] + " " + text[11:19] + (" UTC" if text.endswith("Z") else "")
    return text or "-"


def fine_duration(seconds: float | None) -> str:
    """Durations for the report: '35ms', '1.25s', '12.3s', then like the text tables."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return "%dms" % round(seconds * 1000)
    if seconds < 10:
        return "%.2fs" % seconds
    return _duration(seconds)


def slug(text: object) -> str:
    """'Deploy myapp to prod' -> 'deploy-myapp-to-prod' (JUnit class names)."""
    value = re.sub(r"[^a-z0-9]+", "-", str(text or "").lower()).strip("-")
    return value or "runbook"


class _Masker:
    """Replaces secret values with the mask. The state database already holds them masked;
    this catches a secret value that a plan or a run row still carries."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, value: Any) -> Any:
        if value is None or not self.secrets:
            return value
        if not isinstance(value, str):
            return value
        for secret in self.secrets:
            value = value.replace(secret, _MASK)
        return value

    def data(self, value: Any) -> Any:
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value


_MASK = "***"


def _secret_values(plan: Plan | None, run: Mapping[str, Any]) -> list[str]:
    """Values of variables the plan marks secret that are still known in clear (should be none)."""
    found: list[str] = []
    if plan is None:
        return found
    sources = [plan.values or {}, run.get("variables") or {}]
    for name, spec in (plan.variables or {}).items():
        if not isinstance(spec, dict) or not spec.get("secret"):
            continue
        for values in sources:
            value = values.get(name)
            if value is None or value == _MASK:
                continue
            if isinstance(value, (list, dict)):
                found.append(json.dumps(value))
            found.append(str(value))
    return found


def _state_words(status: str | None) -> str:
    return "not reached" if status in (None, NOT_REACHED) else status


class RunReport:
    """Everything one run recorded, ready to be written as HTML, JUnit XML or JSON."""

    def __init__(self, store: Store, run: Mapping[str, Any], now: str | None = None) -> None:
        from . import graph
        from .plan import PlanError

        self.database = store.path
        self.generated_at = now or _now_iso()
        self.plan: Plan | None = None
        self.plan_problem: str | None = None
        try:
            if run.get("plan"):
                self.plan = graph.plan_for_run(run)
            else:
                self.plan_problem = "the run has no recorded plan"
        except (PlanError, ValueError, KeyError, TypeError) as exc:
            self.plan_problem = "the recorded plan cannot be read: %s" % exc
        self.mask = _Masker(_secret_values(self.plan, run))
        run = dict(run)
        run.pop("plan", None)
        self.run: dict[str, Any] = self.mask.data(run)
        self.attempts: list[dict[str, Any]] = [self.mask.data(dict(a)) for a in store.attempts(run["id"])]
        self.events: list[dict[str, Any]] = [self.mask.data(dict(e)) for e in store.events(run["id"])]
        workflow = run.get("runbook_id") or run.get("title")
        stats = store.stats(title=workflow).get(workflow) if workflow is not None else None
        self.stats: dict[str, Any] | None = self.mask.data(_jsonable(stats)) if stats else None
        self.states = graph.run_states(self.attempts)
        self.nodes = self._nodes()
        self.summary = self._summary()

    # -- gathering ---------------------------------------------------------------------------
    def _nodes(self) -> list[dict[str, Any]]:
        """One entry per node: those of the plan in its order, then any only the attempts name."""
        by_node: dict[str, list[dict[str, Any]]] = {}
        for a in self.attempts:
            by_node.setdefault(a["node_id"], []).append(a)
        order = [n.id for n in self.plan.nodes] if self.plan is not None else []
        order += [node_id for node_id in by_node if node_id not in order]
        waiting = {e["node_id"] for e in self.events if e.get("kind") == APPROVAL_NEEDED and e.get("node_id")}
        return [self._node(node_id, by_node.get(node_id, []), node_id in waiting) for node_id in order]

    def _node(self, node_id: str, rows: Sequence[Mapping[str, Any]], waiting: bool) -> dict[str, Any]:
        """The entry of one node from its spec and its attempt rows (oldest first); the
        exit code, error and output are those of the last attempt that ran."""
        spec = self.plan.by_id.get(node_id) if self.plan is not None else None
        state = self.states.get(node_id) or {}
        status = state.get("status") or NOT_REACHED
        final = rows[-1] if rows else {}
        last_run: Mapping[str, Any] = next((r for r in reversed(rows) if _ran(r)), {})
        entry: dict[str, Any] = {"id": node_id}
        entry.update(self._spec_fields(spec))
        entry.update(
            status=status,
            reason=self.mask.text(_node_reason(status, state, spec, waiting)),
            skip_reason=self.mask.text(final.get("skip_reason")) if status == "skipped" else None,
            attempts=state.get("attempts", 0),
            retried=max(0, state.get("attempts", 0) - 1),
            duration=round(sum(r.get("duration") or 0 for r in rows), 3),
            started_at=rows[0].get("started_at") if rows else None,
            ended_at=final.get("ended_at"),
            exit_code=last_run.get("exit_code"),
            error=self.mask.text(last_run.get("error")),
            decision=final.get("decision"),
            decided_by=final.get("decided_by"),
        )
        for stream in ("stdout", "stderr"):
            text, cut = tail(plain_text(self.mask.text(last_run.get(stream))))
            entry[stream] = text
            entry[stream + "_truncated"] = bool(cut or last_run.get(stream + "_truncated"))
        entry["output"] = last_run.get("output")
        return entry

    def _spec_fields(self, spec: Node | None) -> dict[str, Any]:
        """What the plan says about a node (empty when the plan does not know it)."""
        if spec is None:
            return {"name": None, "type": None, "description": "", "command": None, "function": None, "critical": False, "depends_on": [], "when": None}
        return {
            "name": self.mask.text(spec.name),
            "type": spec.type,
            "description": self.mask.text((spec.description or "").strip()),
            "command": self.mask.text(spec.command) if spec.type == "Command" else None,
            "function": "%s.%s" % (spec.plugin, spec.function) if spec.type == "Function" else None,
            "critical": _critical_flag(spec),
            "depends_on": [d.spec() for d in spec.deps],
            "when": spec.when,
        }

    def _summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node["status"]] = counts.get(node["status"], 0) + 1
        # the timestamps, then (datetime, timestamp) of those that parse
        starts: list[Any] = [self.run.get("started_at")] + [a.get("started_at") for a in self.attempts]
        ends: list[Any] = [self.run.get("ended_at")] + [a.get("ended_at") for a in self.attempts]
        starts = [(parse_time(t), t) for t in starts if parse_time(t) is not None]
        ends = [(parse_time(t), t) for t in ends if parse_time(t) is not None]
        duration = None
        if self.run.get("ended_at"):
            duration = _seconds(self.run.get("started_at"), self.run.get("ended_at"))
        return {
            "nodes": len(self.nodes),
            "counts": counts,
            "duration": duration,
            "attempts": sum(1 for a in self.attempts if _ran(a)),
            "first_start": min(starts)[1] if starts else None,
            "last_end": max(ends)[1] if ends else None,
        }

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        runbook: dict[str, Any] = {}
        if self.plan is not None:
            rb = self.plan.runbook
            runbook = {
                "title": self.mask.text(rb.get("title")),
                "description": self.mask.text((rb.get("description") or "").strip()),
                "version": rb.get("version"),
                "author": rb.get("author"),
                "source": (self.plan.source or {}).get("name"),
                "sha256": (self.plan.source or {}).get("sha256"),
            }
        nodes = []
        for node in self.nodes:
            item = dict(node)
            item["output"] = _jsonable(item["output"])
            nodes.append(item)
        return {
            "report_version": REPORT_VERSION,
            "generated_at": self.generated_at,
            "database": self.database,
            "run": _jsonable(self.run),
            "runbook": runbook,
            "summary": self.summary,
            "nodes": nodes,
            "attempts": [_jsonable(a) for a in self.attempts],
            "events": [_jsonable(e) for e in self.events],
            "stats": self.stats,
        }

    def json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, ensure_ascii=False, default=str) + "\n"

    # -- JUnit XML -----------------------------------------------------------------------------
    def junit(self) -> bytes:
        """JUnit XML bytes: <testsuites><testsuite> with one <testcase> per node."""
        import xml.etree.ElementTree as ET

        from .graph import clean

        run = self.run
        title = run.get("title") or "runbook"
        attrs = {"name": clean(title)}
        attrs.update(self._junit_counts())
        suites = ET.Element("testsuites", dict(attrs, name="playbook"))
        suite = ET.SubElement(
            suites,
            "testsuite",
            dict(attrs, id=str(run.get("id")), timestamp=(run.get("started_at") or "")[:19], hostname=clean(run.get("host") or "")),
        )
        props = ET.SubElement(suite, "properties")
        for name, value in self._junit_properties():
            ET.SubElement(props, "property", name=name, value=clean(value))
        classname = "playbook." + slug(title)
        for node in self.nodes:
            case = ET.SubElement(suite, "testcase", classname=classname, name=clean(node["id"]), time="%.3f" % (node["duration"] or 0))
            _junit_outcome(case, node)
            _junit_output(case, node)
        if hasattr(ET, "indent"):  # Python 3.9+
            ET.indent(suites)
        return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="utf-8") + b"\n"

    def _junit_counts(self) -> dict[str, str]:
        """The counts of a <testsuite>: failed nodes are failures, interrupted ones errors, all
        that neither succeeded nor failed are skipped."""
        counts = self.summary["counts"]
        duration = self.summary["duration"]
        if duration is None:
            duration = round(sum(n["duration"] for n in self.nodes), 3)
        return {
            "tests": str(len(self.nodes)),
            "failures": str(counts.get("failed", 0)),
            "errors": str(counts.get("interrupted", 0)),
            "skipped": str(sum(n for status, n in counts.items() if status not in ("succeeded", "failed", "interrupted"))),
            "time": "%.3f" % duration,
        }

    def _junit_properties(self) -> list[tuple[str, object]]:
        """(name, text) of the run's <property> elements: what the run row records, then the
        variables as var.NAME."""
        from .graph import clean

        run = self.run
        names = ("id", "status", "exit_code", "user", "host", "trigger", "started_at", "ended_at", "source", "plan_hash")
        props = [("run_id" if key == "id" else key, run.get(key)) for key in names]
        props = [(name, value) for name, value in props if value is not None]
        props += [("var." + clean(key), _scalar(value)) for key, value in sorted((run.get("variables") or {}).items())]
        return props

    # -- HTML ----------------------------------------------------------------------------------
    def dag_svg(self, dot: str = "dot", timeout: float = 60) -> tuple[str | None, str | None]:
        """``(svg markup, None)`` drawn by Graphviz, or ``(None, why not)``."""
        import subprocess

        from . import graph

        if self.plan is None:
            return None, self.plan_problem
        source = graph.to_dot(self.plan, self.states, title=graph.run_caption(self.plan, self.run))
        try:
            proc = subprocess.run(
                [dot, "-Tsvg"], input=source.encode("utf-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout
            )
        except FileNotFoundError:
            return None, "the Graphviz `dot` program is not installed here, so the DAG is shown as a table (install graphviz for the picture)"
        except (OSError, subprocess.SubprocessError) as exc:
            return None, "Graphviz `dot` could not draw the DAG (%s); it is shown as a table" % exc
        if proc.returncode != 0:
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            return None, "Graphviz `dot` failed (%s); the DAG is shown as a table" % (detail[-1] if detail else "exit %d" % proc.returncode)
        svg = proc.stdout.decode("utf-8", "replace")
        start = svg.find("<svg")
        if start < 0:
            return None, "Graphviz `dot` gave no SVG; the DAG is shown as a table"
        svg = svg[start:]
        # fit the page width; the viewBox keeps the proportions
        svg = re.sub(r'<svg width="[^"]*" height="[^"]*"', '<svg class="dag-svg" role="img" aria-label="DAG of the run coloured by state"', svg, count=1)
        return svg, None

    def timeline(self) -> dict[str, Any]:
        """Bars for the timeline: offsets and widths in percent of the run's span."""
        start = parse_time(self.summary["first_start"]) if self.summary["first_start"] else None
        end = parse_time(self.summary["last_end"]) if self.summary["last_end"] else None
        if start is None:
            return {"bars": [], "span": 0, "ticks": []}
        if end is None or end < start:
            end = start
        span = max((end - start).total_seconds(), 0.001)
        bars = []
        for a in self.attempts:
            a_start = parse_time(a.get("started_at")) or start
            a_end = parse_time(a.get("ended_at"))
            seconds = a.get("duration")
            if seconds is None and a_end is not None:
                seconds = (a_end - a_start).total_seconds()
            left = max(0.0, min(100.0, (a_start - start).total_seconds() / span * 100))
            width = (seconds or 0) / span * 100
            if a.get("status") == "running":
                width = 100 - left
            bars.append(
                {
                    "node": a["node_id"],
                    "attempt": a.get("attempt"),
                    "status": a.get("status"),
                    "left": "%.3f" % left,
                    "width": "%.3f" % max(0.0, min(width, 100 - left)),
                    "marker": width < 0.6,
                    "duration": seconds,
                    "started_at": a.get("started_at"),
                    "offset": (a_start - start).total_seconds(),
                    "decision": a.get("decision"),
                    "decided_by": a.get("decided_by"),
                }
            )
        ticks = [{"left": "%.1f" % (i * 25.0), "label": "+" + fine_duration(span * i / 4.0)} for i in range(5)]
        return {"bars": bars, "span": span, "ticks": ticks}

    def html(self, svg: str | None = None, note: str | None = None, draw: bool = True) -> str:
        """The self-contained HTML page. ``draw``: run Graphviz for the DAG picture."""
        if draw and svg is None and note is None:
            svg, note = self.dag_svg()
        env = _jinja_env()
        template = env.get_template(HTML_TEMPLATE)
        runbook = self.plan.runbook if self.plan is not None else {}
        return template.render(
            report=self,
            run=self.run,
            runbook={
                "description": self.mask.text((runbook.get("description") or "").strip()),
                "version": runbook.get("version"),
                "author": runbook.get("author"),
                "source": (self.plan.source or {}).get("name") if self.plan is not None else None,
            },
            nodes=self.nodes,
            summary=self.summary,
            events=self.events,
            attempts=self.attempts,
            stats=self.stats,
            timeline=self.timeline(),
            svg=_markup(svg) if svg else None,
            dag_note=note,
            generated_at=self.generated_at,
            database=self.database,
            duration=_duration,
            fine=fine_duration,
            when=_when,
            words=_state_words,
            scalar=_scalar,
            plain=plain_text,
        )


def _ran(row: Mapping[str, Any]) -> bool:
    """Whether an attempt row is a run of the step (not a skip, nor an operator's set-status)."""
    return row.get("status") != "skipped" and row.get("decision") != "set-status"


def _node_reason(status: str, state: Mapping[str, Any], spec: Node | None, waiting: bool) -> str | None:
    """Why a node is where it is: the reason of its last attempt row; for a node never reached,
    that it is disabled or was waiting for an approval."""
    if status != NOT_REACHED:
        return state.get("reason")
    if spec is not None and (spec.skip or spec.when_value is False):
        return spec.skip_reason or "disabled"
    return WAITING_REASON if waiting else None


def _critical_flag(spec: Node | None) -> bool | str:
    if spec is None:
        return False
    if spec.critical is True:
        return True
    if spec.critical in (False, None, "", "false", "False"):
        return False
    return str(spec.critical)


def _junit_outcome(case: Element, node: Mapping[str, Any]) -> None:
    """The <failure>, <error> or <skipped> child of a node's <testcase> (none if it succeeded)."""
    import xml.etree.ElementTree as ET

    from .graph import clean

    status = node["status"]
    if status == "failed":
        message = _failure_message(node)
        kind = "exit code %s" % node["exit_code"] if node["exit_code"] is not None else "failed"
        failure = ET.SubElement(case, "failure", message=clean(message), type=kind)
        body = [message]
        if node["stderr"]:
            body.append("--- stderr%s ---\n%s" % (" (tail)" if node["stderr_truncated"] else "", node["stderr"]))
        failure.text = clean("\n".join(body))
    elif status == "interrupted":
        error = ET.SubElement(case, "error", message=clean(node["reason"] or "interrupted"), type="interrupted")
        error.text = clean(node["reason"] or "the runner stopped while this step ran")
    elif status == "skipped":
        ET.SubElement(case, "skipped", message=clean(node["reason"] or "skipped"))
    elif status == NOT_REACHED:
        ET.SubElement(case, "skipped", message=clean("not reached" + (": %s" % node["reason"] if node["reason"] else "")))
    elif status == "running":
        ET.SubElement(case, "skipped", message="still running when the report was made")


def _junit_output(case: Element, node: Mapping[str, Any]) -> None:
    """<system-out> (attempts, decision, stdout, output) and <system-err> of a <testcase>; a
    failed node's stderr is in its <failure> instead."""
    import xml.etree.ElementTree as ET

    from .graph import clean

    out = []
    if node["attempts"] > 1:
        out.append("%d attempts" % node["attempts"])
    if node["decision"] and node["decided_by"]:
        out.append("decision: %s by %s" % (node["decision"], node["decided_by"]))
    if node["stdout"]:
        out.append(("--- stdout (tail) ---\n" if node["stdout_truncated"] else "") + node["stdout"])
    if node["output"] not in (None, ""):
        out.append("--- output ---\n%s" % _scalar(node["output"]))
    if out:
        ET.SubElement(case, "system-out").text = clean("\n".join(out))
    if node["stderr"] and node["status"] != "failed":
        ET.SubElement(case, "system-err").text = clean(node["stderr"])


def _failure_message(node: Mapping[str, Any]) -> str:
    """'exit code 1: <error> (after 3 attempts)' for a failed node."""
    parts = []
    if node["exit_code"] is not None:
        parts.append("exit code %s" % node["exit_code"])
    if node["error"]:
        parts.append(str(node["error"]).strip().split("\n")[-1])
    elif node["reason"] and not parts:
        parts.append(node["reason"])
    message = ": ".join(parts) or "failed"
    if node["attempts"] > 1:
        message += " (after %d attempts)" % node["attempts"]
    return message


def _scalar(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _now_iso() -> str:
    from .state import now_iso

    return now_iso()


def _markup(text: str) -> Markup:
    from markupsafe import Markup

    return Markup(text)


def _load_template(name: str) -> str | None:
    import pkgutil

    data = pkgutil.get_data("playbook.templates", name)
    if data is None:
        return None
    return data.decode("utf-8")


def _jinja_env() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
